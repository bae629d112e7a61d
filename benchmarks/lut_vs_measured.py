"""End-to-end check of a measured lookup table: random ofa_mbv3 subnets exported whole to ONNX (jax2onnx) and
timed with ONNX Runtime, against the table's sum of layers; prints Spearman and median absolute error."""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import spearmanr
from tqdm import tqdm

from latency_models.layer_modules import filled, ofa_static_config, onnx_friendly_activations
from latency_models.lut import LookupTable
from latency_models.profiler import TimingConfig, time_model
from search_spaces import get_space


def export_subnet(space, arch, layer_options) -> bytes:
    import jax2onnx
    from flax import nnx
    from supernets.static import StaticMobileNetV3
    config = ofa_static_config(space, arch, **layer_options)
    resolution = int(space.values(arch)[0, 0])
    with onnx_friendly_activations():
        model = filled(lambda: StaticMobileNetV3.from_config(config, rngs=nnx.Rngs(0)))
        proto = jax2onnx.to_onnx(lambda x: model(x, False), [(1, resolution, resolution, 3)], model_name="subnet")
    return proto.SerializeToString()


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
    archs = space.sample(args.n, args.seed)
    predicted = table.predict(space, archs)
    measured = np.array([np.median(time_model(export_subnet(space, a[None], layer_options), timing))
                         for a in tqdm(archs, desc="export + time subnets", unit="subnet")])
    error = np.abs(predicted - measured) / measured
    for arch, p, m in zip(space.strings(archs), predicted, measured):
        print(f"{arch}  lut {p:8.3f} ms  measured {m:8.3f} ms  {100 * (p - m) / m:+6.1f}%")
    rho = spearmanr(predicted, measured).statistic
    print(f"subnets: {args.n}  Spearman {rho:.3f} (target >= 0.9)  median |error| {100 * np.median(error):.1f}% "
          f"(target <= 10%)  mean signed error {100 * np.mean((predicted - measured) / measured):+.1f}%")


if __name__ == "__main__":
    main()
