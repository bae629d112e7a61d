"""A search whose evaluations take uneven times, on Ray actors: asynchronous (no barrier per generation) against
generation by generation, in the same run.

The evaluator's Ray actors sleep for each architecture's duration (`--slow-share` of the architectures take
`--slow` seconds, the rest `--fast`), so the figure is about scheduling, not compute: with a barrier, every
generation waits for its slowest evaluation while the other actors idle. Both searches use the same strategy,
seed, budget and population on a local Ray with `--actors` actors; printed: wall time of each and the ratio, and
the share of actor time spent evaluating. Threads: one per actor (they only sleep).

    python benchmarks/async_search.py                      # 2 actors, budget 48, population 8, evolution
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


class SleepingWorker:
    """Answers `evaluate(arch)` after sleeping for the architecture's duration; accuracy from its values."""

    def __init__(self, payload):
        self.slow, self.fast, self.share = payload

    def evaluate(self, archs):
        key = int(np.asarray(archs).sum() * 7919 % 100)
        time.sleep(self.slow if key < 100 * self.share else self.fast)
        return [float(np.asarray(archs).sum())]


class SleepingEvaluator:
    """The supernet evaluator's interface (batch `evaluate`, and `submit`/`completed`) over SleepingWorker actors."""

    metrics = ("accuracy",)
    asynchronous = True

    def __init__(self, pool):
        self.pool = pool

    def evaluate(self, archs):
        results = self.pool.map("evaluate", [archs[i:i + 1] for i in range(len(archs))])
        return {"accuracy": np.asarray([r[0] for r in results])}

    def submit(self, arch):
        return self.pool.submit("evaluate", np.asarray(arch)[None])

    def completed(self):
        return [(ticket, {"accuracy": result[0]}) for ticket, result in self.pool.completed()]

    def close(self):
        pass


def main() -> None:
    from nas.ray_pool import ActorPool, ensure_ray
    from nas.search import run_search
    from search_spaces import get_space

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--budget", type=int, default=48)
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--strategy", default="evolution")
    parser.add_argument("--slow", type=float, default=1.0, help="seconds of a slow evaluation")
    parser.add_argument("--fast", type=float, default=0.1, help="seconds of the others")
    parser.add_argument("--slow-share", type=float, default=0.1)
    args = parser.parse_args()
    owns = ensure_ray(num_cpus=args.actors)
    pool = ActorPool(SleepingWorker, (args.slow, args.fast, args.slow_share), num_actors=args.actors,
                     pin_cpus=False)
    pool.broadcast("evaluate", np.zeros((1, 6), np.int64))
    space = get_space("nb201")
    seconds, busy = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for mode in (False, True):
            started = time.perf_counter()
            result = run_search(space, SleepingEvaluator(pool), ["accuracy:max"], out=Path(folder) / str(mode),
                                budget=args.budget, population=args.population, strategy=args.strategy,
                                progress=False, asynchronous=mode)
            seconds[mode] = time.perf_counter() - started
            archs = space.parse(list(result.history["arch"]))
            keys = (archs.sum(1) * 7919 % 100).astype(int)
            work = np.where(keys < 100 * args.slow_share, args.slow, args.fast).sum()
            busy[mode] = work / (seconds[mode] * args.actors)
    pool.close()
    if owns:
        import ray

        ray.shutdown()
    print(f"{args.budget} evaluations, population {args.population}, {args.strategy}, {args.actors} Ray actors; "
          f"{args.slow_share:.0%} take {args.slow} s, the rest {args.fast} s")
    print(f"generation by generation: {seconds[False]:.2f} s (actors busy {busy[False]:.0%})")
    print(f"asynchronous:             {seconds[True]:.2f} s (actors busy {busy[True]:.0%})")
    print(f"speed-up: {seconds[False] / seconds[True]:.2f}x")


if __name__ == "__main__":
    main()
