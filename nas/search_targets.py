"""Targets from devices and budgets, and the search stage of an experiment config (what `nas run` calls)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from nas.search import SearchResult, Target, run_multi_target_search
from nas.strategies import Constraint, get_strategy


def device_targets(devices: Sequence[str], budgets_ms: Sequence[float], objectives=("accuracy:max", "latency_ms:min")
                   ) -> list[Target]:
    """One target per device and latency budget, named `<device>-<budget>ms`, with `latency_ms <= budget`."""
    return [Target(f"{d}-{b:g}ms", tuple(objectives), (Constraint("latency_ms", float(b)),), device=d)
            for d in devices for b in budgets_ms]


def targets_from_config(config) -> list[Target]:
    """The config's targets: one per device and latency budget (`<device>-<ms>ms`) and per energy budget
    (`<device>-<mJ>mJ`); a device with neither is one unconstrained target named after it."""
    targets = []
    for t in config.targets:
        common = dict(device=t.device, latency_model=t.latency_model, latency_path=t.predictor)
        objectives = tuple(config.search.objectives)
        budgets = [(f"{t.device}-{b:g}ms", Constraint("latency_ms", float(b))) for b in t.budgets_ms]
        budgets += [(f"{t.device}-{e:g}mJ", Constraint("energy_mj", float(e))) for e in t.energy_budgets_mj]
        targets += [Target(name, objectives, (c,), **common) for name, c in budgets] or \
            [Target(t.device, objectives, (), **common)]
    return targets


def strategy_options_from_config(search) -> dict:
    """The SearchConfig fields a strategy takes: mutation probability (where it has one) and Optuna storage."""
    defaults = getattr(get_strategy(search.strategy), "defaults", {})
    options = {}
    if "mutate_prob" in defaults:
        options["mutate_prob"] = search.mutation_prob
    if search.storage and "storage" in defaults:
        options["storage"] = search.storage
    return options


def run_config_search(config, run_dir: str | Path, *, resume: bool = False, ray_address: str | None = None,
                      progress: bool = True) -> SearchResult:
    """Searches every target of `config` with the supernet of `run_dir` (trained by `nas train`), writing
    `run_dir/search/<target>/`; accuracy evaluations are shared between the targets. Pass `resume=True` to
    continue an interrupted search stage (the directory must exist)."""
    search = config.search
    return run_multi_target_search(
        config.build_space(), f"supernet:{run_dir}", targets_from_config(config), out=Path(run_dir) / "search",
        budget=search.budget, strategy=search.strategy, seed=config.seed, population=search.population,
        resume=resume, strategy_options=strategy_options_from_config(search), ray_address=ray_address,
        num_actors=search.num_actors, progress=progress,
        layer_options={"width_mult": config.supernet.width_mult})
