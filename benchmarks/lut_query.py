"""Lookup-table query throughput for ofa_mbv3: the vectorized gather + sum against a per-architecture loop."""

from __future__ import annotations

import argparse
import time

import numpy as np

from latency_models.layers import space_layers
from latency_models.lut import LookupTable, default_metadata, entry
from search_spaces import get_space


def random_table(space) -> LookupTable:
    rng = np.random.default_rng(0)
    entries = {key: entry(rng.random(3)) for key in space_layers(space).keys}
    return LookupTable(entries, default_metadata("host-cpu", "measured", overhead_ms=0.1))


def loop_predict(space, table: LookupTable, archs) -> np.ndarray:
    """The baseline: for each architecture, enumerate its layers and add their entries."""
    layers = space_layers(space)
    out = np.empty(len(archs))
    for i, arch in enumerate(archs):
        index, count = layers.table(arch[None]).index[0], layers.table(arch[None]).count[0]
        out[i] = sum(table.entries[layers.layers[j].key]["median"] * c for j, c in zip(index, count)) + 0.1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=1_000_000, help="architectures for the vectorized path")
    parser.add_argument("--loop-n", type=int, default=2_000, help="architectures for the loop baseline")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 160, 192, 224])
    args = parser.parse_args()
    space = get_space("ofa_mbv3", resolutions=tuple(args.resolutions))
    table = random_table(space)
    archs = space.sample(args.n, 0)
    table.predict(space, archs[:10])
    best = min(_timed(lambda: table.predict(space, archs)) for _ in range(3))
    loop_archs = archs[: args.loop_n]
    loop_time = _timed(lambda: loop_predict(space, table, loop_archs))
    np.testing.assert_allclose(loop_predict(space, table, loop_archs[:100]), table.predict(space, loop_archs[:100]))
    fast, slow = args.n / best, args.loop_n / loop_time
    print(f"vectorized: {args.n:,} archs in {best:.3f} s = {fast:,.0f} archs/s")
    print(f"loop:       {args.loop_n:,} archs in {loop_time:.3f} s = {slow:,.0f} archs/s")
    print(f"speedup: {fast / slow:,.0f}x")


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
