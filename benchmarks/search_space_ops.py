"""Sampling, mutation and canonical hashing of 1,000,000 ofa_mbv3 architectures: arrays versus a per-architecture loop.

Run: python benchmarks/search_space_ops.py [--n 1000000] [--loop-n 20000]
The loop baseline does the same work one architecture at a time in Python (as dict-of-lists NAS code does); it is
timed on --loop-n architectures and reported per architecture.
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np

from search_spaces import get_space
from search_spaces.ofa_mbv3 import DEPTH_CHOICES, MAX_DEPTH, NUM_STAGES


def loop_sample(space, n, rng):
    return [[rng.randrange(int(s)) for s in space.sizes] for _ in range(n)]


def loop_mutate(space, archs, prob, rng):
    out = []
    for arch in archs:
        row = list(arch)
        for j, size in enumerate(space.sizes):
            if rng.random() < prob:
                row[j] = (row[j] + rng.randrange(1, int(size))) % int(size)
        out.append(row)
    return out


def loop_canonical_hash(archs):
    keys = []
    for arch in archs:
        row = list(arch)
        for s in range(NUM_STAGES):
            depth = DEPTH_CHOICES[row[1 + s]]
            for b in range(depth, MAX_DEPTH):
                row[6 + MAX_DEPTH * s + b] = 0
                row[26 + MAX_DEPTH * s + b] = 0
        keys.append(hash(tuple(row)))
    return keys


def timed(fn, repeats: int = 3):
    """(output, median seconds over `repeats` calls): later calls reuse memory the first one had to fault in."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, sorted(times)[len(times) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--loop-n", type=int, default=20_000)
    args = parser.parse_args()
    space = get_space("ofa_mbv3")
    rng = np.random.default_rng(0)
    prng = random.Random(0)

    archs, t_sample = timed(lambda: space.sample(args.n, rng))
    mutated, t_mutate = timed(lambda: space.mutate(archs, 0.1, rng))
    _, t_hash = timed(lambda: space.hash(mutated))
    loop_archs, l_sample = timed(lambda: loop_sample(space, args.loop_n, prng))
    loop_mut, l_mutate = timed(lambda: loop_mutate(space, loop_archs, 0.1, prng))
    _, l_hash = timed(lambda: loop_canonical_hash(loop_mut))

    print(f"ofa_mbv3, D={space.num_decisions}; arrays on {args.n:,} architectures, loop on {args.loop_n:,}")
    print(f"{'operation':<18}{'arrays (arch/s)':>18}{'loop (arch/s)':>16}{'speed-up':>10}")
    for name, t, lt in (("sample", t_sample, l_sample), ("mutate", t_mutate, l_mutate),
                        ("canonical hash", t_hash, l_hash)):
        fast, slow = args.n / t, args.loop_n / lt
        print(f"{name:<18}{fast:>18,.0f}{slow:>16,.0f}{fast / slow:>9.0f}x")
    total = args.n / (t_sample + t_mutate + t_hash)
    print(f"all three in sequence: {total:,.0f} architectures/s (goal: >= 1,000,000)")


if __name__ == "__main__":
    main()
