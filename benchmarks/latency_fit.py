"""Few-shot calibrated predictor vs FLOPs-linear and one-hot-additive baselines fitted on the same measured samples.

For each measurement table (distinct canonical architectures; isomorphic cells share a measurement), sample size
(30/100/300) and seed: fit on the sample, test on every other architecture of the table; print Spearman rho,
Kendall tau, share within +-10%, RMSE, and our error ratio against each baseline.

    python benchmarks/latency_fit.py [--seeds 3] [--sizes 30 100 300] [--tables PATH ...] [--without GROUP ...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from latency_models.layers import layer_table
from latency_models.predictor import CalibratedPredictor, accuracy, distinct_architectures, read_measurements
from latency_models.predictor_features import default_kernels, feature_groups, reference_layer_values
from search_spaces import get_space

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TABLES = [REPO.parent / "shared" / "data" / "nb201_pi5_onnx_cifar100.csv",
                  REPO / "benchmarks" / "data" / "nb201_host_cpu_onnx.csv",
                  REPO / "benchmarks" / "data" / "nb201_host_cpu_onnx_1200.csv"]
MIN_TEST = 100
KEYS = ("spearman", "kendall", "within_10pct", "rmse")


def least_squares(train_x: np.ndarray, train_y: np.ndarray, ridge: float):
    """Linear model with intercept, ridge-penalised slopes; returns a predict function."""
    mean_x, mean_y = train_x.mean(0), train_y.mean()
    centred = train_x - mean_x
    w = np.linalg.solve(centred.T @ centred + ridge * np.eye(train_x.shape[1]), centred.T @ (train_y - mean_y))
    return lambda x: (x - mean_x) @ w + mean_y


def flops_linear(space, train, y, test):
    macs = lambda a: layer_table(space, a).totals()["macs"][:, None] / 1e6
    return least_squares(macs(train), y, 0.0)(macs(test))


def one_hot_additive(space, train, y, test):
    return least_squares(space.features(train).astype(np.float64), y, 1e-2)(space.features(test).astype(np.float64))


BASELINES = {"flops-linear": flops_linear, "one-hot-additive": one_hot_additive}


def run_once(space, archs, measured, n, seed, kernels):
    """Metrics of ours and each baseline for one (size, seed) split, per measured metric."""
    order = np.random.default_rng(seed).permutation(len(archs))
    train, test = order[:n], order[n:]
    start = time.perf_counter()
    predictor = CalibratedPredictor.fit(space, archs[train], {k: v[train] for k, v in measured.items()},
                                        kernels=kernels)
    fit_s = time.perf_counter() - start
    predicted = predictor.predict(space, archs[test])
    rows = []
    for metric, values in measured.items():
        floor = values[train].min() * 1e-3
        results = {"ours": accuracy(predicted[metric], values[test])}
        for name, baseline in BASELINES.items():
            guess = np.maximum(baseline(space, archs[train], values[train], archs[test]), floor)
            results[name] = accuracy(guess, values[test])
        rows.append((metric, results, fit_s, predictor.models[metric].target))
    return rows


def repeatability(space, table: Path, archs, measured) -> None:
    """How well a second measurement pass (`<table>_repeat.csv`) agrees with the first: the noise ceiling."""
    repeat_path = table.with_name(table.stem + "_repeat.csv")
    if not repeat_path.exists():
        return
    again, again_measured = distinct_architectures(space, *read_measurements(repeat_path, space))
    first = dict(zip(space.hash(archs).tolist(), measured["latency_ms"]))
    common = [i for i, key in enumerate(space.hash(again).tolist()) if key in first]
    keys = space.hash(again[common]).tolist()
    s = accuracy(again_measured["latency_ms"][common], np.array([first[k] for k in keys]))
    print(f"   measurement repeatability ({len(common)} networks timed twice): rho {s['spearman']:.3f}, "
          f"within +-10% {100 * s['within_10pct']:.1f}% -- the ceiling for any predictor")


def report(table: Path, sizes, seeds, without: list[str]) -> None:
    space = get_space("nb201")
    archs, measured = read_measurements(table, space)
    archs, measured = distinct_architectures(space, archs, measured)
    print(f"\n== {table.name}: {len(archs)} distinct architectures, metrics {list(measured)}")
    repeatability(space, table, archs, measured)
    kernels = [k for k in default_kernels(space, feature_groups(space, archs[:1], reference_layer_values(space)))
               if k[0] not in without]
    print(f"   kernels: {kernels}")
    header = f"{'metric':<11}{'n':>5} {'model':<17}{'rho':>7}{'tau':>7}{'<=10%':>8}{'RMSE':>9}"
    for n in sizes:
        if len(archs) - n < MIN_TEST:
            print(f"   n={n}: skipped, fewer than {MIN_TEST} architectures would be left to test")
            continue
        runs = [run_once(space, archs, measured, n, seed, kernels) for seed in range(seeds)]
        print(header)
        for m, (metric, _, _, _) in enumerate(runs[0]):
            fit_times = [run[m][2] for run in runs]
            targets = sorted({run[m][3] for run in runs})
            means = {model: {k: np.mean([run[m][1][model][k] for run in runs]) for k in KEYS}
                     for model in runs[0][m][1]}
            for model, s in means.items():
                print(f"{metric:<11}{n:>5} {model:<17}{s['spearman']:>7.3f}{s['kendall']:>7.3f}"
                      f"{100 * s['within_10pct']:>7.1f}%{s['rmse']:>9.4f}")
            ratios = ", ".join(f"RMSE {means[b]['rmse'] / means['ours']['rmse']:.2f}x lower than {b}"
                               for b in BASELINES)
            print(f"{'':16}ours: {ratios}; fit {np.mean(fit_times):.1f} s (max {np.max(fit_times):.1f}), "
                  f"target {'/'.join(targets)}, mean of {seeds} seeds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=Path, nargs="+", default=DEFAULT_TABLES)
    parser.add_argument("--sizes", type=int, nargs="+", default=[30, 100, 300])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--without", nargs="+", default=[], metavar="GROUP",
                        help="feature groups our predictor leaves out (ablation), e.g. reference_latency")
    args = parser.parse_args()
    for table in args.tables:
        if not table.exists():
            print(f"\n== {table}: not found, skipped")
            continue
        report(table, args.sizes, args.seeds, args.without)


if __name__ == "__main__":
    main()
