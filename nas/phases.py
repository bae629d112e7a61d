"""Phases of supernet training: steps, learning rate, allowed choices (the family's) and the subnets of each step."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import optax

_SUBNET_STREAM = 7919


@dataclasses.dataclass(frozen=True)
class Phase:
    """One phase as run: global steps [start, start + steps), its schedule and its allowed choices.

    `allowed` is the (D, C) bool mask over choice indices the supernet family allows in this phase (e.g. OFA's
    progressive shrinking); `config` is the phase's `PhaseConfig`; `resolution_column` the decision holding the
    input resolution, whose choice all subnets of a step share (None: the family has one input size); `probes` the
    family's {"largest": arch, "smallest": arch}: the sandwich rule's anchors and the subnets validated in training.
    """

    index: int
    name: str
    start: int
    steps: int
    lr: float
    warmup_steps: int
    allowed: np.ndarray
    config: Any
    resolution_column: int | None = None
    probes: dict = dataclasses.field(default_factory=dict)

    @property
    def end(self) -> int:
        return self.start + self.steps

    @property
    def single_subnet(self) -> bool:
        """True when the phase allows one architecture per resolution (e.g. OFA's full network)."""
        rows = np.arange(len(self.allowed)) != self.resolution_column
        return bool((self.allowed[rows].sum(axis=1) == 1).all())

    def learning_rate(self, step: int) -> float:
        """The learning rate of global `step`: linear warm-up to `lr`, then cosine decay to 0 at the phase end."""
        schedule = optax.warmup_cosine_decay_schedule(init_value=self.lr / (self.warmup_steps + 1),
                                                      peak_value=self.lr, warmup_steps=self.warmup_steps,
                                                      decay_steps=self.steps, end_value=0.0)
        return float(schedule(step - self.start))

    def largest(self) -> np.ndarray:
        """(D,) the largest allowed choice of every decision (largest resolution)."""
        return (self.allowed.shape[1] - 1 - np.argmax(self.allowed[:, ::-1], axis=1)).astype(np.int32)

    def smallest(self) -> np.ndarray:
        """(D,) the smallest allowed choice of every decision (smallest resolution)."""
        return np.argmax(self.allowed, axis=1).astype(np.int32)


def build_phases(train_config, space, steps_per_epoch: int, family) -> list[Phase]:
    """The phases of `train_config.phases`, laid end to end in global steps (at least one step each), with the
    choices the supernet `family` allows in each."""
    phases, start = [], 0
    for index, config in enumerate(train_config.phases):
        steps = max(1, round(config.epochs * steps_per_epoch))
        warmup = min(round(train_config.warmup_epochs * steps_per_epoch), steps - 1)
        phase = Phase(index, config.name, start, steps, config.lr, warmup, family.allowed_choices(space, config),
                      config, family.resolution_column)
        phases.append(dataclasses.replace(phase, probes=family.probes(space, phase)))
        start += steps
    return phases


def sample_uniform(allowed: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, D) architectures, each decision uniform over its allowed choice indices."""
    counts = allowed.sum(axis=1)
    picks = (rng.random((n, allowed.shape[0])) * counts).astype(np.int64)
    return (np.cumsum(allowed, axis=1)[None] > picks[..., None]).argmax(axis=-1).astype(np.int32)


def subnets_per_step(phase: Phase, train_config) -> int:
    """How many subnets a step of `phase` trains (see `subnets_of_step`)."""
    if phase.single_subnet:
        return 1
    anchors = int(train_config.sandwich or train_config.distill) + int(train_config.sandwich)
    return anchors + (train_config.num_random if anchors else max(1, train_config.num_random))


def subnets_of_step(phase: Phase, train_config, seed: int, step: int) -> tuple[np.ndarray, bool]:
    """((K, D) archs, distill) for global `step`; a pure function of (seed, step).

    A phase with one architecture trains it alone. Otherwise the sandwich rule gives the largest and the smallest
    subnet plus `num_random` random ones (without it: `num_random` uniform random ones, at least one: SPOS's
    single paths); with distillation the largest comes first and teaches the others. All subnets of a step share
    the step's random resolution choice (phases with a `resolution_column`).
    """
    rng = np.random.default_rng([seed, step, _SUBNET_STREAM])
    column = phase.resolution_column
    resolution = None if column is None else int(rng.integers(phase.allowed[column].sum()))
    if phase.single_subnet:
        archs, distill = phase.largest()[None], False
    else:
        anchors = [phase.probes["largest"]] if train_config.sandwich or train_config.distill else []
        anchors += [phase.probes["smallest"]] if train_config.sandwich else []
        num_random = subnets_per_step(phase, train_config) - len(anchors)
        anchor_rows = np.asarray(anchors, dtype=np.int32).reshape(len(anchors), phase.allowed.shape[0])
        archs = np.concatenate([anchor_rows, sample_uniform(phase.allowed, num_random, rng)]).astype(np.int32)
        distill = bool(train_config.distill and len(archs) > 1)
    if column is not None:
        archs[:, column] = resolution
    return archs, distill
