"""Seconds per OFA sandwich step of the MobileNetV3 supernet vs the largest static network, and compile times.

Sandwich = largest + smallest + 2 random subnets, forward and backward each, gradients summed, one SGD-Nesterov
update: one call of the trainer's own `nas.train.train_step`, cached as `nas train` calls it each step (no
distillation).
Baselines in the same run: the supernet's largest and smallest subnet alone (the same compiled step, one subnet),
and the extracted largest static network (standard ops: depthwise as grouped convolution) alone. Where PyTorch is
installed, the same steps of once-for-all's PyTorch supernet (`benchmarks/ofa_pytorch.py`, a port of its training
path) run in the same process on the same subnets, and the ratios are printed; without it, the issue's fixed
figures from the project's 2-core machine stand in (only comparable on that machine). Compile times are cold: JAX's
persistent compilation cache is switched off for this script.

    pip install -e ".[pytorch-baseline]"   # optional: the same-run PyTorch baseline (torch; a CPU build is enough)
    python benchmarks/supernet_step.py --resolutions 32 64 --batch 64
"""

from __future__ import annotations

import argparse
import importlib.util
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

ISSUE_PYTORCH_OFA = {32: {"sandwich": 2.20, "largest": 1.19, "smallest": 0.17},
                     64: {"sandwich": 4.13, "largest": 1.72, "smallest": 0.24}}


def _cross_entropy(logits, labels):
    return jnp.mean(-jax.nn.log_softmax(logits)[jnp.arange(labels.shape[0]), labels])


@nnx.jit
def static_step(net, x, y, lr=0.01):
    loss, grads = nnx.value_and_grad(lambda n: _cross_entropy(n(x, train=True), y))(net)
    nnx.update(net, jax.tree.map(lambda p, g: p - lr * g, nnx.state(net, nnx.Param), grads))
    return loss


def _timed(fn, repeats):
    """Median seconds of fn(i) over i = 0 .. repeats - 1."""
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(i))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _first_call(fn):
    start, cpu = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn())
    return time.perf_counter() - start, time.process_time() - cpu


def sandwiches(space, repeats: int, seed: int) -> list[list[np.ndarray]]:
    """`repeats` sandwiches [largest, smallest, random, random], the same for every framework."""
    rng = np.random.default_rng(seed)
    return [[space.largest(), space.smallest()] + list(space.sample(2, rng)) for _ in range(repeats)]


def bench_resolution(space, batch: int, width: float, classes: int, steps: list, seed: int) -> dict:
    (res,) = space.resolutions
    model = OFAMobileNetV3(space, width_mult=width, num_classes=classes, rngs=nnx.Rngs(seed))
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((batch, res, res, 3)), jnp.float32)
    y = jnp.asarray(rng.integers(0, classes, batch), jnp.int32)
    optimizer = nnx.Optimizer(model, train._transformation("sgd", 4e-5, 0.9), wrt=nnx.Param)
    train.commit_to_device(model, optimizer)
    hard = train.smoothed_targets(np.asarray(y), classes, 0.1)
    largest, smallest = space.largest(), space.smallest()
    repeats = len(steps)

    step_fn = nnx.cached_partial(train.train_step, model, optimizer)

    def step(archs):
        return step_fn(x, hard, train.padded_subnets(np.stack(archs), 4), jnp.float32(0.01), jnp.bool_(False),
                       jnp.int32(len(archs)))

    compile_wall, compile_cpu = _first_call(lambda: step([largest]))
    step(steps[0])
    out = {"compile_s": compile_wall, "compile_cpu_s": compile_cpu,
           "sandwich": _timed(lambda i: step(steps[i]), repeats),
           "largest": _timed(lambda i: step([largest]), repeats),
           "smallest": _timed(lambda i: step([smallest]), repeats)}
    net = extract(model, space.largest())
    out["static_compile_s"], _ = _first_call(lambda: static_step(net, x, y))
    out["static_largest"] = _timed(lambda i: static_step(net, x, y), repeats)
    return out


def bench_pytorch(space, batch: int, width: float, classes: int, steps: list, seed: int) -> dict:
    """The same steps of once-for-all's PyTorch supernet (see benchmarks/ofa_pytorch.py), each kind timed after one
    warm-up step."""
    from ofa_pytorch import ofa_setting, stepper  # beside this script

    (res,) = space.resolutions
    step = stepper(res, batch, width, classes, seed)
    settings = [[ofa_setting(space, arch) for arch in sandwich] for sandwich in steps]
    largest, smallest = settings[0][:2]
    kinds = {"sandwich": lambda i: step(settings[i]), "largest": lambda i: step([largest]),
             "smallest": lambda i: step([smallest])}
    out = {}
    for kind, fn in kinds.items():
        fn(0)
        out[kind] = _timed(fn, len(steps))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-pytorch", action="store_true", help="skip the PyTorch baseline even if installed")
    args = parser.parse_args(argv)
    with_pytorch = not args.no_pytorch and importlib.util.find_spec("torch") is not None
    jax.config.update("jax_enable_compilation_cache", False)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} (timings are rough when other work shares the machine)")
    if not with_pytorch:
        print("PyTorch not installed (or --no-pytorch): comparing with the issue's fixed PyTorch OFA figures from the "
              "project's 2-core machine, which only hold on that machine")
    for res in args.resolutions:
        space = get_space("ofa_mbv3", resolutions=(res,))
        steps = sandwiches(space, args.repeats, args.seed)
        r = bench_resolution(space, args.batch, args.width, args.classes, steps, args.seed)
        if with_pytorch:
            ref = bench_pytorch(space, args.batch, args.width, args.classes, steps, args.seed)
            ref_name = "PyTorch OFA (same run)"
        else:
            ref, ref_name = ISSUE_PYTORCH_OFA.get(res), "PyTorch OFA (issue's figure)"
        print(f"res {res}: compile (train step, all subnets) {r['compile_s']:.1f} s wall, "
              f"{r['compile_cpu_s']:.1f} s CPU; static largest compile {r['static_compile_s']:.1f} s")
        for key in ("sandwich", "largest", "smallest"):
            line = f"  supernet {key:<9} {r[key]:.3f} s/step"
            if ref:
                line += f"   {ref_name} {ref[key]:.3f} s   ratio ours/PyTorch {r[key] / ref[key]:.2f}"
            print(line)
        print(f"  static largest     {r['static_largest']:.3f} s/step   supernet sandwich / static largest "
              f"{r['sandwich'] / r['static_largest']:.2f}   supernet largest / static largest "
              f"{r['largest'] / r['static_largest']:.2f}   (load average now {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
