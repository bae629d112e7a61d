"""The static NAS-Bench-201 network of one cell (what gets exported and profiled), with its JSON config."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from search_spaces.nb201 import EDGES, NUM_NODES, OPS

BN_EPS = 1e-5
NUM_STAGES = 3


class ReLUConvBN(nnx.Module):
    """NAS-Bench-201's nor_conv: ReLU, k x k convolution (no bias, padding k//2), batch norm."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, *, rngs: nnx.Rngs):
        p = kernel // 2
        self.conv = nnx.Conv(cin, cout, (kernel, kernel), strides=stride, padding=((p, p), (p, p)), use_bias=False,
                             rngs=rngs)
        self.bn = nnx.BatchNorm(cout, use_running_average=True, epsilon=BN_EPS, rngs=rngs)

    def __call__(self, x):
        return self.bn(self.conv(jax.nn.relu(x)))


def pool_counts(h: int, w: int) -> np.ndarray:
    """(1, h, w, 1) float32: how many cells of each 3x3 window (stride 1, padding 1) lie inside the image."""
    rows = np.minimum(np.arange(h) + 1, h - 1) - np.maximum(np.arange(h) - 1, 0) + 1
    cols = np.minimum(np.arange(w) + 1, w - 1) - np.maximum(np.arange(w) - 1, 0) + 1
    return (rows[:, None] * cols[None, :]).astype(np.float32)[None, :, :, None]


def avg_pool_3x3(x):
    """3x3 average pool, stride 1, padding 1, padded cells not counted (NAS-Bench-201's count_include_pad=False):
    the window sums of the zero-padded input over a constant count, so the exported graph has one meaning (ONNX
    AveragePool's own padding rule is not involved)."""
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    total = nnx.avg_pool(padded, window_shape=(3, 3), strides=(1, 1), padding="VALID") * 9.0
    return total / pool_counts(x.shape[1], x.shape[2])


def avg_pool_2x2(x):
    return nnx.avg_pool(x, window_shape=(2, 2), strides=(2, 2))


class ResBlock(nnx.Module):
    """NAS-Bench-201's reduction block: ReLUConvBN 3x3 s2, ReLUConvBN 3x3, shortcut 2x2 avg pool + 1x1 conv."""

    def __init__(self, cin: int, cout: int, *, rngs: nnx.Rngs):
        self.conv_a = ReLUConvBN(cin, cout, 3, 2, rngs=rngs)
        self.conv_b = ReLUConvBN(cout, cout, 3, 1, rngs=rngs)
        self.shortcut = nnx.Conv(cin, cout, (1, 1), use_bias=False, rngs=rngs)

    def __call__(self, x):
        return self.conv_b(self.conv_a(x)) + self.shortcut(avg_pool_2x2(x))


class Cell(nnx.Module):
    """One cell: node i is the sum over edges (i, j) of op(node j); only the `ops` given hold layers ('none'
    edges are absent: give the cell with unreachable edges set to 'none' and nothing is computed for them)."""

    def __init__(self, ops: list[str], channels: int, *, rngs: nnx.Rngs):
        self.ops = list(ops)
        kernels = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}
        self.convs = nnx.Dict({f"edge_{to}_{src}": ReLUConvBN(channels, channels, kernels[op], rngs=rngs)
                               for (to, src), op in zip(EDGES, ops) if op in kernels})

    def _edge(self, j: int, x):
        op, (to, src) = self.ops[j], EDGES[j]
        if op == "skip_connect":
            return x
        if op == "avg_pool_3x3":
            return avg_pool_3x3(x)
        return self.convs[f"edge_{to}_{src}"](x)

    def __call__(self, x):
        nodes = [x]
        for target in range(1, NUM_NODES):
            terms = [self._edge(j, nodes[src]) for j, (to, src) in enumerate(EDGES)
                     if to == target and self.ops[j] != "none" and nodes[src] is not None]
            nodes.append(sum(terms[1:], terms[0]) if terms else None)
        out = nodes[-1]
        return jnp.zeros_like(x) if out is None else out


class StaticNB201(nnx.Module):
    """3x3 stem conv + BN, three stages of `cells` cells (channels C, 2C, 4C) joined by residual reduction blocks,
    BN + ReLU, global average pool, linear classifier. `model(x)` takes NHWC images normalised as in training."""

    def __init__(self, config: dict, *, rngs: nnx.Rngs):
        unknown = [op for op in config["ops"] if op not in OPS]
        if len(config["ops"]) != len(EDGES) or unknown:
            raise ValueError(f"StaticNB201: ops must be {len(EDGES)} of {list(OPS)}, got {config['ops']}")
        self.config = {k: config[k] for k in ("in_channels", "channels", "cells", "num_classes", "ops")}
        c = config["channels"]
        self.stem = nnx.Conv(config["in_channels"], c, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, rngs=rngs)
        self.stem_bn = nnx.BatchNorm(c, use_running_average=True, epsilon=BN_EPS, rngs=rngs)
        stages, reductions = [], []
        for stage in range(NUM_STAGES):
            width = c * 2 ** stage
            stages.append(nnx.List([Cell(config["ops"], width, rngs=rngs) for _ in range(config["cells"])]))
            if stage < NUM_STAGES - 1:
                reductions.append(ResBlock(width, 2 * width, rngs=rngs))
        self.stages, self.reductions = nnx.List(stages), nnx.List(reductions)
        last = c * 2 ** (NUM_STAGES - 1)
        self.last_bn = nnx.BatchNorm(last, use_running_average=True, epsilon=BN_EPS, rngs=rngs)
        self.classifier = nnx.Linear(last, config["num_classes"], rngs=rngs)

    @classmethod
    def from_config(cls, config: dict, *, rngs: nnx.Rngs) -> "StaticNB201":
        return cls(config, rngs=rngs)

    def to_config(self) -> dict:
        return {"name": "StaticNB201", **self.config, "ops": list(self.config["ops"])}

    def __call__(self, x, train: bool = False):
        h = self.stem_bn(self.stem(x))
        for stage, cells in enumerate(self.stages):
            for cell in cells:
                h = cell(h)
            if stage < len(self.reductions):
                h = self.reductions[stage](h)
        h = jax.nn.relu(self.last_bn(h))
        return self.classifier(jnp.mean(h, axis=(1, 2)))
