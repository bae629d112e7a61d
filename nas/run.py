"""`nas run`: config → data → latency models per target (budgets checked) → supernet → search → export → report."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nas.config import ExperimentConfig, dump_config, load_config
from nas.run_dir import RunDir, open_run
from nas.search_files import HISTORY
from nas.stages import BUDGETS_FILE, STAGES, TABLE_STAGES, changed_keys, discard, mark_done, plan_rerun, read_stages
from search_spaces.errors import UserInputError

TABLE_CACHE_ENV = "HWNAS_TABLE_CACHE"
HOST_DEVICE = "host-cpu"


@dataclass
class RunContext:
    config: ExperimentConfig
    run: RunDir
    ray_address: str | None
    progress: bool

    @property
    def space(self):
        return self.config.build_space()

    def layer_options(self, num_classes: int) -> dict:
        """The options of the space's latency layer enumeration for the network this run trains."""
        from supernets.registry import family_for

        return family_for(self.config).layer_options(self.config, num_classes)


def stage_data(ctx: RunContext) -> dict:
    from nas.train import load_data, num_classes_of

    data = load_data(ctx.config)
    return {"num_classes": num_classes_of(ctx.config, data), "channels": data.channels,
            "sizes": {s: len(data.split(s)) for s in ("train", "val", "test")}}


def stage_train(ctx: RunContext) -> dict:
    from nas.train import train_and_evaluate

    return train_and_evaluate(ctx.config, resume=True, progress=ctx.progress)


def lut_path(ctx: RunContext, device: str) -> Path:
    return ctx.run.luts / f"{device}.json"


def table_cache_dir() -> Path:
    """Where host-cpu tables measured on this machine are kept for later runs ($HWNAS_TABLE_CACHE or
    ~/.cache/hwnas/luts)."""
    return Path(os.environ.get(TABLE_CACHE_ENV) or Path.home() / ".cache" / "hwnas" / "luts")


def cached_table_path(space, timing, layer_options: dict, calibration_subnets: int) -> Path:
    """The cache file of the host-cpu table for these layers and timing settings on this machine and runtime."""
    import onnxruntime

    from latency_models.profiler import machine_description

    key = json.dumps({"space": space.config(), "layer_options": layer_options, "warmup": timing.warmup,
                      "repeats": timing.repeats, "threads": timing.threads, "batch_size": timing.batch_size,
                      "calibration_subnets": calibration_subnets, "machine": machine_description(),
                      "onnxruntime": onnxruntime.__version__}, sort_keys=True)
    return table_cache_dir() / f"host-cpu-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def _host_timing_and_cache(ctx: RunContext, target, options: dict):
    """The host-cpu target's timing settings and this machine's cache file for its table."""
    from latency_models.profiler import TimingConfig

    timing = TimingConfig(warmup=target.profile_warmup, repeats=target.profile_repeats)
    return timing, cached_table_path(ctx.space, timing, options, target.profile_calibration_subnets)


def measure_host_table(ctx: RunContext, target, options: dict) -> str:
    """The host-cpu table in luts/: measured here (resumable), or copied from this machine's cache of tables with
    the same layers and timing settings when `reuse_table`; a finished measurement is added to the cache."""
    from latency_models.profiler import profile

    path = lut_path(ctx, HOST_DEVICE)
    timing, cached = _host_timing_and_cache(ctx, target, options)
    if target.reuse_table and cached.is_file() and not path.exists():
        shutil.copyfile(cached, path)
        return f"reused {cached}"
    profile(ctx.space, HOST_DEVICE, path, resume=path.exists(), timing=timing, layer_options=options,
            progress=ctx.progress, calibrate_subnets=target.profile_calibration_subnets)
    if target.reuse_table:
        _store_in_cache(path, cached)
    return "measured"


def _store_in_cache(path: Path, cached: Path) -> None:
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{os.getpid()}.tmp")
    shutil.copyfile(path, tmp)
    tmp.replace(cached)


def measured_here(table_path: Path) -> bool:
    """Whether a measured table describes this machine's CPU."""
    from latency_models.lut import LookupTable
    from latency_models.profiler import machine_description

    metadata = LookupTable.load(table_path).metadata
    return metadata.get("machine", "") == machine_description()


def host_table_here(ctx: RunContext) -> Path:
    """The run's host-cpu table if this machine measured it; otherwise this machine's own table for the run's
    layers and timing settings, from the cache or measured now into it (`nas search` on another machine)."""
    from latency_models.profiler import profile

    path = lut_path(ctx, HOST_DEVICE)
    if path.is_file() and measured_here(path):
        return path
    target = next(t for t in ctx.config.targets if t.device == HOST_DEVICE)
    options = ctx.layer_options(read_stages(ctx.run.root)["data"]["num_classes"])
    timing, cached = _host_timing_and_cache(ctx, target, options)
    if not cached.is_file():
        print(f"host-cpu: {path} was measured on another machine; measuring this one's table into {cached}",
              file=sys.stderr)
        partial = cached.with_suffix(".partial.json")
        partial.parent.mkdir(parents=True, exist_ok=True)
        profile(ctx.space, HOST_DEVICE, partial, resume=partial.exists(), timing=timing, layer_options=options,
                progress=ctx.progress, calibrate_subnets=target.profile_calibration_subnets)
        partial.replace(cached)
    return cached


def stage_latency(ctx: RunContext) -> dict:
    """Measures the host-cpu table for real (resumable, or reused from this machine's cache); builds roofline
    tables for devices not at hand; resolves every budget to milliseconds."""
    from latency_models.roofline import roofline_table

    num_classes = read_stages(ctx.run.root)["data"]["num_classes"]
    options = ctx.layer_options(num_classes)
    ctx.run.luts.mkdir(exist_ok=True)
    made = {}
    for target in ctx.config.targets:
        if target.latency_model == "predictor":
            made[target.device] = "predictor"
            continue
        path = lut_path(ctx, target.device)
        if target.device == HOST_DEVICE and target.latency_model == "lut":
            made[target.device] = measure_host_table(ctx, target, options)
        elif not path.exists():
            roofline_table(ctx.space, target.device, **options).save(path)
            made[target.device] = "roofline"
    budgets = resolve_budgets(ctx, options)
    check_budgets(ctx, options)
    return {"tables": made, "budgets_ms": {d: b["budgets_ms"] for d, b in budgets.items()}}


def _round_up(value: float, digits: int = 4) -> float:
    """`value` rounded up to `digits` significant digits (a budget never ends below the latency it resolves to)."""
    if value <= 0:
        return 0.0
    step = 10.0 ** (math.floor(math.log10(value)) - digits + 1)
    return float(f"{math.ceil(value / step - 1e-9) * step:.{digits}g}")


def latency_range(ctx: RunContext, device: str, layer_options: dict) -> tuple[float, float]:
    """(fastest, slowest) latency in ms of the space's subnets under the device's model: the smallest and largest
    subnets and 20,000 random ones."""
    from nas.evaluators import cheap_metrics_for

    space = ctx.space
    cheap = cheap_metrics_for(space, ["latency_ms"], device=device, latency_model=latency_kind(ctx),
                              latency_paths=latency_paths(ctx), layer_options=layer_options)
    archs = np.vstack([space.smallest()[None], space.largest()[None], space.sample(20000, rng=ctx.config.seed)])
    latency = cheap(archs)["latency_ms"]
    return float(np.min(latency)), float(np.max(latency))


def resolve_budgets(ctx: RunContext, layer_options: dict) -> dict:
    """Every target's latency budgets in ms (absolute as given; relative ones placed between the device's fastest
    and slowest subnet), written to budgets.json; resumed runs read them from there."""
    budgets = {}
    for t in ctx.config.targets:
        entry = {"budgets_ms": sorted(set(float(b) for b in t.budgets_ms))}
        if t.budgets_relative:
            fastest, slowest = latency_range(ctx, t.device, layer_options)
            resolved = [_round_up(fastest + f * (slowest - fastest)) for f in t.budgets_relative]
            entry = {"budgets_ms": sorted(set(entry["budgets_ms"] + resolved)), "relative": list(t.budgets_relative),
                     "relative_ms": resolved, "latency_range_ms": [fastest, slowest]}
        budgets[t.device] = entry
    path = ctx.run.root / BUDGETS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(budgets, indent=2))
    tmp.replace(path)
    return budgets


def resolved_budgets(ctx: RunContext) -> dict[str, list[float]]:
    """Latency budgets in ms per device, as the latency stage resolved them."""
    path = ctx.run.root / BUDGETS_FILE
    if not path.is_file():
        raise UserInputError(f"{path} does not exist: the run's latency stage has not finished; run `nas run "
                             f"{ctx.run.config} --resume`")
    return {device: entry["budgets_ms"] for device, entry in json.loads(path.read_text()).items()}


def latency_kind(ctx: RunContext) -> str:
    return "predictor" if any(t.latency_model == "predictor" for t in ctx.config.targets) else "lut"


def check_budgets(ctx: RunContext, layer_options: dict) -> None:
    """Before any training: every budget must be reachable under its device's model (else the best achievable)."""
    from nas.evaluators import cheap_metrics_for
    from nas.search import check_constraints_reachable

    for target in search_targets(ctx):
        cheap = cheap_metrics_for(ctx.space, [m for m in target.metric_names if m != "accuracy"],
                                  device=target.device, latency_model=latency_kind(ctx),
                                  latency_paths=latency_paths(ctx), layer_options=layer_options)
        check_constraints_reachable(ctx.space, target, cheap, ctx.config.seed)


def search_targets(ctx: RunContext) -> list:
    """One target per device and resolved latency budget, named `<device>@<ms>ms`, with the config's objectives
    (plain `latency_ms` and `energy_mj` are the device's) and its energy budgets as further constraints."""
    from nas.search import Target, parse_objective
    from nas.strategies import Constraint

    budgets = resolved_budgets(ctx)
    objectives = tuple(parse_objective(o) for o in ctx.config.search.objectives)
    targets = []
    for t in ctx.config.targets:
        energy = tuple(Constraint("energy_mj", float(e)) for e in t.energy_budgets_mj)
        for budget in budgets[t.device]:
            targets.append(Target(f"{t.device}@{budget:g}ms", objectives,
                                  (Constraint("latency_ms", float(budget)),) + energy, device=t.device))
    return targets


def latency_paths(ctx: RunContext) -> dict:
    return {t.device: str(t.predictor if t.latency_model == "predictor" else lut_path(ctx, t.device))
            for t in ctx.config.targets}


def stage_table_search(ctx: RunContext) -> dict:
    """A search over a measured table (`search.evaluator: table:PATH`): objectives and constraints from `search`."""
    from nas.search import Target, run_search

    s = ctx.config.search
    out = ctx.run.root / "search" / "table"
    target = Target("table", tuple(s.objectives), tuple(s.constraints))
    result = run_search(ctx.space, s.evaluator, target.objectives, constraints=target.constraints, out=out,
                        budget=s.budget, strategy=s.strategy, seed=ctx.config.seed, population=s.population,
                        resume=out.exists(), strategy_options=s.strategy_options(), progress=ctx.progress)
    bounds = [c.upper_bound for c in target.constraints if c.metric == "latency_ms"]
    (out / "target.json").write_text(json.dumps({"target": "table", "budgets_ms": bounds,
                                                 "evaluator": s.evaluator}))
    return {"evaluations": int(result.expensive_evaluations), "front": len(next(iter(result.pareto.values()), []))}


def stage_search(ctx: RunContext) -> dict:
    from nas.search import run_multi_target_search

    s = ctx.config.search
    if s.evaluator is not None:
        return stage_table_search(ctx)
    out = ctx.run.root / "search"
    num_classes = read_stages(ctx.run.root)["data"]["num_classes"]
    result = run_multi_target_search(
        ctx.space, f"supernet:{ctx.run.root}", search_targets(ctx), out=out, budget=s.budget,
        strategy=s.strategy, seed=ctx.config.seed, population=s.population, resume=out.exists(),
        strategy_options=s.strategy_options(), latency_model=latency_kind(ctx),
        latency_paths=latency_paths(ctx), layer_options=ctx.layer_options(num_classes), ray_address=ctx.ray_address,
        num_actors=s.num_actors, progress=ctx.progress, asynchronous=s.asynchronous)
    return {"evaluations": int(result.expensive_evaluations), "targets": sorted(result.targets)}


def device_history(ctx: RunContext, device: str) -> list[dict]:
    """Every architecture the searches of one device evaluated, once each (they share one latency model, so a
    subnet found by one budget's search is a candidate for every budget of the device)."""
    from nas.report import read_csv

    rows, seen = [], set()
    for target in search_targets(ctx):
        path = ctx.run.root / "search" / target.name / HISTORY
        if target.device != device or not path.exists():
            continue
        for row in read_csv(path):
            if row["arch"] not in seen and row.get("accuracy") not in (None, ""):
                seen.add(row["arch"])
                rows.append(row)
    return rows


def chosen_subnets(ctx: RunContext, only: str | None = None) -> list[dict]:
    """Per target (device, budget): the most accurate architectures within its budgets among everything the
    device's searches evaluated, best first (ties: the faster); `only` keeps the targets of one device or one
    target name."""
    chosen = []
    limit = ctx.config.export.max_subnets_per_target
    every = search_targets(ctx)
    targets = every if only is None else [t for t in every if only in (t.name, t.device)]
    if not targets:
        raise UserInputError(f"--target {only!r} is not a target of this run; targets: "
                             f"{[t.name for t in every]} (or a device name)")
    histories = {device: device_history(ctx, device) for device in {t.device for t in targets}}
    for target in targets:
        rows = [r for r in histories[target.device]
                if all(float(r[c.metric]) <= c.upper_bound for c in target.constraints)]
        rows.sort(key=lambda r: (-float(r["accuracy"]), float(r["latency_ms"])))
        for rank, row in enumerate(rows[:limit]):
            chosen.append({"target": target.name, "device": target.device, "rank": rank,
                           "budget_ms": target.constraints[0].upper_bound, "arch": row["arch"],
                           "predicted": {k: float(v) for k, v in row.items() if k in
                                         ("accuracy", "latency_ms", "energy_mj")}})
        (ctx.run.root / "search" / target.name / "target.json").write_text(json.dumps(
            {"target": target.name, "device": target.device,
             "budgets_ms": [c.upper_bound for c in target.constraints if c.metric == "latency_ms"]}))
    return chosen


def stage_export(ctx: RunContext, only: str | None = None) -> dict:
    """Extracts, exports and verifies each chosen subnet once (subnets chosen by several targets are shared)."""
    import jax.numpy as jnp
    from flax import nnx

    from latency_models import build_cost_model
    from nas.export import export_subnet
    from nas.train import bn_calibration_batches, load_data, load_trained_supernet
    from supernets.bn_calibration import calibrate_bn
    from supernets.registry import family_for

    model, space, config = load_trained_supernet(ctx.run.root)
    family = family_for(config)
    data = load_data(config)
    host = next((t for t in config.targets if t.device == HOST_DEVICE), None)
    host_model = None
    if host is not None:
        host_model = build_cost_model(space, HOST_DEVICE, "predictor" if host.latency_model == "predictor" else "lut",
                                      latency_paths(ctx)[HOST_DEVICE],
                                      layer_options=ctx.layer_options(read_stages(ctx.run.root)["data"]["num_classes"]))
    by_arch: dict[str, list[dict]] = {}
    for choice in chosen_subnets(ctx, only):
        by_arch.setdefault(choice["arch"], []).append(choice)
    results = {}
    for arch_text, choices in by_arch.items():
        arch = space.from_string(arch_text)
        subnet_id = f"{int(space.hash(arch)[0]):016x}"
        out = ctx.run.subnet(subnet_id)
        if (out / "metrics.json").exists():
            results[subnet_id] = json.loads((out / "metrics.json").read_text())
            continue
        resolution = family.input_resolution(space, arch, data.resolution[0])
        batches = bn_calibration_batches(data, resolution, batch_size=config.train.batch_size,
                                         count=config.train.bn_calibration_batches, seed=config.seed)
        saved = nnx.clone(nnx.state(model))
        calibrate_bn(model, jnp.asarray(arch), batches)
        static = family.extract(model, jnp.asarray(arch))
        nnx.update(model, saved)
        test = data.test.resized(resolution)
        predicted = None if host_model is None else float(host_model.predict(arch)["latency_ms"][0])
        info = {"arch": arch_text, "space": space.config(), "subnet_id": subnet_id,
                "target": choices[0]["target"], "budget_ms": choices[0]["budget_ms"],
                "predicted": choices[0]["predicted"], "chosen_for": choices, "class_names": list(data.class_names)}
        if out.exists():
            shutil.rmtree(out)  # a half-written export of this very subnet (no metrics.json): redo it
        results[subnet_id] = export_subnet(static, out, info=info, input_shape=(resolution, resolution,
                                                                                data.channels),
                                           normalization={"mean": data.mean, "std": data.std},
                                           test_images=test.images, test_labels=test.labels,
                                           parity_atol=config.export.parity_atol, predicted_host_cpu_ms=predicted)
    failed = [k for k, m in results.items() if not m["onnx_parity_ok"]]
    if failed:
        raise UserInputError(f"ONNX parity failed for subnets {failed} (max abs difference above "
                             f"{config.export.parity_atol} x max(1, largest |logit|)); see their metrics.json")
    return {"subnets": sorted(results)}


def stage_report(ctx: RunContext) -> dict:
    from nas.report import write_report

    return {"report": str(write_report(ctx.run.root))}


STAGE_FUNCTIONS = {"data": stage_data, "train": stage_train, "latency": stage_latency, "search": stage_search,
                   "export": stage_export, "report": stage_report}


def open_existing(run_dir: str | Path, *, ray_address: str | None = None, progress: bool = True) -> RunContext:
    """The context of a run directory written by `nas run` (for `nas export` and `nas report`)."""
    run = RunDir(run_dir)
    if not run.config.is_file():
        raise UserInputError(f"{run.root} is not a run directory: {run.config} does not exist")
    return RunContext(load_config(run.config), run, ray_address, progress)


def run_experiment(config_path: str | Path, *, resume: bool = False, ray_address: str | None = None,
                   progress: bool = True, stop_after: str | None = None, from_stage: str | None = None) -> RunDir:
    """Runs every stage of the experiment in `config_path`. With `resume`, finished stages are skipped and an
    interrupted one continues from its own saved state; a changed config is accepted when it only touches stages
    not yet finished, and `from_stage` redoes that stage and those that read its results."""
    from nas.preflight import check_run

    config = load_config(config_path)
    stages = STAGES if config.search.evaluator is None else TABLE_STAGES
    check_run(config)
    if stop_after is not None and stop_after not in stages:
        raise UserInputError(f"--stop-after {stop_after!r}; allowed: {list(stages)}")
    if from_stage is not None and not resume:
        raise UserInputError("--from continues an existing run directory: pass --resume with it")
    text = dump_config(config)
    if resume:
        _apply_changes(RunDir.of(config), text, stages, from_stage, config_path)
    run = open_run(config, text, resume=resume)
    ctx = RunContext(config, run, ray_address, progress)
    for stage in stages:
        if read_stages(run.root).get(stage, {}).get("done"):
            print(f"[nas run] {stage}: done earlier, skipped")
        else:
            print(f"[nas run] {stage} ...", flush=True)
            started = time.perf_counter()
            try:
                summary = STAGE_FUNCTIONS[stage](ctx)
            except UserInputError as e:
                raise UserInputError(f"stage {stage!r} failed: {e} (earlier stages are kept; fix the config and rerun "
                                     f"with --resume: stages not yet finished take the changes)") from None
            mark_done(run.root, stage, {**summary, "seconds": round(time.perf_counter() - started, 1)})
        if stage == stop_after:
            break
    return run


def _apply_changes(run: RunDir, text: str, stages: tuple[str, ...], from_stage: str | None, config_path) -> None:
    """Before resuming: the stages to redo for a changed config or `from_stage` lose their results, and the run's
    config.yaml becomes the given one (nothing changes when a change touches a finished stage without --from)."""
    if not run.config.is_file():
        return  # open_run says why this directory cannot be resumed
    changes = changed_keys(run.config.read_text(), text)
    done = {stage for stage, entry in read_stages(run.root).items() if entry.get("done")}
    rerun = plan_rerun(changes, done, stages, from_stage, config_path)
    if not changes and not from_stage:
        return
    for key, (stored, given) in changes.items():
        print(f"[nas run] config change: {key}: {stored!r} -> {given!r}")
    removed = discard(run.root, rerun)
    if rerun:
        print(f"[nas run] redoing {', '.join(rerun)}" + (f" (removed {', '.join(p.name for p in removed)})"
                                                        if removed else ""))
    tmp = run.root / f".{run.config.name}.tmp"
    tmp.write_text(text)
    tmp.replace(run.config)
