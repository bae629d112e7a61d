"""Times supernets.depthwise.depthwise_conv against the lax grouped convolution, forward and forward+backward.

Run: python benchmarks/depthwise_conv.py [--batch 64] [--repeats 5] [--clock wall|cpu] [--only 0,3]
Each row is one OFA-MobileNetV3 depthwise layer (H x W x C, kernel k, stride s); the columns are median times
in ms over the repeats (after one warm-up call that also compiles) and the speed-up lax / ours.
Forward + backward returns the output with (dx, dkernel) for a given cotangent, as a layer inside a network
does; the output is not summed in the same program, because XLA fuses a single reduction consumer into the
shifted-product fusion and runs it as slow scalar code (a network's BatchNorm has several consumers and is fine).
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from supernets.depthwise import depthwise_conv, depthwise_conv_reference

LAYERS = [  # (H, W, C, k, stride) of depthwise layers of OFA-MobileNetV3 at resolutions 128..224
    (16, 16, 144, 7, 1),
    (32, 32, 72, 5, 2),
    (8, 8, 480, 3, 1),
    (4, 4, 960, 7, 1),
    (64, 64, 16, 3, 1),
    (64, 64, 96, 7, 2),
    (32, 32, 144, 5, 1),
    (16, 16, 240, 3, 2),
    (16, 16, 240, 5, 1),
    (8, 8, 672, 7, 2),
    (7, 7, 960, 5, 1),
]


def _median_ms(fn, args, repeats, clock):
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = clock()
        jax.block_until_ready(fn(*args))
        times.append(clock() - start)
    return 1e3 * statistics.median(times)


def _programs(conv, stride):
    """Forward, and forward + backward: the output and the pullback of a given cotangent to (dx, dkernel)."""
    forward = jax.jit(lambda x, k, cotangent: conv(x, k, stride))

    def forward_backward(x, k, cotangent):
        y, pullback = jax.vjp(lambda u, v: conv(u, v, stride), x, k)
        return y, pullback(cotangent)

    return forward, jax.jit(forward_backward)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="cpu: process time, steadier on a shared machine")
    parser.add_argument("--only", default="", help="comma-separated row indices of LAYERS to run")
    args = parser.parse_args(argv)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    rows = [LAYERS[int(i)] for i in args.only.split(",")] if args.only else LAYERS
    rng = np.random.default_rng(0)
    print(f"batch {args.batch}, float32, median of {args.repeats} ({args.clock} clock), ms; ratio = lax / ours")
    print(f"{'layer':<22}{'fwd ours':>10}{'fwd lax':>10}{'ratio':>7}{'f+b ours':>11}{'f+b lax':>10}{'ratio':>7}")
    totals = np.zeros(4)
    for h, w, c, k, stride in rows:
        x = jnp.asarray(rng.standard_normal((args.batch, h, w, c)), jnp.float32)
        kernel = jnp.asarray(rng.standard_normal((k, k, c)), jnp.float32)
        cotangent = jnp.asarray(rng.standard_normal((args.batch, -(-h // stride), -(-w // stride), c)), jnp.float32)
        ours = _programs(depthwise_conv, stride)
        lax_ = _programs(depthwise_conv_reference, stride)
        times = [_median_ms(p, (x, kernel, cotangent), args.repeats, clock) for p in (ours[0], lax_[0], ours[1], lax_[1])]
        totals += times
        name = f"{h}x{w}x{c} k{k} s{stride}"
        print(f"{name:<22}{times[0]:>10.2f}{times[1]:>10.2f}{times[1] / times[0]:>7.1f}"
              f"{times[2]:>11.2f}{times[3]:>10.2f}{times[3] / times[2]:>7.1f}", flush=True)
    print(f"{'total':<22}{totals[0]:>10.2f}{totals[1]:>10.2f}{totals[1] / totals[0]:>7.1f}"
          f"{totals[2]:>11.2f}{totals[3]:>10.2f}{totals[3] / totals[2]:>7.1f}")


if __name__ == "__main__":
    main()
