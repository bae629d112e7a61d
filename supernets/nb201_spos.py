"""The single-path one-shot (SPOS) supernet of the NAS-Bench-201 space, its few-shot split and extraction.

Every edge of every cell holds the weights of all five operations; the cell is the traced `arch` array (the six
edge choices), so one compilation serves all 15,625 cells. An edge runs only its operation (`lax.switch`), and
edges that do not reach the output run nothing. Batch norms have no affine parameters (as in SPOS), and their
running statistics are kept per operation; recalibrate them (`supernets.bn_calibration`) before evaluating a cell.

Few-shot NAS (Zhao et al. 2021): with `split_decision`, the supernet holds one copy of all its weights per choice
of that decision. Until `split()` every cell trains copy 0; after it, copy k serves the cells whose split edge takes
operation k, each copy starting from the weights trained so far.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from search_spaces.errors import UserInputError
from search_spaces.nb201 import EDGES, NONE, NUM_NODES, OPS
from supernets.nb201_static import BN_EPS, NUM_STAGES, StaticNB201, pool_counts
from supernets.pointwise import conv_forward_grads, xla_conv
from supernets.extract import assert_all_set
from supernets.extract import set_variable
from supernets.registry import SupernetFamily

BN_MOMENTUM = 0.9
MODES = ("train", "eval", "calibrate")
CONV_1X1, CONV_3X3 = OPS.index("nor_conv_1x1"), OPS.index("nor_conv_3x3")


class SplitFlag(nnx.Variable):
    """1 once the few-shot supernet is split (model state, so it is checkpointed and traced, never a constant)."""


def effective_ops(arch):
    """(6,) int32: each edge's operation, 'none' where the edge does not carry input to the output (traced)."""
    live = arch != NONE
    reach_in = [jnp.bool_(True)] + [jnp.bool_(False)] * (NUM_NODES - 1)
    for j, (to, src) in enumerate(EDGES):
        reach_in[to] = reach_in[to] | (reach_in[src] & live[j])
    reach_out = [jnp.bool_(False)] * (NUM_NODES - 1) + [jnp.bool_(True)]
    for j in reversed(range(len(EDGES))):
        to, src = EDGES[j]
        reach_out[src] = reach_out[src] | (reach_out[to] & live[j])
    active = jnp.stack([live[j] & reach_in[src] & reach_out[to] for j, (to, src) in enumerate(EDGES)])
    return jnp.where(active, arch, NONE).astype(jnp.int32)


def _conv(x, kernel, stride: int = 1):
    """XLA's convolution; on CPU, stride-1 convolutions take gradients written as forward convolutions
    (`conv_forward_grads`), which XLA's CPU backend runs far faster inside the `lax.switch` of an edge."""
    if stride == 1 and jax.default_backend() == "cpu":
        return conv_forward_grads(x, kernel)
    return xla_conv(x, kernel, stride)


def _avg_pool_3x3(x):
    window, strides, pad = (1, 3, 3, 1), (1, 1, 1, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
    return jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pad) / pool_counts(x.shape[1], x.shape[2])


def _batch_norm(z, running, mode: str):
    """Non-affine BN: batch statistics in 'train'/'calibrate' (returned), running ones (`running` = (mean, var))
    in 'eval'."""
    if mode == "eval":
        mean, var = running
        return (z - mean) * jax.lax.rsqrt(var + BN_EPS), None
    mean = jnp.mean(z, axis=(0, 1, 2))
    var = jnp.mean(jnp.square(z - mean), axis=(0, 1, 2))
    return (z - mean) * jax.lax.rsqrt(var + BN_EPS), (mean, var)


def _relu_conv_bn(x, kernel, running, mode, stride: int = 1):
    return _batch_norm(_conv(jax.nn.relu(x), kernel, stride), running, mode)


def _edge_forward(op, x, kernel_1x1, kernel_3x3, running=None, mode: str = "train"):
    """(y, (mean, var), z) of operation `op` (traced) on an edge: z is the convolution's output before its BN for
    the convolutions (zeros for the other operations); (mean, var) the BN's batch statistics in 'train' and
    'calibrate' modes, zeros otherwise. `running` = (mean, var), each (2, C) for the 1x1 and 3x3 slots, serves
    'eval'."""
    zeros = jnp.zeros(x.shape[-1], x.dtype)

    def convolution(kernel, slot):
        def run(x):
            z = _conv(jax.nn.relu(x), kernel)
            y, stats = _batch_norm(z, None if running is None else (running[0][slot], running[1][slot]), mode)
            return y, (zeros, zeros) if stats is None else stats, z
        return run

    def plain(fn):
        return lambda x: (fn(x), (zeros, zeros), jnp.zeros_like(x))

    branches = [plain(jnp.zeros_like), plain(lambda x: x), convolution(kernel_1x1, 0), convolution(kernel_3x3, 1),
                plain(_avg_pool_3x3)]
    return jax.lax.switch(op, branches, x)


@jax.custom_vjp
def train_edge(op, x, kernel_1x1, kernel_3x3):
    """(y, (mean, var)): the training-mode edge with operation `op` (traced) and its BN's batch statistics.

    Its derivative is written by hand (tested against autodiff): the residuals are the edge's input and the
    convolution's output whatever the operation, where differentiating `lax.switch` keeps every branch's residuals
    (zero-filled for the branches not taken), which on CPU cost each edge as much as a small convolution. The
    statistics feed running averages only: no gradient flows back through them."""
    y, stats, _ = _edge_forward(op, x, kernel_1x1, kernel_3x3)
    return y, stats


def _train_edge_forward(op, x, kernel_1x1, kernel_3x3):
    y, stats, z = _edge_forward(op, x, kernel_1x1, kernel_3x3)
    return (y, stats), (op, x, z, stats, kernel_1x1, kernel_3x3)


def _train_edge_backward(residuals, cotangents):
    op, x, z, (mean, var), kernel_1x1, kernel_3x3 = residuals
    dy = cotangents[0]
    zero_1x1, zero_3x3 = jnp.zeros_like(kernel_1x1), jnp.zeros_like(kernel_3x3)

    def convolution_grads(kernel, dy):
        rstd = jax.lax.rsqrt(var + BN_EPS)
        normalized = (z - mean) * rstd
        axes = (0, 1, 2)
        dz = rstd * (dy - jnp.mean(dy, axis=axes) - normalized * jnp.mean(dy * normalized, axis=axes))
        _, conv_vjp = jax.vjp(_conv, jax.nn.relu(x), kernel)
        d_activation, d_kernel = conv_vjp(dz)
        return jnp.where(x > 0, d_activation, 0.0), d_kernel

    def conv_1x1(dy):
        dx, d_kernel = convolution_grads(kernel_1x1, dy)
        return dx, d_kernel, zero_3x3

    def conv_3x3(dy):
        dx, d_kernel = convolution_grads(kernel_3x3, dy)
        return dx, zero_1x1, d_kernel

    branches = [lambda dy: (jnp.zeros_like(dy), zero_1x1, zero_3x3), lambda dy: (dy, zero_1x1, zero_3x3),
                conv_1x1, conv_3x3, lambda dy: (jax.vjp(_avg_pool_3x3, x)[1](dy)[0], zero_1x1, zero_3x3)]
    return (None, *jax.lax.switch(op, branches, dy))


train_edge.defvjp(_train_edge_forward, _train_edge_backward)


def _he(rngs, shape, fan_out):
    return jax.random.normal(rngs.params(), shape, jnp.float32) * jnp.sqrt(2.0 / fan_out)


class NB201Supernet(nnx.Module):
    """`model(x, arch, train=...)`: logits of cell `arch` ((6,) ints of `nb201`, traced) for NHWC images `x`."""

    family = "spos"

    def __init__(self, space=None, *, channels: int = 16, cells: int = 5, num_classes: int = 10,
                 in_channels: int = 3, split_decision: str | None = None, rngs: nnx.Rngs):
        if space is not None and getattr(space, "name", None) != "nb201":
            raise UserInputError(f"NB201Supernet: space must be 'nb201', got {getattr(space, 'name', space)!r}")
        names = [f"edge_{to}_{src}" for to, src in EDGES]
        if split_decision is not None and split_decision not in names:
            raise UserInputError(f"NB201Supernet: split_decision = {split_decision!r} is not allowed; allowed: {names}")
        if channels < 1 or cells < 1 or num_classes < 1 or in_channels < 1:
            raise UserInputError(f"NB201Supernet: channels, cells, num_classes, in_channels must be >= 1, got "
                                 f"{channels}, {cells}, {num_classes}, {in_channels}")
        self.channels, self.cells, self.num_classes, self.in_channels = channels, cells, num_classes, in_channels
        self.split_decision = split_decision
        self.split_column = None if split_decision is None else names.index(split_decision)
        k = 1 if split_decision is None else len(OPS)
        self.copies = k
        c, n, e = channels, cells, len(EDGES)
        def zeros(*shape):
            return nnx.BatchStat(jnp.zeros(shape, jnp.float32))

        def ones(*shape):
            return nnx.BatchStat(jnp.ones(shape, jnp.float32))

        self.stem = nnx.Param(jnp.stack([_he(rngs, (3, 3, in_channels, c), 9 * c)] * k))
        self.stem_mean, self.stem_var = zeros(k, c), ones(k, c)
        lists = {name: [] for name in ("conv1x1", "conv3x3", "cell_mean", "cell_var", "reduce_a", "reduce_b",
                                       "shortcut", "reduce_mean", "reduce_var")}
        for stage in range(NUM_STAGES):
            w = c * 2 ** stage
            lists["conv1x1"].append(nnx.Param(jnp.stack([_he(rngs, (n, e, 1, 1, w, w), w)] * k)))
            lists["conv3x3"].append(nnx.Param(jnp.stack([_he(rngs, (n, e, 3, 3, w, w), 9 * w)] * k)))
            lists["cell_mean"].append(zeros(k, n, e, 2, w))
            lists["cell_var"].append(ones(k, n, e, 2, w))
            if stage < NUM_STAGES - 1:
                lists["reduce_a"].append(nnx.Param(jnp.stack([_he(rngs, (3, 3, w, 2 * w), 18 * w)] * k)))
                lists["reduce_b"].append(nnx.Param(jnp.stack([_he(rngs, (3, 3, 2 * w, 2 * w), 18 * w)] * k)))
                lists["shortcut"].append(nnx.Param(jnp.stack([_he(rngs, (1, 1, w, 2 * w), 2 * w)] * k)))
                lists["reduce_mean"].append(zeros(k, 2, 2 * w))
                lists["reduce_var"].append(ones(k, 2, 2 * w))
        for name, values in lists.items():
            setattr(self, name, nnx.List(values))
        last = c * 2 ** (NUM_STAGES - 1)
        self.last_mean, self.last_var = zeros(k, last), ones(k, last)
        bound = 1.0 / np.sqrt(last)
        self.classifier_kernel = nnx.Param(jnp.stack(
            [jax.random.uniform(rngs.params(), (last, num_classes), jnp.float32, -bound, bound)] * k))
        self.classifier_bias = nnx.Param(jnp.zeros((k, num_classes), jnp.float32))
        self.split_flag = SplitFlag(jnp.int32(0))

    def config(self) -> dict:
        """JSON-able constructor arguments; `NB201Supernet.from_config(cfg, rngs=...)` rebuilds the model."""
        return {"channels": self.channels, "cells": self.cells, "num_classes": self.num_classes,
                "in_channels": self.in_channels, "split_decision": self.split_decision}

    @classmethod
    def from_config(cls, config: dict, *, rngs: nnx.Rngs) -> "NB201Supernet":
        return cls(None, **config, rngs=rngs)

    def copy_of(self, arch):
        """Index of the weight copy that serves `arch` (traced): its split edge's operation once split, else 0."""
        if self.split_column is None:
            return jnp.int32(0)
        return jnp.where(self.split_flag[...] > 0, arch[self.split_column], 0).astype(jnp.int32)

    def split(self) -> None:
        """Few-shot split: every copy takes copy 0's weights and statistics; from now on each serves its op."""
        if self.split_column is None:
            raise ValueError("NB201Supernet.split: the supernet was built without split_decision")
        for _, variable in nnx.to_flat_state(nnx.state(self, nnx.Any(nnx.Param, nnx.BatchStat))):
            value = variable.get_value()
            variable.set_value(jnp.broadcast_to(value[:1], value.shape))
        self.split_flag.set_value(jnp.int32(1))

    def forward(self, x, arch, mode: str):
        """(logits, statistics): per BN the batch (mean, var) in 'train'/'calibrate' mode, None in 'eval'."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        arch = jnp.asarray(arch, jnp.int32)
        ops, copy = effective_ops(arch), self.copy_of(arch)
        pick = lambda v: v[...][copy]
        stats = {}
        h, stats["stem"] = _batch_norm(_conv(x, pick(self.stem)), (pick(self.stem_mean), pick(self.stem_var)), mode)
        stats["cells"], stats["reduce"] = [], []
        for stage in range(NUM_STAGES):
            h, cell_stats = self._stage(stage, h, ops, copy, mode)
            stats["cells"].append(cell_stats)
            if stage < NUM_STAGES - 1:
                mean, var = pick(self.reduce_mean[stage]), pick(self.reduce_var[stage])
                a, sa = _relu_conv_bn(h, pick(self.reduce_a[stage]), (mean[0], var[0]), mode, 2)
                b, sb = _relu_conv_bn(a, pick(self.reduce_b[stage]), (mean[1], var[1]), mode)
                pooled = jax.lax.reduce_window(h, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID") / 4.0
                h = b + _conv(pooled, pick(self.shortcut[stage]))
                stats["reduce"].append(None if sa is None else (jnp.stack([sa[0], sb[0]]), jnp.stack([sa[1], sb[1]])))
        h, stats["last"] = _batch_norm(h, (pick(self.last_mean), pick(self.last_var)), mode)
        pooled = jnp.mean(jax.nn.relu(h), axis=(1, 2))
        logits = pooled @ pick(self.classifier_kernel) + pick(self.classifier_bias)
        return logits, (None if mode == "eval" else stats)

    def _stage(self, stage: int, h, ops, copy, mode: str):
        """The stage's cells, unrolled (XLA's CPU backend ran them under `lax.scan` about 15 ms a cell slower per
        step; compiling takes longer). Returns (h, (mean, var) each (N, 6, C))."""
        xs = (self.conv1x1[stage][...][copy], self.conv3x3[stage][...][copy], self.cell_mean[stage][...][copy],
              self.cell_var[stage][...][copy])

        def edge(j, x, conv1, conv3, mean, var):
            if mode == "train":
                return train_edge(ops[j], x, conv1[j], conv3[j])
            y, stats, _ = _edge_forward(ops[j], x, conv1[j], conv3[j], (mean, var), mode)
            return y, stats

        def cell(x, weights):
            conv1, conv3, mean, var = weights
            nodes, means, vars_ = [x], [None] * len(EDGES), [None] * len(EDGES)
            for target in range(1, NUM_NODES):
                total = None
                for j, (to, src) in enumerate(EDGES):
                    if to != target:
                        continue
                    y, (means[j], vars_[j]) = edge(j, nodes[src], conv1, conv3, mean[j], var[j])
                    total = y if total is None else total + y
                nodes.append(total)
            return nodes[-1], (jnp.stack(means), jnp.stack(vars_))

        per_cell = []
        for i in range(self.cells):
            h, cell_stats = cell(h, jax.tree.map(lambda a: a[i], xs))
            per_cell.append(cell_stats)
        stats = jax.tree.map(lambda *a: jnp.stack(a), *per_cell)
        return h, (None if mode == "eval" else stats)

    def _write_statistics(self, arch, stats, momentum: float) -> None:
        """Running statistics <- momentum * running + (1 - momentum) * `stats`, for the BNs `arch` used, in its
        copy; other operations' and copies' statistics stay bit-identical."""
        arch = jnp.asarray(arch, jnp.int32)
        ops, copy = effective_ops(arch), self.copy_of(arch)

        def blend(variable, new, where=True):
            value = variable[...]
            old = value[copy]
            variable[...] = value.at[copy].set(jnp.where(where, momentum * old + (1 - momentum) * new, old))

        blend(self.stem_mean, stats["stem"][0])
        blend(self.stem_var, stats["stem"][1])
        slots = jnp.stack([ops == CONV_1X1, ops == CONV_3X3], axis=1)[None, :, :, None]  # (1, 6, 2, 1)
        for stage, (mean, var) in enumerate(stats["cells"]):
            blend(self.cell_mean[stage], mean[:, :, None, :], slots)
            blend(self.cell_var[stage], var[:, :, None, :], slots)
        for stage, (mean, var) in enumerate(stats["reduce"]):
            blend(self.reduce_mean[stage], mean)
            blend(self.reduce_var[stage], var)
        blend(self.last_mean, stats["last"][0])
        blend(self.last_var, stats["last"][1])

    def __call__(self, x, arch, train: bool = False):
        logits, stats = self.forward(x, arch, "train" if train else "eval")
        if train:
            self._write_statistics(arch, stats, BN_MOMENTUM)
        return logits

    def set_batch_statistics(self, arch, stats) -> None:
        """Replaces the running statistics of the BNs `arch` uses by `stats` (BN calibration)."""
        self._write_statistics(arch, stats, 0.0)

    def update_mask(self, archs, valid):
        """Per parameter, a boolean broadcastable to it: True where one of the `valid` rows of `archs` used the
        weights (its copy; for cell convolutions, the edges that took that convolution). The trainer applies no
        update, momentum or decay elsewhere."""
        archs = jnp.asarray(archs, jnp.int32)
        ops = jax.vmap(effective_ops)(archs)                                     # (R, 6)
        copies = jax.vmap(self.copy_of)(archs)                                   # (R,)
        rows = (copies[:, None] == jnp.arange(self.copies)[None]) & valid[:, None]  # (R, K)
        used = rows.any(axis=0)                                                  # (K,)

        def took(op):
            taken = (rows[:, :, None] & (ops == op)[:, None, :]).any(axis=0)     # (K, 6)
            return taken[:, None, :, None, None, None, None]

        def mask(path, param):
            name = str(path[0])
            if name in ("conv1x1", "conv3x3"):
                return took(CONV_1X1 if name == "conv1x1" else CONV_3X3)
            return used.reshape((-1,) + (1,) * (param.ndim - 1))

        return jax.tree_util.tree_map_with_path(
            lambda path, p: mask([getattr(k, "key", k) for k in path], p),
            nnx.as_pure(nnx.state(self, nnx.Param)))


def subnet_config(model: NB201Supernet, arch) -> dict:
    """The StaticNB201 config of cell `arch`: edges that do not reach the output are 'none'."""
    ops = np.asarray(effective_ops(jnp.asarray(np.asarray(arch).reshape(-1), jnp.int32)))
    return {"name": "StaticNB201", "in_channels": model.in_channels, "channels": model.channels,
            "cells": model.cells, "num_classes": model.num_classes, "ops": [OPS[int(o)] for o in ops]}


def _set_bn(bn: nnx.BatchNorm, mean, var) -> None:
    set_variable(bn.mean, mean)
    set_variable(bn.var, var)
    set_variable(bn.scale, np.ones_like(mean))
    set_variable(bn.bias, np.zeros_like(mean))


def extract(model: NB201Supernet, arch) -> StaticNB201:
    """Standalone StaticNB201 of cell `arch` with the supernet's weights (the copy serving the cell) and BN
    statistics (calibrate first). Its output equals `model(x, arch, train=False)`."""
    arch = np.asarray(arch, dtype=np.int64).reshape(-1)
    config = subnet_config(model, arch)
    copy = int(model.copy_of(jnp.asarray(arch, jnp.int32)))
    host = lambda v: np.asarray(v[...])[copy]
    net = nnx.eval_shape(lambda: StaticNB201(config, rngs=nnx.Rngs(0)))
    set_variable(net.stem.kernel, host(model.stem))
    _set_bn(net.stem_bn, host(model.stem_mean), host(model.stem_var))
    for stage, cells in enumerate(net.stages):
        conv1, conv3 = host(model.conv1x1[stage]), host(model.conv3x3[stage])
        mean, var = host(model.cell_mean[stage]), host(model.cell_var[stage])
        for i, cell in enumerate(cells):
            for j, (to, src) in enumerate(EDGES):
                op = config["ops"][j]
                if op in ("nor_conv_1x1", "nor_conv_3x3"):
                    slot = 0 if op == "nor_conv_1x1" else 1
                    layer = cell.convs[f"edge_{to}_{src}"]
                    set_variable(layer.conv.kernel, (conv1 if slot == 0 else conv3)[i, j])
                    _set_bn(layer.bn, mean[i, j, slot], var[i, j, slot])
        if stage < len(net.reductions):
            block = net.reductions[stage]
            rmean, rvar = host(model.reduce_mean[stage]), host(model.reduce_var[stage])
            set_variable(block.conv_a.conv.kernel, host(model.reduce_a[stage]))
            _set_bn(block.conv_a.bn, rmean[0], rvar[0])
            set_variable(block.conv_b.conv.kernel, host(model.reduce_b[stage]))
            _set_bn(block.conv_b.bn, rmean[1], rvar[1])
            set_variable(block.shortcut.kernel, host(model.shortcut[stage]))
    _set_bn(net.last_bn, host(model.last_mean), host(model.last_var))
    set_variable(net.classifier.kernel, host(model.classifier_kernel))
    set_variable(net.classifier.bias, host(model.classifier_bias))
    assert_all_set(net)
    return net


DEFAULT_CHANNELS, DEFAULT_CELLS = 16, 5  # NAS-Bench-201's C and N


def allowed_choices(space, phase_config) -> np.ndarray:
    """Every operation on every edge: SPOS samples cells uniformly. The OFA keys (kernel, depth, expand) are
    refused (the message names the key; the config check prefixes the phase)."""
    for key in ("kernel", "depth", "expand"):
        if getattr(phase_config, key) is not None:
            raise UserInputError(f"{key} applies to the ofa family; spos phases take name, epochs, lr and split")
    return np.ones((space.num_decisions, len(OPS)), dtype=bool)


def begin_phase(model: NB201Supernet, phase, phases) -> None:
    """A phase with `split: true` splits the supernet (few-shot) before its first step, unless already split."""
    if phase.config.split and int(model.split_flag[...]) == 0:
        model.split()


def build(config, space, num_classes: int, in_channels: int) -> NB201Supernet:
    s = config.supernet
    return NB201Supernet(space, channels=s.channels or DEFAULT_CHANNELS, cells=s.cells or DEFAULT_CELLS,
                         num_classes=num_classes, in_channels=in_channels, split_decision=s.split_decision,
                         rngs=nnx.Rngs(config.seed))


def _check(config, source: str) -> None:
    if config.supernet.width_mult is not None:
        raise UserInputError(f"{source}: supernet.width_mult applies to the ofa family; spos takes channels and cells")
    splits = [p.name for p in config.train.phases if p.split]
    if splits and config.supernet.split_decision is None:
        raise UserInputError(f"{source}: train.phases {splits} split the supernet, but supernet.split_decision is not "
                             f"set; set it to one of {[f'edge_{to}_{src}' for to, src in EDGES]}")
    if config.data.resolution < 8:
        raise UserInputError(f"{source}: data.resolution = {config.data.resolution} is too small for nb201's two "
                             "reductions; allowed: >= 8")


def _probes(space, phase) -> dict:
    """The all-3x3-convolution cell and the cheapest cell with a convolution (one 1x1 edge from input to output)."""
    largest = np.full(len(EDGES), CONV_3X3, dtype=np.int32)
    smallest = np.zeros(len(EDGES), dtype=np.int32)
    smallest[EDGES.index((NUM_NODES - 1, 0))] = CONV_1X1
    return {"largest": largest, "smallest": smallest}


def _layer_options(config, num_classes: int) -> dict:
    s = config.supernet
    return {"channels": s.channels or DEFAULT_CHANNELS, "cells": s.cells or DEFAULT_CELLS,
            "resolution": config.data.resolution, "num_classes": num_classes}


FAMILY = SupernetFamily(
    name="spos", space="nb201", model=NB201Supernet, static_network=StaticNB201, build=build,
    allowed_choices=allowed_choices, begin_phase=begin_phase, probes=_probes,
    input_resolution=lambda space, arch, data_resolution: data_resolution, extract=extract,
    layer_options=_layer_options, check=_check)
