"""End-to-end check of a measured lookup table: random ofa_mbv3 subnets exported whole to ONNX (jax2onnx) and
timed with ONNX Runtime, against the table's sum of layers; prints Spearman and median absolute error."""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import spearmanr

from latency_models.lut import LookupTable
from latency_models.profiler import TimingConfig
from latency_models.subnet_timing import CALIBRATION_SEED, time_subnets
from search_spaces import get_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("table", help="measured lookup table (from `nas profile --space ofa_mbv3`)")
    parser.add_argument("-n", type=int, default=30, help="random subnets (default 30)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    table = LookupTable.load(args.table)
    space_config = dict(table.metadata["space"])
    space = get_space(space_config.pop("name"), **space_config)
    layer_options = table.metadata.get("layer_options", {})
    timing = TimingConfig(warmup=10, repeats=args.repeats, threads=int(table.metadata.get("threads", 1)),
                          provider=table.metadata.get("provider", "CPUExecutionProvider"),
                          clock=table.metadata.get("clock", "wall"))
    if args.seed == CALIBRATION_SEED:
        parser.error(f"--seed {CALIBRATION_SEED} draws the table's own calibration subnets; pick another")
    archs = space.sample(args.n, args.seed)
    predicted = table.predict(space, archs)
    measured = time_subnets(space, archs, timing, layer_options)
    error = np.abs(predicted - measured) / measured
    for arch, p, m in zip(space.strings(archs), predicted, measured):
        print(f"{arch}  lut {p:8.3f} ms  measured {m:8.3f} ms  {100 * (p - m) / m:+6.1f}%")
    rho = spearmanr(predicted, measured).statistic
    print(f"table: {args.table}, per-layer correction {table.layer_correction_ms:.4f} ms "
          f"({table.metadata.get('calibration', 'not calibrated')})")
    print(f"subnets: {args.n}  Spearman {rho:.3f} (target >= 0.9)  median |error| {100 * np.median(error):.1f}% "
          f"(target <= 10%)  mean signed error {100 * np.mean((predicted - measured) / measured):+.1f}%")


if __name__ == "__main__":
    main()
