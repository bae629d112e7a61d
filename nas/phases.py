"""Progressive-shrinking phases of supernet training: steps, learning rate, allowed choices and per-step subnets."""

from __future__ import annotations

import dataclasses

import numpy as np
import optax

from search_spaces import ofa_mbv3

_SUBNET_STREAM = 7919
_ELASTIC = (("depth", ofa_mbv3.DEPTH, ofa_mbv3.DEPTH_CHOICES), ("kernel", ofa_mbv3.KERNEL, ofa_mbv3.KERNEL_CHOICES),
            ("expand", ofa_mbv3.EXPAND, ofa_mbv3.EXPAND_CHOICES))


@dataclasses.dataclass(frozen=True)
class Phase:
    """One phase as run: global steps [start, start + steps), its schedule and its allowed choices.

    `allowed` is a (D, C) bool mask over choice indices (every resolution is allowed; the elastic dimensions a
    phase does not list stay at their largest value). `sort_channels` is true for the first phase with an elastic
    expand ratio, where channels are re-sorted by importance before its first step, as OFA does.
    """

    index: int
    name: str
    start: int
    steps: int
    lr: float
    warmup_steps: int
    allowed: np.ndarray
    sort_channels: bool

    @property
    def end(self) -> int:
        return self.start + self.steps

    @property
    def single_subnet(self) -> bool:
        """True when the phase allows one architecture per resolution (e.g. the full network)."""
        return bool((self.allowed[1:].sum(axis=1) == 1).all())

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


def allowed_choices(space, phase_config) -> np.ndarray:
    """(D, C) bool mask of the choice indices a `PhaseConfig` allows; unlisted elastic dimensions: largest only."""
    mask = np.zeros((space.num_decisions, int(space.sizes.max())), dtype=bool)
    mask[ofa_mbv3.RESOLUTION, :len(space.resolutions)] = True
    for key, columns, choices in _ELASTIC:
        given = getattr(phase_config, key)
        values = set(given) if given is not None else {max(choices)}
        mask[columns, :len(choices)] = np.isin(choices, sorted(values))
    return mask


def build_phases(train_config, space, steps_per_epoch: int) -> list[Phase]:
    """The phases of `train_config.phases`, laid end to end in global steps (at least one step each)."""
    phases, start, sorted_once = [], 0, False
    for index, config in enumerate(train_config.phases):
        steps = max(1, round(config.epochs * steps_per_epoch))
        warmup = min(round(train_config.warmup_epochs * steps_per_epoch), steps - 1)
        allowed = allowed_choices(space, config)
        elastic_expand = bool(allowed[ofa_mbv3.EXPAND].sum(axis=1).max() > 1)
        phases.append(Phase(index, config.name, start, steps, config.lr, warmup, allowed,
                            sort_channels=elastic_expand and not sorted_once))
        sorted_once |= elastic_expand
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


def subnets_of_step(phase: Phase, train_config, seed: int, step: int) -> tuple[int, np.ndarray, bool]:
    """(resolution index, (K, D) archs, distill) for global `step`; a pure function of (seed, step).

    A phase with one architecture trains it alone. Otherwise the sandwich rule gives the largest and the smallest
    subnet plus `num_random` random ones (without it: `num_random` random ones, at least one); with distillation
    the largest comes first and teaches the others. All subnets of a step share the step's random resolution.
    """
    rng = np.random.default_rng([seed, step, _SUBNET_STREAM])
    resolution = int(rng.integers(phase.allowed[ofa_mbv3.RESOLUTION].sum()))
    if phase.single_subnet:
        archs, distill = phase.largest()[None], False
    else:
        anchors = [phase.largest()] if train_config.sandwich or train_config.distill else []
        anchors += [phase.smallest()] if train_config.sandwich else []
        num_random = subnets_per_step(phase, train_config) - len(anchors)
        anchor_rows = np.asarray(anchors, dtype=np.int32).reshape(len(anchors), phase.allowed.shape[0])
        archs = np.concatenate([anchor_rows, sample_uniform(phase.allowed, num_random, rng)]).astype(np.int32)
        distill = bool(train_config.distill and len(archs) > 1)
    archs[:, ofa_mbv3.RESOLUTION] = resolution
    return resolution, archs, distill
