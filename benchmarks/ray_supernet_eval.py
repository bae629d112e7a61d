"""Evaluating 64 subnets with the supernet evaluator's Ray actors: 2 actors versus 1 (goal: >= 1.7x on 2 cores).

Run: python benchmarks/ray_supernet_eval.py [--run-dir runs/tiny_train] [--subnets 64] [--actors 2] [--cache-dir D]
Without --run-dir the supernet of nas/experiments/tiny_train.yaml is built with fresh weights (the work per subnet, BN
calibration and validation accuracy, is the same). Each actor is pinned to its own core, uses one XLA thread and
evaluates a few subnets of every resolution before timing starts (the second pool's actors load the first pool's
compilations from a fresh persistent cache), so the times are of evaluation alone.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WARMUP_PER_RESOLUTION = 4  # subnets every actor evaluates before timing: compiles, caches and allocator warm up


def payload_of(args) -> tuple[dict, object]:
    from nas.config import load_config
    from nas.evaluators.supernet import supernet_payload
    from nas.train import create_model, load_data, load_trained_supernet

    if args.run_dir:
        model, space, config = load_trained_supernet(args.run_dir)
        data = load_data(config)
    else:
        config = load_config(ROOT / "nas" / "experiments" / "tiny_train.yaml")
        space, data = config.build_space(), load_data(config)
        model = create_model(config, space, data.num_classes, data.channels)
    return supernet_payload(model, config, data), space


def timed_pool(payload, space, subnets: np.ndarray, num_actors: int, cache_dir: str) -> tuple[float, list[float]]:
    from nas.evaluators.supernet import SupernetWorker, actor_env
    from nas.ray_pool import ActorPool

    pool = ActorPool(SupernetWorker, payload, num_actors=num_actors, env_vars=actor_env(cache_dir))
    try:
        per_resolution = [subnets[subnets[:, 0] == r][:WARMUP_PER_RESOLUTION] for r in np.unique(subnets[:, 0])]
        pool.broadcast("evaluate", np.concatenate(per_resolution))
        start = time.perf_counter()
        results = pool.map("evaluate", [subnets[i:i + 1] for i in range(len(subnets))])
        return time.perf_counter() - start, [r[0] for r in results]
    finally:
        pool.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", help="a run directory of `nas train` (default: fresh tiny supernet)")
    parser.add_argument("--subnets", type=int, default=64)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", help="persistent JAX compilation cache to reuse across runs (default: fresh)")
    args = parser.parse_args()

    import ray

    from nas.ray_pool import ensure_ray

    payload, space = payload_of(args)
    subnets = space.sample(args.subnets, args.seed)
    ensure_ray(num_cpus=os.cpu_count())
    try:
        with tempfile.TemporaryDirectory(prefix="hwnas-jax-cache-") as fresh:
            cache_dir = args.cache_dir or fresh
            one, acc_one = timed_pool(payload, space, subnets, 1, cache_dir)
            many, acc_many = timed_pool(payload, space, subnets, args.actors, cache_dir)
    finally:
        ray.shutdown()
    assert np.allclose(acc_one, acc_many), "the actors disagree on some subnet's accuracy"
    print(f"{args.subnets} subnets of {space.name} {space.config()}, {os.cpu_count()} CPUs, one XLA thread per actor")
    print(f"1 actor:  {one:8.2f} s  ({args.subnets / one:6.2f} subnets/s)")
    print(f"{args.actors} actors: {many:8.2f} s  ({args.subnets / many:6.2f} subnets/s)")
    print(f"speed-up: {one / many:.2f}x (goal: >= 1.7x with 2 actors on 2 cores)")


if __name__ == "__main__":
    main()
