"""Seconds per SPOS training step of the nb201 supernet vs the static network of the same cell, over random cells.

The supernet step is the trainer's own `nas.train.train_step` (one path, SGD with momentum and decay, masked
updates), compiled once for all cells. The baseline is the extracted `StaticNB201` of each cell (only its active
edges, XLA's convolutions, batch norm in training mode) with the same loss and optimizer, compiled per cell
(compile time excluded). Both run in this process on the same batch; the ratio is printed per cell and as the
median. Threads: XLA's default (all cores of this machine).

    python benchmarks/spos_step.py --channels 8 --cells 2 --batch 64 --num-cells 12
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nas import train
from nas.config import TrainConfig
from search_spaces import get_space
from supernets.nb201_spos import NB201Supernet, extract
from supernets.registry import soft_cross_entropy


def timed(fn, repeats: int) -> float:
    jax.block_until_ready(fn())
    started = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(fn())
    return (time.perf_counter() - started) / repeats


@nnx.jit
def static_step(net, optimizer, images, targets):
    def loss_fn(net):
        return soft_cross_entropy(net(images), targets)

    loss, grads = nnx.value_and_grad(loss_fn)(net)
    optimizer.update(net, grads)
    return loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--cells", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--num-cells", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    space = get_space("nb201")
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.random((args.batch, args.resolution, args.resolution, 3)), jnp.float32)
    targets = train.smoothed_targets(rng.integers(0, 10, args.batch), 10, 0.1)
    supernet = NB201Supernet(space, channels=args.channels, cells=args.cells, num_classes=10, rngs=nnx.Rngs(0))
    settings = TrainConfig(optimizer="sgd", momentum=0.9, weight_decay=5e-4)
    optimizer = train.create_optimizer(supernet, settings)
    train.commit_to_device(supernet, optimizer)
    print(f"nb201 C={args.channels} cells={args.cells} batch {args.batch} at {args.resolution} px; "
          f"{jax.default_backend()} with {os.cpu_count()} cores (XLA's default threads)")
    ratios = []
    for cell in space.sample(args.num_cells, rng=1):
        step = lambda: train.train_step(supernet, optimizer, images, targets, jnp.asarray(cell[None], jnp.int32),
                                        jnp.float32(0.01), jnp.bool_(False), jnp.int32(1))
        ours = timed(step, args.repeats)
        static = nnx.view(extract(supernet, cell), use_running_average=False, raise_if_not_found=False)
        static_optimizer = nnx.Optimizer(static, optax.chain(optax.add_decayed_weights(5e-4),
                                                             optax.sgd(0.01, momentum=0.9, nesterov=True)),
                                         wrt=nnx.Param)
        theirs = timed(lambda: static_step(static, static_optimizer, images, targets), args.repeats)
        ratios.append(ours / theirs)
        print(f"{space.to_string(cell):75s} supernet {ours * 1e3:7.1f} ms  static {theirs * 1e3:7.1f} ms  "
              f"ratio {ours / theirs:.2f}")
    print(f"median ratio supernet / static over {len(ratios)} cells: {statistics.median(ratios):.2f} "
          f"(goal <= 1.3); supernet compilations: {train.TRACES['train_step']}")


if __name__ == "__main__":
    main()
