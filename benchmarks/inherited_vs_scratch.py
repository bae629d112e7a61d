"""Inherited supernet weights vs training from scratch: accuracy gap and ranking agreement on `shapes`.

Trains the supernet once (`nas.train`, the config of `experiment`), then for subnets from the smallest to the largest
measures test accuracy (a) with inherited weights after BN calibration and (b) after training the same subnet from
scratch with the same optimizer for as many steps as the whole supernet training. Prints the table, the mean gap
(goal: inherited within 1.5 points of scratch) and Kendall's tau between the two rankings (goal: >= 0.6).

`--seeds N` repeats the training (data, initialisations, the subnets sampled per step) for seeds 0..N-1, measures the
same ladder of subnets each time and also prints the gap and tau averaged over the seeds and the tau between the
seed-averaged accuracies; `--jobs 2` runs the supernet and the scratch trainings in two processes, one CPU each;
`--epochs` sets the training length of both sides.

    python benchmarks/inherited_vs_scratch.py --jobs 2                       # about 50 minutes on a 2-core CPU
    python benchmarks/inherited_vs_scratch.py --jobs 2 --seeds 3 --epochs 8  # about 100 minutes
    python benchmarks/inherited_vs_scratch.py --tiny                         # smoke run, seconds of training
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np


def experiment(tiny: bool, runs_dir: str, seed: int = 0, epochs: float = 16) -> dict:
    """The supernet run: one phase with every choice elastic from the start and the sandwich rule (largest,
    smallest and 4 random subnets per step, gradients summed), BigNAS-style rather than progressive shrinking, and
    no in-place distillation; the first elastic stage at stride 1 (`stage_strides`), so 32 px shapes are 16 x 16
    there instead of 8 x 8.

    Measured on `shapes` with 16 epochs (1,024 steps): with OFA's strides the supernet sat on MobileNetV3's loss
    plateau (about 1.8) for 200-300 steps, and when it left depended on rounding, so one run's gap ranged from -0.8
    to +4.3 points (README, Known limits); with the stride-1 stage it leaves it within about 200 steps (about twice
    the time per step) and every subnet, inherited or alone, ends near 97-99%, too close to rank. With 8 epochs
    (512 steps) they spread over 89-98% and the inherited accuracy rises along the ladder. The largest subnet as a
    teacher (in-place distillation) held the others about 10 points lower at OFA's strides. With 256 steps,
    progressive shrinking (half of them on the full network) left the small subnets 14 to 21 points short."""
    phases = [{"name": "all", "epochs": 0.5 if tiny else epochs, "lr": 0.003, "kernel": [3, 5, 7], "depth": [2, 3, 4],
               "expand": [3, 4, 6]}]
    return {"name": "inherited_vs_scratch", "seed": seed, "runs_dir": runs_dir,
            "space": {"name": "ofa_mbv3", "resolutions": [32], "stage_strides": [1, 2, 2, 1, 2]},
            "data": {"name": "shapes", "resolution": 32, "num_train": 128 if tiny else 4096,
                     "num_val": 64 if tiny else 256, "num_test": 64 if tiny else 20000},
            "supernet": {"width_mult": 0.25 if tiny else 0.35},
            "train": {"batch_size": 16 if tiny else 64, "optimizer": "adamw", "weight_decay": 1e-4,
                      "label_smoothing": 0.1, "warmup_epochs": 0.25, "sandwich": True, "num_random": 4,
                      "distill": False, "bn_calibration_batches": 2 if tiny else 8, "checkpoint_every": 100,
                      "phases": phases}}


def subnet_ladder(space, count: int, seed: int) -> np.ndarray:
    """`count` subnets from the smallest to the largest: level t picks each choice index ~ Binomial(n - 1, t)."""
    rng = np.random.default_rng(seed)
    levels = np.linspace(0.0, 1.0, count)
    return np.stack([rng.binomial(space.sizes - 1, t) for t in levels]).astype(np.int32)


def train_from_scratch(config, data, space, arch, steps: int, num_classes: int, subnet_rows: int):
    """The subnet `arch` alone, trained with the supernet's optimizer and its first phase's warm-up + cosine
    schedule stretched to `steps`; its row is padded to the supernet run's `subnet_rows`, so the supernet's
    compiled training step serves it."""
    import jax.numpy as jnp

    from nas import train
    from nas.phases import Phase
    from supernets.ofa_mbv3 import allowed_choices

    model = train.create_model(config, space, num_classes, data.channels)
    optimizer = train.create_optimizer(model, config.train)
    train.commit_to_device(model, optimizer)
    stream = data.batches("train", config.train.batch_size, seed=config.seed, augment=True)
    schedule = Phase(0, "scratch", 0, steps, config.train.phases[0].lr,
                     min(round(config.train.warmup_epochs * stream.num_batches), steps - 1),
                     allowed_choices(space, config.train.phases[0]), config.train.phases[0])
    resolution = space.resolutions[int(arch[0])]
    for step in range(steps):
        batch = next(stream)
        targets = train.smoothed_targets(batch.labels, num_classes, config.train.label_smoothing)
        train.train_step(model, optimizer, train.resized_images(batch.images, resolution), targets,
                         train.padded_subnets(arch[None], subnet_rows), jnp.float32(schedule.learning_rate(step)),
                         jnp.bool_(False), jnp.int32(1))
    return model


def _config(tiny: bool, runs_dir: str, seed: int, epochs: float):
    from nas.config import config_from_dict

    return config_from_dict(experiment(tiny, runs_dir, seed, epochs), source="inherited_vs_scratch")


def _evaluation(config) -> dict:
    return dict(batch_size=config.train.batch_size, calibration_batches=config.train.bn_calibration_batches,
                seed=config.seed, split="test")


def supernet_job(seed: int, tiny: bool, epochs: float, subnets: int) -> dict:
    """Trains the supernet of `seed`; returns its steps, seconds and each ladder subnet's inherited accuracy."""
    from nas import train

    with tempfile.TemporaryDirectory() as runs_dir:
        config = _config(tiny, runs_dir, seed, epochs)
        started = time.perf_counter()
        summary = train.train_and_evaluate(config)
        supernet_s = time.perf_counter() - started
        model, space, _ = train.load_trained_supernet(summary["run_dir"])
    data = train.load_data(config)
    inherited = [train.evaluate_subnet(model, data, space, arch, **_evaluation(config))
                 for arch in subnet_ladder(space, subnets, seed=1)]
    return {"steps": summary["total_steps"], "supernet_s": supernet_s, "inherited": inherited}


def scratch_job(seed: int, tiny: bool, epochs: float, subnets: int, index: int) -> dict:
    """Trains ladder subnet `index` of `seed` alone for as many steps as the supernet; returns its accuracy."""
    from nas import train
    from nas.phases import build_phases, subnets_per_step
    from supernets.registry import get_supernet

    config = _config(tiny, tempfile.gettempdir(), seed, epochs)
    space, data = config.build_space(), train.load_data(config)
    phases = build_phases(config.train, space, data.batches("train", config.train.batch_size, seed=seed).num_batches,
                          get_supernet("ofa"))
    steps, rows = phases[-1].end, max(subnets_per_step(phase, config.train) for phase in phases)
    arch = subnet_ladder(space, subnets, seed=1)[index]
    started = time.perf_counter()
    model = train_from_scratch(config, data, space, arch, steps, train.num_classes_of(config, data), rows)
    scratch = train.evaluate_subnet(model, data, space, arch, **_evaluation(config))
    return {"index": index, "arch": space.to_string(arch), "scratch": scratch,
            "scratch_s": time.perf_counter() - started}


def _pin_worker(counter) -> None:
    """Pool initializer: worker i runs on CPU i (mod the CPUs this process may use), so two jobs do not share."""
    import os

    with counter.get_lock():
        index, counter.value = counter.value, counter.value + 1
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[index % len(cpus)]})


class SeedResults:
    """What one seed has measured so far: the supernet's figures and the scratch runs, in any order."""

    def __init__(self, seed: int):
        self.seed, self.supernet, self.scratch = seed, None, {}

    def add(self, kind: str, out: dict) -> None:
        if kind == "supernet":
            self.supernet = out
            print(f"seed {self.seed}: supernet {out['steps']} steps in {out['supernet_s']:.0f} s", flush=True)
        else:
            self.scratch[out["index"]] = out
            print(f"seed {self.seed}  {out['arch']}  scratch {out['scratch']:.4f}  ({out['scratch_s']:.0f} s)",
                  flush=True)

    def summary(self) -> dict | None:
        """`summarize` over the subnets with both figures; None before the supernet or any scratch run is done."""
        if self.supernet is None or not self.scratch:
            return None
        rows = [{"arch": s["arch"], "inherited": self.supernet["inherited"][i], "scratch": s["scratch"],
                 "scratch_s": s["scratch_s"]} for i, s in sorted(self.scratch.items())]
        return summarize(rows, seed=self.seed, steps=self.supernet["steps"], supernet_s=self.supernet["supernet_s"])


def measure(seeds: int, *, tiny: bool, epochs: float, subnets: int, jobs: int, report) -> list[dict]:
    """Supernet and scratch runs of seeds 0..seeds-1 in `jobs` processes (1: in this one), seed by seed;
    `report(summaries)` whenever a run finishes. Returns each seed's summary."""
    results = [SeedResults(seed) for seed in range(seeds)]
    tasks = []
    for seed in range(seeds):
        tasks.append((seed, "supernet", supernet_job, (seed, tiny, epochs, subnets)))
        tasks += [(seed, "scratch", scratch_job, (seed, tiny, epochs, subnets, i)) for i in range(subnets)]

    def collect(seed: int, kind: str, out: dict) -> None:
        results[seed].add(kind, out)
        report([summary for summary in (r.summary() for r in results) if summary is not None])

    if jobs == 1:
        for seed, kind, job, args in tasks:
            collect(seed, kind, job(*args))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(jobs, mp_context=context, initializer=_pin_worker,
                                 initargs=(context.Value("i", 0),)) as pool:
            futures = {pool.submit(job, *args): (seed, kind) for seed, kind, job, args in tasks}
            for future in as_completed(futures):
                collect(*futures[future], future.result())
    summaries = [r.summary() for r in results]
    for result in summaries:
        seed = result["seed"]
        for row in result["subnets"]:
            print(f"seed {seed}  {row['arch']}  inherited {row['inherited']:.4f}  scratch {row['scratch']:.4f}")
        print(f"seed {seed}: supernet {result['supernet_steps']} steps in {result['supernet_train_s']:.0f} s; scratch: "
              f"as many steps per subnet; mean gap (scratch - inherited) {result['mean_gap_points']:+.2f} points, "
              f"Kendall tau {result['kendall_tau']:.3f}")
    return summaries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="smoke run: tiny data, width and phases")
    parser.add_argument("--subnets", type=int, default=8, help="subnets from smallest to largest (default 8)")
    parser.add_argument("--seeds", type=int, default=1, help="repeat for seeds 0..N-1 (default 1)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="processes, one CPU each: the supernet and the scratch runs in parallel (default 1)")
    parser.add_argument("--epochs", type=float, default=16,
                        help="epochs over the 4,096 training images, supernet and each scratch run (default 16: "
                             "1,024 steps; 8: 512 steps, less saturated, see README)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.seeds < 1 or args.subnets < 2 or args.jobs < 1 or not args.epochs > 0:
        parser.error(f"--seeds and --jobs must be >= 1, --subnets >= 2 and --epochs > 0, got {args.seeds}, "
                     f"{args.jobs}, {args.subnets} and {args.epochs}")

    def report(summaries: list[dict]) -> None:
        if args.json and summaries:  # after every finished run, so a run cut short keeps what it measured
            with open(args.json, "w") as f:
                json.dump(over_seeds(summaries, tiny=args.tiny, epochs=args.epochs), f, indent=2)

    done = measure(args.seeds, tiny=args.tiny, epochs=args.epochs, subnets=args.subnets, jobs=args.jobs, report=report)
    overall = over_seeds(done, tiny=args.tiny, epochs=args.epochs)
    gaps = ", ".join(f"{r['mean_gap_points']:+.2f}" for r in done)
    taus = ", ".join(f"{r['kendall_tau']:.3f}" for r in done)
    print(f"mean accuracy gap (scratch - inherited) over {len(done)} seed(s): {overall['mean_gap_points']:+.2f} points "
          f"(goal <= 1.5); per seed {gaps}")
    print(f"Kendall tau between rankings, mean over seeds: {overall['kendall_tau']:.3f} (goal >= 0.6); per seed "
          f"{taus}; between the seed-averaged accuracies: {overall['kendall_tau_of_means']:.3f}")


def summarize(rows: list[dict], *, seed: int, steps: int, supernet_s: float) -> dict:
    """Mean gap (scratch - inherited, points) and Kendall tau over one seed's subnets measured so far."""
    inherited = np.array([r["inherited"] for r in rows])
    scratch = np.array([r["scratch"] for r in rows])
    tau = _kendall_tau(inherited, scratch)
    return {"seed": seed, "supernet_steps": steps, "supernet_train_s": round(supernet_s, 1), "subnets_done": len(rows),
            "mean_gap_points": float(100 * (scratch - inherited).mean()), "kendall_tau": tau, "subnets": rows}


def over_seeds(results: list[dict], *, tiny: bool, epochs: float) -> dict:
    """Gap and tau averaged over the seeds' results (a seed cut short counts with the subnets it measured), and
    `kendall_tau_of_means`: tau between the subnets' inherited and scratch accuracies each averaged over the seeds
    (every seed measures the same ladder), which averages out part of a single training run's noise."""
    per_arch: dict[str, list[tuple[float, float]]] = {}
    for result in results:
        for row in result["subnets"]:
            per_arch.setdefault(row["arch"], []).append((row["inherited"], row["scratch"]))
    means = np.array([np.mean(pairs, axis=0) for pairs in per_arch.values()])
    return {"tiny": tiny, "epochs": epochs, "seeds_done": len(results),
            "mean_gap_points": float(np.mean([r["mean_gap_points"] for r in results])),
            "kendall_tau": float(np.mean([r["kendall_tau"] for r in results])),
            "kendall_tau_of_means": _kendall_tau(means[:, 0], means[:, 1]), "seeds": results}


def _kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic) if len(a) > 1 else float("nan")


if __name__ == "__main__":
    main()
