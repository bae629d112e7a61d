"""Does the SPOS supernet rank nb201 cells as training them alone does? One-shot and few-shot, several seeds.

For each seed: the one-shot supernet (uniform single paths) and the few-shot one (the same, split on
`--split-edge` after `--split-at` of the steps, Zhao et al. 2021) are trained by `nas.train`; then each of
`--num-cells` cells spread over the latency range (quantiles of the Pixel 7 roofline model, cells that pass input to
output) is trained alone for as many steps, with the same optimizer and schedule (the supernet restricted to the cell
is exactly the standalone network: untaken operations get no update). Accuracies are on the test split after BN
calibration. Printed: per cell the seed-averaged inherited and standalone accuracy; Kendall tau (scipy) between
the seed-averaged rankings and the mean gap, one-shot and few-shot. Threads: XLA's default (all cores).

    python benchmarks/spos_ranking.py                         # C=8, 2 cells, 32 px shapes, 15 cells, 2 seeds
    python benchmarks/spos_ranking.py --tiny                  # smoke run in a few minutes
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from scipy.stats import kendalltau


def experiment(args, seed: int, runs_dir: str, few_shot: bool) -> dict:
    steps_per_epoch = args.num_train // args.batch
    epochs = args.steps / steps_per_epoch
    split_epochs = epochs * args.split_at
    phases = ([{"name": "one-shot", "epochs": split_epochs, "lr": args.lr},
               {"name": "few-shot", "epochs": epochs - split_epochs, "lr": args.lr, "split": True}]
              if few_shot else [{"name": "one-shot", "epochs": epochs, "lr": args.lr}])
    supernet = {"family": "spos", "channels": args.channels, "cells": args.cells}
    if few_shot:
        supernet["split_decision"] = args.split_edge
    return {"name": f"spos_ranking_{'few' if few_shot else 'one'}_{seed}", "seed": seed, "runs_dir": runs_dir,
            "space": {"name": "nb201"},
            "data": {"name": "shapes", "resolution": args.resolution, "num_train": args.num_train,
                     "num_val": 64, "num_test": args.num_test},
            "supernet": supernet,
            "train": {"batch_size": args.batch, "optimizer": "sgd", "momentum": 0.9, "weight_decay": 5e-4,
                      "label_smoothing": 0.1, "warmup_epochs": 0.25, "sandwich": False, "distill": False,
                      "num_random": 1, "bn_calibration_batches": 4, "checkpoint_every": 10_000,
                      "phases": phases}}


def spread_cells(space, count: int, layer_options: dict) -> np.ndarray:
    """`count` distinct canonical cells at evenly spaced quantiles of the Pixel 7 roofline latency, each with a
    path from input to output."""
    from latency_models import build_cost_model

    cells = np.unique(space.canonical(space.enumerate()), axis=0)
    cells = cells[space.active(cells).any(axis=1)]
    model = build_cost_model(space, "pixel-7", "roofline", layer_options=layer_options)
    latency = model.predict(cells)["latency_ms"]
    order = np.argsort(latency, kind="stable")
    picks = np.unique(np.round(np.linspace(0, len(order) - 1, count)).astype(int))
    return cells[order[picks]]


def evaluation(config) -> dict:
    return dict(batch_size=config.train.batch_size, calibration_batches=config.train.bn_calibration_batches,
                seed=config.seed, split="test")


def train_alone(config, data, space, cell, steps: int):
    """The cell alone: the supernet trained on this one cell with the one-shot schedule stretched to `steps`."""
    import jax.numpy as jnp

    from nas import train
    from nas.phases import build_phases
    from supernets.registry import family_for

    model = train.create_model(config, space, data.num_classes, data.channels)
    optimizer = train.create_optimizer(model, config.train)
    train.commit_to_device(model, optimizer)
    stream = data.batches("train", config.train.batch_size, seed=config.seed, augment=True)
    (phase,) = build_phases(config.train, space, stream.num_batches, family_for(config))
    for step in range(steps):
        batch = next(stream)
        targets = train.smoothed_targets(batch.labels, data.num_classes, config.train.label_smoothing)
        train.train_step(model, optimizer, jnp.asarray(batch.images), targets, jnp.asarray(cell[None], jnp.int32),
                         jnp.float32(phase.learning_rate(step)), jnp.bool_(False), jnp.int32(1))
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="C=4, 1 cell, 16 px, 64 steps, 6 cells, 1 seed")
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--cells", type=int, default=2)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--num-train", type=int, default=4096)
    parser.add_argument("--num-test", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=768)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--num-cells", type=int, default=15)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--split-edge", default="edge_3_0")
    parser.add_argument("--split-at", type=float, default=0.5, help="fraction of the steps before the split")
    args = parser.parse_args()
    if args.tiny:
        args.channels, args.cells, args.resolution, args.num_train, args.num_test = 4, 1, 16, 512, 256
        args.steps, args.num_cells, args.seeds = 64, 6, 1

    from nas import train
    from nas.config import config_from_dict
    from supernets.registry import family_for

    started = time.perf_counter()
    inherited = {"one-shot": [], "few-shot": []}
    alone = []
    with tempfile.TemporaryDirectory() as runs_dir:
        for seed in range(args.seeds):
            for kind, few in (("one-shot", False), ("few-shot", True)):
                config = config_from_dict(experiment(args, seed, runs_dir, few), source="spos_ranking")
                if not few:
                    one_shot = config
                summary = train.train_and_evaluate(config, progress=False)
                model, space, _ = train.load_trained_supernet(summary["run_dir"])
                data = train.load_data(config)
                cells = spread_cells(space, args.num_cells,
                                     family_for(config).layer_options(config, data.num_classes))
                inherited[kind].append([train.evaluate_subnet(model, data, space, c, **evaluation(config))
                                        for c in cells])
                print(f"seed {seed} {kind}: {summary['total_steps']} steps, inherited "
                      f"{np.round(inherited[kind][-1], 3).tolist()}", flush=True)
            steps = summary["total_steps"]
            alone.append([train.evaluate_subnet(train_alone(one_shot, data, space, c, steps), data, space, c,
                                                **evaluation(one_shot)) for c in cells])
            print(f"seed {seed} alone: {np.round(alone[-1], 3).tolist()}", flush=True)
    standalone = np.mean(alone, axis=0)
    print(f"\nnb201 C={args.channels} cells={args.cells} {args.resolution} px shapes, {steps} steps, "
          f"{len(cells)} cells, {args.seeds} seeds ({time.perf_counter() - started:.0f} s)")
    print(f"{'cell':75s} {'alone':>6s} {'one-shot':>9s} {'few-shot':>9s}")
    means = {kind: np.mean(values, axis=0) for kind, values in inherited.items()}
    for i, cell in enumerate(cells):
        print(f"{space.to_string(cell):75s} {standalone[i]:6.3f} {means['one-shot'][i]:9.3f} "
              f"{means['few-shot'][i]:9.3f}")
    for kind, mean in means.items():
        tau = kendalltau(mean, standalone).statistic
        print(f"{kind}: Kendall tau {tau:.3f} (goal >= 0.6), mean gap alone - inherited "
              f"{float(np.mean(standalone - mean)):+.3f}")


if __name__ == "__main__":
    main()
