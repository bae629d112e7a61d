"""Benchmark: multi-objective search on the NB201 Raspberry Pi 5 table (accuracy max, latency_ms min), hypervolume
gap 1 - HV/HV* against the table's true front after 100 and 300 distinct queries, medians over seeds, ours
(predictor, nsga2) against random search and Optuna NSGA-II run in the same process.

Headline case: both objectives are revealed only by querying the table (no cheap metrics at all). With
`--with-model`, the strategies also get free FLOPs/params (from the layer tables) and a roofline latency estimate
of the Pi 5 (named `roofline_ms`, not the measured latency) as cheap metrics."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from nas.evaluators.table import TableEvaluator
from nas.pareto import hypervolume
from nas.strategies import Objective, get_strategy
from search_spaces import get_space

TABLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201_pi5_onnx_cifar100.csv"
OBJECTIVES = [Objective("accuracy", "max"), Objective("latency_ms", "min")]


def true_front_volume(table: TableEvaluator) -> tuple[np.ndarray, float]:
    """Reference point (the table's median accuracy and 90th-percentile latency over all rows, minimisation
    convention) and HV* of the canonical rows (the rows an evaluator answers with)."""
    accuracy, latency = table._values["accuracy"], table._values["latency_ms"]
    ref = np.array([-np.median(accuracy), np.quantile(latency, 0.9)])
    rows = np.fromiter(table._index.values(), dtype=np.int64)
    return ref, hypervolume(np.stack([-accuracy[rows], latency[rows]], axis=1), ref)


def cheap_model(space):
    """Free metrics a user with a latency model has: FLOPs, params and a roofline estimate of the Pi 5."""
    from latency_models.cost_model import build_cost_model
    from nas.evaluators.cheap import SizeMetrics

    sizes = SizeMetrics(space)
    roofline = build_cost_model(space, "raspberry-pi-5", "roofline")

    def metrics(archs):
        out = sizes.evaluate(archs)
        return {"flops": out["flops"], "params": out["params"],
                "roofline_ms": np.asarray(roofline.predict(archs)["latency_ms"], np.float64)}

    return metrics


def run_one(space, name, seed, budget, batch, checkpoints, cheap, ref, hv_star) -> tuple[dict, float]:
    """Gap after each checkpoint's number of distinct queries, and the wall time."""
    table = TableEvaluator(space, TABLE, metrics=["accuracy", "latency_ms"])
    strategy = get_strategy(name)(space, OBJECTIVES, cheap_metrics=cheap, seed=seed)
    gaps, start = {}, time.perf_counter()
    while table.num_queried < budget:
        archs = strategy.ask(min(batch, budget - table.num_queried))
        if len(archs) == 0:
            break
        metrics = table.evaluate(archs)
        strategy.tell(archs, {**metrics, **(cheap(archs) if cheap else {})})
        for q in checkpoints:
            if q not in gaps and table.num_queried >= q:
                values = np.stack([-strategy.metrics["accuracy"], strategy.metrics["latency_ms"]], axis=1)
                gaps[q] = 1.0 - hypervolume(values, ref) / hv_star
    return gaps, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=10, help="architectures per ask")
    parser.add_argument("--strategies", default="predictor,nsga2,random,optuna-nsga2")
    parser.add_argument("--checkpoints", default="100,300")
    parser.add_argument("--with-model", action="store_true", help="give FLOPs/params/roofline latency for free")
    args = parser.parse_args(argv)
    if not TABLE.is_file():
        print(f"table {TABLE} is missing; nothing to benchmark")
        return 0
    space = get_space("nb201")
    ref, hv_star = true_front_volume(TableEvaluator(space, TABLE, metrics=["accuracy", "latency_ms"]))
    checkpoints = [int(q) for q in args.checkpoints.split(",")]
    cheap = cheap_model(space) if args.with_model else None
    print(f"reference point: accuracy {-ref[0]:.3f}, latency {ref[1]:.3f} ms; HV* = {hv_star:.4f}; "
          f"{'with' if cheap else 'no'} cheap metrics; batch {args.batch}; {args.seeds} seeds")
    medians = {}
    for name in args.strategies.split(","):
        runs = [run_one(space, name, seed, max(checkpoints), args.batch, checkpoints, cheap, ref, hv_star)
                for seed in range(args.seeds)]
        medians[name] = {q: float(np.median([g[q] for g, _ in runs])) for q in checkpoints}
        per_seed = "  ".join("/".join(f"{g[q]:.3f}" for q in checkpoints) for g, _ in runs)
        seconds = np.median([t for _, t in runs])
        print(f"{name:>14}: median gap " + ", ".join(f"{q}: {medians[name][q]:.3f}" for q in checkpoints)
              + f"   (seeds {per_seed}; {seconds:.1f} s per run)", flush=True)
    ours = next(iter(medians))
    for other in list(medians)[1:]:
        print(f"gap ratio {other} / {ours}: " + ", ".join(
            f"{q}: {medians[other][q] / max(medians[ours][q], 1e-9):.1f}x" for q in checkpoints))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
