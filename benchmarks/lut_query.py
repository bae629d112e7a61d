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
    best_wall, best_cpu = (min(t) for t in zip(*[_timed(lambda: table.predict(space, archs)) for _ in range(3)]))
    loop_archs = archs[: args.loop_n]
    loop_wall, loop_cpu = _timed(lambda: loop_predict(space, table, loop_archs))
    np.testing.assert_allclose(loop_predict(space, table, loop_archs[:100]), table.predict(space, loop_archs[:100]))
    for name, n, wall, cpu in (("vectorized", args.n, best_wall, best_cpu), ("loop", args.loop_n, loop_wall, loop_cpu)):
        print(f"{name:<10} {n:>9,} archs: wall {wall:.3f} s = {n / wall:>11,.0f} archs/s; "
              f"CPU {cpu:.3f} s = {n / cpu:>11,.0f} archs per CPU-second")
    print(f"speedup (wall): {(args.n / best_wall) / (args.loop_n / loop_wall):,.0f}x; "
          f"(CPU): {(args.n / best_cpu) / (args.loop_n / loop_cpu):,.0f}x")


def _timed(fn) -> tuple[float, float]:
    """Wall time and CPU time of this process (the latter unaffected by other processes sharing the cores)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


if __name__ == "__main__":
    main()
