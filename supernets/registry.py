"""The registry of supernet families by name: what a family declares, and how training, evaluation, export and
latency pricing find it (`get_supernet`, `family_for`)."""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Optional

from search_spaces.errors import UserInputError


def soft_cross_entropy(logits, targets):
    """Mean cross-entropy of `logits` against (N, classes) target distributions (label-smoothed or a teacher's)."""
    import jax
    import jax.numpy as jnp

    return -jnp.mean(jnp.sum(targets * jax.nn.log_softmax(logits), axis=-1))


def top1_correct(logits, labels):
    """(N,) bool: the arg-max class is the label."""
    import jax.numpy as jnp

    return jnp.argmax(logits, axis=-1) == labels


@dataclasses.dataclass(frozen=True)
class SupernetFamily:
    """A kind of weight-sharing supernet, everything the one trainer and the pipeline need of it.

    - `model`: the NNX supernet class. `model(x, arch, train=...)` with `arch` a traced int array;
      `forward(x, arch, "calibrate")` returns batch statistics that `set_batch_statistics(arch, stats)` installs
      (BN calibration); `config()` / `from_config(cfg, rngs=...)` round-trip it through JSON; optionally
      `update_mask(archs, valid)`, the parameters a step may change (no update, momentum or decay elsewhere).
    - `build(config, space, num_classes, in_channels)`: the model of an experiment config, from `config.seed`.
    - `allowed_choices(space, phase_config)`: (D, C) bool mask of the choices a training phase samples; raises
      `UserInputError` for phase keys the family does not take.
    - `begin_phase(model, phase, phases)`: what happens to the model at a phase's start (channel sorting, split).
    - `probes(space, phase)`: {"largest": arch, "smallest": arch}, the subnets whose validation accuracy training
      logs.
    - `input_resolution(space, arch, data_resolution)`: the image size `arch` takes.
    - `resolution_column`: the decision holding the input resolution (all subnets of a step share it), or None.
    - `extract(model, arch)`: the standalone network of `arch` (an instance of `static_network`, whose
      `to_config()` / `from_config()` round-trip through JSON), equal to the supernet's eval output.
    - `layer_options(config, num_classes)`: the options of the space's latency layer enumeration
      (`latency_models.layers.space_layers`) that make it the network this family builds.
    - `check(config, source)`: family-specific checks of an experiment config.
    - `loss(outputs, targets)` and `correct(outputs, labels)`: the training loss and the per-example metric.
    """

    name: str
    space: str
    model: type
    static_network: type
    build: Callable[..., Any]
    allowed_choices: Callable[..., Any]
    begin_phase: Callable[..., None]
    probes: Callable[..., dict]
    input_resolution: Callable[..., int]
    extract: Callable[..., Any]
    layer_options: Callable[..., dict]
    check: Callable[..., None] = lambda config, source: None
    resolution_column: Optional[int] = None
    loss: Callable[..., Any] = soft_cross_entropy
    correct: Callable[..., Any] = top1_correct


# Built-in families, imported on first use (configs validate without importing JAX models)
_BUILT_IN = {"ofa": ("ofa_mbv3", "supernets.ofa_mbv3"), "spos": ("nb201", "supernets.nb201_spos")}
_FAMILIES: dict[str, SupernetFamily] = {}


def register_supernet(family: SupernetFamily, *, overwrite: bool = False) -> None:
    """Makes `get_supernet(family.name)` return `family` (and the default family of `family.space` when that
    space has none)."""
    if family.name in list_supernets() and not overwrite:
        raise UserInputError(f"supernet family {family.name!r} is already registered; pass overwrite=True to "
                             "replace it")
    _FAMILIES[family.name] = family


def list_supernets() -> list[str]:
    return sorted(set(_BUILT_IN) | set(_FAMILIES))


def get_supernet(name: str) -> SupernetFamily:
    """The family registered as `name`."""
    if name not in _FAMILIES and name in _BUILT_IN:
        _FAMILIES[name] = importlib.import_module(_BUILT_IN[name][1]).FAMILY
    if name not in _FAMILIES:
        raise UserInputError(f"unknown supernet family {name!r}; known families: {list_supernets()}")
    return _FAMILIES[name]


def space_of(name: str) -> str:
    """The search space family `name` serves (built-in families without importing them)."""
    return _BUILT_IN[name][0] if name in _BUILT_IN and name not in _FAMILIES else get_supernet(name).space


def default_family(space_name: str) -> str | None:
    """The first family (by name) that serves `space_name`, or None."""
    return next((name for name in list_supernets() if space_of(name) == space_name), None)


def family_for(config) -> SupernetFamily:
    """The supernet family of an experiment config: `supernet.family`, else the one serving `space.name`."""
    name = config.supernet.family or default_family(config.space.name)
    if name is None:
        raise UserInputError(f"space.name = {config.space.name!r} has no supernet family; families: "
                             f"{ {n: space_of(n) for n in list_supernets()} }")
    return get_supernet(name)


def family_of(model) -> SupernetFamily:
    """The family of a supernet instance (its class's `family` name)."""
    return get_supernet(type(model).family)


def static_network_from_config(config: dict, *, rngs):
    """The static network a family's `extract` wrote `config` for (by the config's "name")."""
    for name in list_supernets():
        network = get_supernet(name).static_network
        if network.__name__ == config.get("name"):
            return network.from_config(config, rngs=rngs)
    raise UserInputError(f"network config name {config.get('name')!r} is not the static network of a supernet "
                         f"family; known: {[get_supernet(n).static_network.__name__ for n in list_supernets()]}")
