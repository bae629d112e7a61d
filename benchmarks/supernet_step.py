"""Seconds per OFA sandwich step of the MobileNetV3 supernet vs the largest static network, and compile times.

Sandwich = largest + smallest + 2 random subnets, forward and backward each, gradients summed, one SGD-Nesterov
update: one call of the trainer's own `nas.train.train_step` (what `nas train` runs each step, no distillation).
Baselines in the same run: the supernet's largest and smallest subnet alone (the same compiled step, one subnet),
and the extracted largest static network (standard ops: depthwise as grouped convolution) alone. The PyTorch
once-for-all reference on the project's 2-core machine is printed next to ours. Compile times are cold: JAX's
persistent compilation cache is switched off for this script.

    python benchmarks/supernet_step.py --resolutions 32 64 --batch 64
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nas import train
from search_spaces import get_space
from supernets.extract import extract
from supernets.ofa_mbv3 import OFAMobileNetV3

PYTORCH_OFA = {32: {"sandwich": 2.20, "largest": 1.19, "smallest": 0.17},
               64: {"sandwich": 4.13, "largest": 1.72, "smallest": 0.24}}


def _cross_entropy(logits, labels):
    return jnp.mean(-jax.nn.log_softmax(logits)[jnp.arange(labels.shape[0]), labels])


@nnx.jit
def static_step(net, x, y, lr=0.01):
    loss, grads = nnx.value_and_grad(lambda n: _cross_entropy(n(x, train=True), y))(net)
    nnx.update(net, jax.tree.map(lambda p, g: p - lr * g, nnx.state(net, nnx.Param), grads))
    return loss


def _timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _first_call(fn):
    start, cpu = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn())
    return time.perf_counter() - start, time.process_time() - cpu


def bench_resolution(res: int, batch: int, width: float, classes: int, repeats: int, seed: int) -> dict:
    space = get_space("ofa_mbv3", resolutions=(res,))
    model = OFAMobileNetV3(space, width_mult=width, num_classes=classes, rngs=nnx.Rngs(seed))
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((batch, res, res, 3)), jnp.float32)
    y = jnp.asarray(rng.integers(0, classes, batch), jnp.int32)
    optimizer = nnx.Optimizer(model, train._transformation("sgd", 4e-5, 0.9), wrt=nnx.Param)
    train.commit_to_device(model, optimizer)
    hard = train.smoothed_targets(np.asarray(y), classes, 0.1)
    largest, smallest = space.largest(), space.smallest()

    def step(archs):
        return train.train_step(model, optimizer, x, hard, train.padded_subnets(np.stack(archs), 4),
                                jnp.float32(0.01), jnp.bool_(False), jnp.int32(len(archs)))

    def sandwich():
        return step([largest, smallest] + list(space.sample(2, rng)))

    compile_wall, compile_cpu = _first_call(lambda: step([largest]))
    step([largest] * 4)
    out = {"compile_s": compile_wall, "compile_cpu_s": compile_cpu,
           "sandwich": _timed(sandwich, repeats),
           "largest": _timed(lambda: step([largest]), repeats),
           "smallest": _timed(lambda: step([smallest]), repeats)}
    net = extract(model, space.largest())
    out["static_compile_s"], _ = _first_call(lambda: static_step(net, x, y))
    out["static_largest"] = _timed(lambda: static_step(net, x, y), repeats)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_compilation_cache", False)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} (timings are rough when other work shares the machine)")
    for res in args.resolutions:
        r = bench_resolution(res, args.batch, args.width, args.classes, args.repeats, args.seed)
        ref = PYTORCH_OFA.get(res)
        print(f"res {res}: compile (train step, all subnets) {r['compile_s']:.1f} s wall, "
              f"{r['compile_cpu_s']:.1f} s CPU; static largest compile {r['static_compile_s']:.1f} s")
        for key in ("sandwich", "largest", "smallest"):
            line = f"  supernet {key:<9} {r[key]:.3f} s/step"
            if ref:
                line += f"   PyTorch OFA {ref[key]:.2f} s   ratio ours/PyTorch {r[key] / ref[key]:.2f}"
            print(line)
        print(f"  static largest     {r['static_largest']:.3f} s/step   supernet sandwich / static largest "
              f"{r['sandwich'] / r['static_largest']:.2f}   supernet largest / static largest "
              f"{r['largest'] / r['static_largest']:.2f}   (load average now {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
