"""Inherited supernet weights vs training from scratch: accuracy gap and ranking agreement on `shapes`.

Trains the supernet once (`nas.train`, the config of `experiment`), then for subnets from the smallest to the largest
measures test accuracy (a) with inherited weights after BN calibration and (b) after training the same subnet from
scratch with the same optimizer for as many steps as the whole supernet training. Prints the table, the mean gap
(goal: inherited within 1.5 points of scratch) and Kendall's tau between the two rankings (goal: >= 0.6).

One run's figures depend on when its supernet leaves MobileNetV3's loss plateau, which rounding alone moves (README,
Known limits); `--seeds N` repeats everything (data, initialisations, subnet draws) for seeds 0..N-1 and also prints
the gap and tau averaged over the seeds.

    python benchmarks/inherited_vs_scratch.py            # about an hour on a 2-core laptop CPU
    python benchmarks/inherited_vs_scratch.py --seeds 3  # three times as long
    python benchmarks/inherited_vs_scratch.py --tiny     # smoke run, seconds of training
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np


def experiment(tiny: bool, runs_dir: str, seed: int = 0) -> dict:
    """The supernet run: one phase with every choice elastic from the start and the sandwich rule (largest,
    smallest and 4 random subnets per step, gradients summed), BigNAS-style rather than progressive shrinking, and
    no in-place distillation. Measured on `shapes` with these 1,024 steps: the largest subnet (about 87%) is no better
    than what the others reach from the labels, so as a teacher it held them about 10 points lower. With 3 random
    subnets instead of 4 one run left the loss plateau later and its subnets ended 4.9 points lower on average, but
    runs of one config differ by as much (rounding moves the step where the plateau ends; README, Known limits).
    With 256 steps, progressive shrinking (half of them on the full network) left the small subnets 14 to 21
    points short."""
    phases = [{"name": "all", "epochs": 0.5 if tiny else 16, "lr": 0.003, "kernel": [3, 5, 7], "depth": [2, 3, 4],
               "expand": [3, 4, 6]}]
    return {"name": "inherited_vs_scratch", "seed": seed, "runs_dir": runs_dir,
            "space": {"name": "ofa_mbv3", "resolutions": [32]},  # one resolution: one train-step compile
            "data": {"name": "shapes", "resolution": 32, "num_train": 128 if tiny else 4096,
                     "num_val": 64 if tiny else 256, "num_test": 64 if tiny else 2000},
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
    from nas.phases import Phase, allowed_choices

    model = train.create_model(config, space, num_classes, data.channels)
    optimizer = train.create_optimizer(model, config.train)
    train.commit_to_device(model, optimizer)
    stream = data.batches("train", config.train.batch_size, seed=config.seed, augment=True)
    schedule = Phase(0, "scratch", 0, steps, config.train.phases[0].lr,
                     min(round(config.train.warmup_epochs * stream.num_batches), steps - 1),
                     allowed_choices(space, config.train.phases[0]), False)
    resolution = space.resolutions[int(arch[0])]
    for step in range(steps):
        batch = next(stream)
        targets = train.smoothed_targets(batch.labels, num_classes, config.train.label_smoothing)
        train.train_step(model, optimizer, train.resized_images(batch.images, resolution), targets,
                         train.padded_subnets(arch[None], subnet_rows), jnp.float32(schedule.learning_rate(step)),
                         jnp.bool_(False), jnp.int32(1))
    return model


def measure_seed(seed: int, *, tiny: bool, subnets: int, report) -> dict:
    """Supernet and scratch runs of one seed; `report(summary)` after every subnet with what is measured so far."""
    from nas import train
    from nas.config import config_from_dict

    with tempfile.TemporaryDirectory() as runs_dir:
        config = config_from_dict(experiment(tiny, runs_dir, seed), source="inherited_vs_scratch")
        started = time.perf_counter()
        summary = train.train_and_evaluate(config)
        supernet_s = time.perf_counter() - started
        model, space, _ = train.load_trained_supernet(summary["run_dir"])
    data = train.load_data(config)
    num_classes = train.num_classes_of(config, data)
    steps = summary["total_steps"]
    evaluation = dict(batch_size=config.train.batch_size, calibration_batches=config.train.bn_calibration_batches,
                      seed=config.seed, split="test")
    rows = []
    for arch in subnet_ladder(space, subnets, seed=1):
        inherited = train.evaluate_subnet(model, data, space, arch, **evaluation)
        started = time.perf_counter()
        scratch_model = train_from_scratch(config, data, space, arch, steps, num_classes,
                                           summary["max_subnets_per_step"])
        scratch = train.evaluate_subnet(scratch_model, data, space, arch, **evaluation)
        rows.append({"arch": space.to_string(arch), "inherited": inherited, "scratch": scratch,
                     "scratch_s": time.perf_counter() - started})
        print(f"seed {seed}  {rows[-1]['arch']}  inherited {inherited:.4f}  scratch {scratch:.4f}", flush=True)
        result = summarize(rows, seed=seed, steps=steps, supernet_s=supernet_s)
        report(result)
    print(f"seed {seed}: supernet {steps} steps in {supernet_s:.0f} s; scratch: {steps} steps per subnet; mean gap "
          f"(scratch - inherited) {result['mean_gap_points']:+.2f} points, Kendall tau {result['kendall_tau']:.3f}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="smoke run: tiny data, width and phases")
    parser.add_argument("--subnets", type=int, default=8, help="subnets from smallest to largest (default 8)")
    parser.add_argument("--seeds", type=int, default=1, help="repeat for seeds 0..N-1 (default 1)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.seeds < 1 or args.subnets < 2:
        parser.error(f"--seeds must be >= 1 and --subnets >= 2, got {args.seeds} and {args.subnets}")

    done: list[dict] = []

    def report(partial: dict) -> None:
        if args.json:  # after every subnet, so a run cut short keeps what it measured
            with open(args.json, "w") as f:
                json.dump(over_seeds(done + [partial], tiny=args.tiny), f, indent=2)

    for seed in range(args.seeds):
        done.append(measure_seed(seed, tiny=args.tiny, subnets=args.subnets, report=report))
    overall = over_seeds(done, tiny=args.tiny)
    gaps = ", ".join(f"{r['mean_gap_points']:+.2f}" for r in done)
    taus = ", ".join(f"{r['kendall_tau']:.3f}" for r in done)
    print(f"mean accuracy gap (scratch - inherited) over {len(done)} seed(s): {overall['mean_gap_points']:+.2f} points "
          f"(goal <= 1.5); per seed {gaps}")
    print(f"Kendall tau between rankings, mean over seeds: {overall['kendall_tau']:.3f} (goal >= 0.6); per seed {taus}")


def summarize(rows: list[dict], *, seed: int, steps: int, supernet_s: float) -> dict:
    """Mean gap (scratch - inherited, points) and Kendall tau over one seed's subnets measured so far."""
    from scipy.stats import kendalltau

    inherited = np.array([r["inherited"] for r in rows])
    scratch = np.array([r["scratch"] for r in rows])
    tau = float(kendalltau(inherited, scratch).statistic) if len(rows) > 1 else float("nan")
    return {"seed": seed, "supernet_steps": steps, "supernet_train_s": round(supernet_s, 1), "subnets_done": len(rows),
            "mean_gap_points": float(100 * (scratch - inherited).mean()), "kendall_tau": tau, "subnets": rows}


def over_seeds(results: list[dict], *, tiny: bool) -> dict:
    """Gap and tau averaged over the seeds' results (a seed cut short counts with the subnets it measured)."""
    return {"tiny": tiny, "seeds_done": len(results),
            "mean_gap_points": float(np.mean([r["mean_gap_points"] for r in results])),
            "kendall_tau": float(np.mean([r["kendall_tau"] for r in results])), "seeds": results}


if __name__ == "__main__":
    main()
