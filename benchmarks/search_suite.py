"""Search strategies on a suite of nb201 problems they were not tuned on: hypervolume gap after 100 and 300 queries.

Each problem is a full table over the 15,625 nb201 cells (canonical cells answer for their equivalents): the
shared Raspberry Pi 5 table (CIFAR-100 accuracy, latency, energy) where `../shared/data` has it, and synthetic
accuracy landscapes of different shapes (additive, interacting edges, saturating, cheap operations winning, noisy
evaluations) against roofline latency and energy models of real devices. Every objective is revealed only by
querying the table (no cheap metrics). Gap = 1 - HV / HV* of the distinct queried cells' true values, reference
point: each objective's median (accuracy) or 90th percentile (costs) over all cells, HV* over all cells.

With `--ofa-run RUN_DIR` (a finished `nas run` or `nas train` directory of an `ofa` supernet, such as
runs/quickstart) the suite adds `ofa-surrogate/pixel-7` to the report half: `--ofa-samples` random subnets are
evaluated by the supernet, a gradient-boosting surrogate (scikit-learn, fitted on them; its held-out Spearman is
printed) answers accuracy, the Pixel 7 roofline model latency; its space is too large to enumerate, so HV* is the
front of 100,000 random subnets and every run's queries, and the reference point comes from those random subnets.

The problems come in two halves: `tune` (defaults are chosen there) and `report` (figures are quoted there). Every
strategy and baseline runs in this process on the same problems and seeds; printed per problem: the median gap
over seeds per strategy at each budget, then the suite median per strategy and whether the default strategy beats
every baseline on every problem. Threads: one process per job (`--jobs`), numpy's default threads each.

    python benchmarks/search_suite.py --half report            # 5 seeds, 100 and 300 queries
    python benchmarks/search_suite.py --half tune --seeds 3 --strategies predictor,random
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

SHARED_TABLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201_pi5_onnx_cifar100.csv"
OFA = "ofa-surrogate/pixel-7"
BASELINES = ("random", "nsga2", "optuna-nsga2", "optuna-tpe")
# name: (half, accuracy source, cost columns, evaluation noise as a fraction of the accuracy's spread)
PROBLEMS = {
    "pi5-cifar100/latency": ("tune", "shared", ["pi5:latency_ms"], 0.0),
    "additive/pixel-7": ("tune", "additive", ["pixel-7:latency_ms"], 0.0),
    "cheap-wins/raspberry-pi-5": ("tune", "cheap-wins", ["raspberry-pi-5:latency_ms"], 0.0),
    "saturating-noisy/jetson": ("tune", "saturating", ["jetson-orin-nano:latency_ms"], 0.2),
    "pi5-cifar100/latency+energy": ("report", "shared", ["pi5:latency_ms", "pi5:energy_mj"], 0.0),
    "pi5-cifar100/jetson": ("report", "shared", ["jetson-orin-nano:latency_ms"], 0.0),
    "interacting/pixel-7+jetson": ("report", "interacting", ["pixel-7:latency_ms", "jetson-orin-nano:latency_ms"],
                                   0.0),
    "cheap-wins-noisy/pixel-7": ("report", "cheap-wins", ["pixel-7:latency_ms"], 0.2),
    "saturating/raspberry-pi-5-energy": ("report", "saturating", ["raspberry-pi-5:energy_mj"], 0.0),
}
# per operation (none, skip, 1x1, 3x3, pool): the mean effect of an edge taking it
_OP_EFFECT = {"additive": [-1.0, 0.0, 1.0, 1.5, 0.3], "interacting": [-1.0, 0.0, 1.0, 1.5, 0.3],
              "saturating": [-1.0, 0.0, 1.0, 1.5, 0.3], "cheap-wins": [0.5, 1.5, 0.2, -0.3, 1.2]}


def synthetic_accuracy(space, archs: np.ndarray, kind: str, seed: int) -> np.ndarray:
    """A landscape over the canonical cells: per-(edge, op) effects around `_OP_EFFECT`, plus pairwise edge
    interactions ('interacting') or squashed by tanh ('saturating')."""
    rng = np.random.default_rng(seed)
    canonical = space.canonical(archs)
    features = space.features(canonical)
    edges, ops = canonical.shape[1], len(_OP_EFFECT[kind])
    weights = (np.tile(_OP_EFFECT[kind], edges) + 0.5 * rng.normal(size=edges * ops)).astype(np.float64)
    values = features @ weights
    if kind == "interacting":
        pairs = rng.normal(size=(edges, ops, edges, ops))
        for i in range(edges):
            for j in range(i + 1, edges):
                values += 0.7 * pairs[i, canonical[:, i], j, canonical[:, j]]
    if kind == "saturating":
        values = np.tanh((values - values.mean()) / values.std())
    return values


def problem_columns(space, name: str) -> dict[str, np.ndarray] | None:
    """{'arch': strings, 'accuracy': ..., one column per cost} over every nb201 cell; None when the problem needs
    the shared table and it is absent."""
    from latency_models import build_cost_model

    _, source, costs, _ = PROBLEMS[name]
    needs_shared = source == "shared" or any(c.startswith("pi5:") for c in costs)
    if needs_shared and not SHARED_TABLE.is_file():
        return None
    archs = space.enumerate()
    columns = {"arch": np.array([space.to_string(a) for a in archs])}
    if needs_shared:
        from nas.evaluators.table import read_table

        shared = read_table(SHARED_TABLE)
        order = {s: i for i, s in enumerate(shared["arch"])}
        rows = np.array([order[s] for s in columns["arch"]])
    if source == "shared":
        columns["accuracy"] = shared["accuracy"][rows]
    else:
        columns["accuracy"] = synthetic_accuracy(space, archs, source, seed=len(name))
    for cost in costs:
        device, metric = cost.split(":")
        if device == "pi5":
            columns[metric] = shared[metric][rows]
        else:
            model = build_cost_model(space, device, "roofline")
            columns[metric] = np.asarray(model.predict(archs)[metric], np.float64)
    return columns


def write_problem(space, name: str, folder: Path) -> Path | None:
    columns = problem_columns(space, name)
    if columns is None:
        return None
    path = folder / (name.replace("/", "__") + ".csv")
    metrics = [k for k in columns if k != "arch"]
    with open(path, "w") as f:
        f.write(",".join(["arch", *metrics]) + "\n")
        for i, arch in enumerate(columns["arch"]):
            f.write(arch + "," + ",".join(f"{columns[m][i]:.9g}" for m in metrics) + "\n")
    return path


def objectives_of(path: Path):
    from nas.strategies import Objective

    metrics = path.read_text().split("\n", 1)[0].split(",")[1:]
    return [Objective(m, "max" if m == "accuracy" else "min") for m in metrics]


def reference_and_volume(table, objectives) -> tuple[np.ndarray, float]:
    """Reference point (median accuracy, 90th percentile of each cost, over all rows; minimisation convention)
    and HV* of the canonical rows."""
    from nas.pareto import hypervolume

    rows = np.fromiter(table._index.values(), dtype=np.int64)
    values = np.stack([o.sign * table._values[o.name] for o in objectives], axis=1)
    ref = np.array([np.median(values[:, i]) if o.name == "accuracy" else np.quantile(values[:, i], 0.9)
                    for i, o in enumerate(objectives)])
    return ref, hypervolume(values[rows], ref)


class OfaSurrogate:
    """The `ofa-surrogate/pixel-7` problem: a surrogate of the supernet's accuracy, and roofline latency."""

    objectives_spec = (("accuracy", "max"), ("latency_ms", "min"))

    def __init__(self, run_dir: str, samples: int):
        from scipy.stats import spearmanr
        from sklearn.ensemble import HistGradientBoostingRegressor

        from nas.evaluators.supernet import SupernetEvaluator
        from nas.train import load_trained_supernet
        from supernets.registry import family_for

        _, self.space, config = load_trained_supernet(run_dir)
        self.layer_options = family_for(config).layer_options(config, 10)
        archs = self.space.sample(samples, 0)
        evaluator = SupernetEvaluator(self.space, run_dir, num_actors=0)
        accuracy = evaluator.evaluate(archs)["accuracy"]
        evaluator.close()
        features = self.space.features(archs)
        half = samples // 2
        check = HistGradientBoostingRegressor(random_state=0).fit(features[:half], accuracy[:half])
        self.held_out_spearman = float(spearmanr(check.predict(features[half:]), accuracy[half:]).statistic)
        self.model = HistGradientBoostingRegressor(random_state=0).fit(features, accuracy)

    def evaluate(self, archs) -> dict[str, np.ndarray]:
        from latency_models import build_cost_model

        if not hasattr(self, "_latency"):
            self._latency = build_cost_model(self.space, "pixel-7", "roofline", layer_options=self.layer_options)
        return {"accuracy": self.model.predict(self.space.features(archs)),
                "latency_ms": np.asarray(self._latency.predict(archs)["latency_ms"], np.float64)}

    def objectives(self):
        from nas.strategies import Objective

        return [Objective(name, direction) for name, direction in self.objectives_spec]


def table_problem(path: str):
    """(space, objectives, evaluate, distinct-query counter) of a table problem."""
    from nas.evaluators.table import TableEvaluator
    from search_spaces import get_space

    space = get_space("nb201")
    objectives = objectives_of(Path(path))
    table = TableEvaluator(space, path, metrics=[o.name for o in objectives])
    return space, objectives, table


def run_one(job) -> dict:
    """One strategy on one problem and seed: the true (minimised) values of the distinct queried cells after each
    budget, and the wall time."""
    from nas.strategies import get_strategy

    problem, source, strategy_name, seed, budgets, batch, options = job
    if isinstance(source, OfaSurrogate):
        space, objectives, evaluate = source.space, source.objectives(), source.evaluate
        noise = 0.0
    else:
        space, objectives, table = table_problem(source)
        evaluate = table.evaluate
        noise = PROBLEMS[problem][3] * float(np.ptp(table._values["accuracy"]))
    rng = np.random.default_rng(1000 + seed)
    strategy = get_strategy(strategy_name)(space, objectives, seed=seed, **options.get(strategy_name, {}))
    seen, points, started, asks = {}, {}, time.perf_counter(), 0
    while len(seen) < max(budgets) and asks < 10 * max(budgets):
        archs = strategy.ask(min(batch, max(budgets) - len(seen)))
        asks += 1
        if len(archs) == 0:
            break
        truth = evaluate(archs)
        strategy.tell(archs, dict(truth, accuracy=truth["accuracy"] + noise * rng.normal(size=len(archs))))
        values = np.stack([o.sign * truth[o.name] for o in objectives], axis=1)
        for key, value in zip(space.hash(space.canonical(archs)).tolist(), values):
            seen.setdefault(key, value)
        for budget in budgets:
            if budget not in points and len(seen) >= budget:
                points[budget] = np.array(list(seen.values()))
    return {"problem": problem, "strategy": strategy_name, "seed": seed, "points": points,
            "seconds": time.perf_counter() - started}


def ofa_reference(problem: OfaSurrogate, results: list[dict]) -> tuple[np.ndarray, float]:
    """Reference point from 100,000 random subnets; HV* of the front of those and of every run's queries."""
    from nas.pareto import hypervolume, pareto_mask

    objectives = problem.objectives()
    truth = problem.evaluate(problem.space.sample(100_000, 1))
    values = np.stack([o.sign * truth[o.name] for o in objectives], axis=1)
    ref = np.array([np.median(values[:, i]) if o.name == "accuracy" else np.quantile(values[:, i], 0.9)
                    for i, o in enumerate(objectives)])
    union = np.vstack([values, *[p for r in results for p in r["points"].values()]])
    return ref, hypervolume(union[pareto_mask(union)], ref)


def main(argv=None) -> int:
    from nas.pareto import hypervolume
    from nas.strategies import DEFAULT_STRATEGY
    from search_spaces import get_space

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--half", choices=("tune", "report", "all"), default="report")
    parser.add_argument("--problems", default=None, help="comma-separated names (default: the half's; '' for none, e.g. with --ofa-run)")
    parser.add_argument("--strategies", default=None, help=f"default: the default strategy and {','.join(BASELINES)}")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budgets", default="100,300")
    parser.add_argument("--batch", type=int, default=10, help="cells per ask")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel, one process each")
    parser.add_argument("--options", type=json.loads, default={},
                        help='strategy options as JSON, e.g. \'{"predictor": {"optimism": 0.5}}\'')
    parser.add_argument("--ofa-run", type=Path, default=None, help="an ofa run directory: adds " + OFA)
    parser.add_argument("--ofa-samples", type=int, default=300, help="supernet evaluations the surrogate learns")
    parser.add_argument("--out", type=Path, default=None, help="write every run's gaps as JSON")
    args = parser.parse_args(argv)
    space = get_space("nb201")
    names = ([n for n in args.problems.split(",") if n] if args.problems is not None else
             [n for n, (half, *_) in PROBLEMS.items() if args.half in ("all", half)])
    strategies = args.strategies.split(",") if args.strategies else [DEFAULT_STRATEGY, *BASELINES]
    budgets = [int(b) for b in args.budgets.split(",")]
    started = time.perf_counter()
    halves = {name: PROBLEMS[name][0] for name in names}
    with tempfile.TemporaryDirectory() as folder:
        sources = {}
        for name in names:
            path = write_problem(space, name, Path(folder))
            if path is None:
                print(f"{name}: skipped, {SHARED_TABLE} is absent")
            else:
                sources[name] = str(path)
        if args.ofa_run:
            sources[OFA] = OfaSurrogate(str(args.ofa_run), args.ofa_samples)
            halves[OFA] = "report"
            print(f"{OFA}: surrogate of {args.ofa_samples} supernet evaluations of {args.ofa_run}, held-out "
                  f"Spearman {sources[OFA].held_out_spearman:.3f}", flush=True)
        jobs = [(p, sources[p], s, seed, budgets, args.batch, args.options) for p in sources for s in strategies
                for seed in range(args.seeds)]
        print(f"{len(sources)} problems x {len(strategies)} strategies x {args.seeds} seeds = {len(jobs)} runs, "
              f"{args.jobs} processes; default strategy: {DEFAULT_STRATEGY}", flush=True)
        with ProcessPoolExecutor(args.jobs) as pool:
            results = list(pool.map(run_one, jobs))
        for p, source in sources.items():
            if isinstance(source, OfaSurrogate):
                ref, best = ofa_reference(source, [r for r in results if r["problem"] == p])
            else:
                _, objectives, table = table_problem(source)
                ref, best = reference_and_volume(table, objectives)
            for r in results:
                if r["problem"] == p:
                    r["gaps"] = {b: 1.0 - hypervolume(r["points"][b], ref) / best for b in budgets}
    paths = list(sources)
    medians = {(p, s, b): float(np.median([r["gaps"][b] for r in results if r["problem"] == p and r["strategy"] == s]))
               for p in paths for s in strategies for b in budgets}
    print(f"\nmedian hypervolume gap over {args.seeds} seeds ({time.perf_counter() - started:.0f} s)")
    print(f"{'problem':34s}" + "".join(f"{s + ' @' + str(b):>18s}" for s in strategies for b in budgets))
    for p in paths:
        print(f"{p:34s}" + "".join(f"{medians[p, s, b]:18.3f}" for s in strategies for b in budgets))
    for half in ("tune", "report"):
        members = [p for p in paths if halves[p] == half]
        if members and len(members) < len(paths):
            print(f"{'median, ' + half + ' half':34s}" + "".join(
                f"{np.median([medians[p, s, b] for p in members]):18.3f}" for s in strategies for b in budgets))
    print(f"{'median, whole suite':34s}" + "".join(f"{np.median([medians[p, s, b] for p in paths]):18.3f}"
                                                  for s in strategies for b in budgets))
    ours = strategies[0]
    losses = [(p, s, b) for p in paths for s in strategies[1:] for b in budgets
              if medians[p, s, b] <= medians[p, ours, b]]
    print(f"{ours} beats every other strategy on every problem at every budget: {not losses}"
          + "".join(f"\n  not on {p} @{b}: {s} {medians[p, s, b]:.3f} <= {medians[p, ours, b]:.3f}"
                    for p, s, b in losses))
    if args.out:
        args.out.write_text(json.dumps([{k: v for k, v in r.items() if k != "points"} for r in results], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
