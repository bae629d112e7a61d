"""The elastic MBConv block (kernel 3 / 5 / 7, expand 3 / 4 / 6) with its weights at their largest shape."""

from __future__ import annotations

import functools
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from search_spaces.ofa_mbv3 import EXPAND_CHOICES, make_divisible
from supernets.activations import ACTIVATIONS, activation_vjp
from supernets.depthwise import depthwise_conv, depthwise_conv_vjp
from supernets.elastic_bn import ElasticBatchNorm, batch_norm_train, channel_sum, first_mask
from supernets.kernel_transform import KERNEL_SIZES, active_kernel
from supernets.pointwise import contract, pointwise, pointwise_kernel_grad, pointwise_transposed


def he_fout(rngs: nnx.Rngs, shape, fan_out: int):
    """OFA's 'he_fout' initialisation: normal with std sqrt(2 / (k * k * out_channels))."""
    return jax.random.normal(rngs.params(), shape, jnp.float32) * np.sqrt(2.0 / fan_out)


def _spatial_sum(x):
    """Sum of x (N, H, W, C) over H and W."""
    return lax.reduce(x, np.array(0, x.dtype), lax.add, (1, 2))


def _first(x, count: int, axis: int):
    """The first `count` entries of x along `axis`."""
    return lax.slice_in_dim(x, 0, count, axis=axis)


def _divided(x, divisor: int):
    return lax.div(x, lax.full_like(x, divisor))


def _affine(x, kernel, bias):
    """x (N, C_in) @ kernel + bias."""
    y = contract(x, kernel, 1, 0)
    return lax.add(y, lax.broadcast_in_dim(bias, y.shape, (1,)))


class ElasticMBConv(nnx.Module):
    """MBConv block of OFA's MobileNetV3 with elastic kernel (3, 5, 7) and expand ratio (3, 4, 6).

    A smaller subnet computes less: the expanded channels run in chunks (the largest common divisor of the expand
    choices' widths) through a loop whose trip count is the traced expand choice's number of chunks, and the
    depthwise conv on the traced kernel size through `lax.switch` over static sizes; see `_forward`.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, act: str, se: bool, *, rngs: nnx.Rngs):
        self.in_channels, self.out_channels, self.stride, self.act, self.se = in_channels, out_channels, stride, act, se
        self.residual = stride == 1 and in_channels == out_channels
        self.mid_choices = tuple(make_divisible(round(in_channels * e), 8) for e in EXPAND_CHOICES)
        self.chunk = math.gcd(*self.mid_choices)
        self.chunk_counts = tuple(m // self.chunk for m in self.mid_choices)
        mid, k = max(self.mid_choices), max(KERNEL_SIZES)
        self.expand_kernel = nnx.Param(he_fout(rngs, (in_channels, mid), mid))
        self.expand_bn = ElasticBatchNorm(mid)
        self.depthwise_kernel = nnx.Param(he_fout(rngs, (k, k, mid), k * k * mid))
        self.transform_5 = nnx.Param(jnp.eye(25, dtype=jnp.float32))
        self.transform_3 = nnx.Param(jnp.eye(9, dtype=jnp.float32))
        self.depthwise_bn = ElasticBatchNorm(mid)
        if se:
            self.se_choices = tuple(make_divisible(c // 4, 8) for c in self.mid_choices)
            r = max(self.se_choices)
            self.se_reduce_kernel = nnx.Param(he_fout(rngs, (mid, r), r))
            self.se_reduce_bias = nnx.Param(jnp.zeros((r,), jnp.float32))
            self.se_expand_kernel = nnx.Param(he_fout(rngs, (r, mid), mid))
            self.se_expand_bias = nnx.Param(jnp.zeros((mid,), jnp.float32))
        self.project_kernel = nnx.Param(he_fout(rngs, (mid, out_channels), out_channels))
        self.project_bn = ElasticBatchNorm(out_channels, zero_scale=self.residual)

    def batch_norms(self) -> list[ElasticBatchNorm]:
        return [self.expand_bn, self.depthwise_bn, self.project_bn]

    def arrays(self) -> dict:
        names = ["expand_kernel", "depthwise_kernel", "transform_5", "transform_3", "project_kernel"]
        if self.se:
            names += ["se_reduce_kernel", "se_reduce_bias", "se_expand_kernel", "se_expand_bias"]
        p = {n: getattr(self, n)[...] for n in names}
        p.update(expand_bn=self.expand_bn.arrays(), depthwise_bn=self.depthwise_bn.arrays(),
                 project_bn=self.project_bn.arrays())
        return p

    def sliced_weights(self, p: dict, expand_index: int, kernel: int) -> dict:
        """The block's weights at one (expand choice index, kernel size), kernel transforms applied."""
        c = self.mid_choices[expand_index]
        transforms = {5: p["transform_5"], 3: p["transform_3"]}
        w = {"mid": c, "kernel": kernel, "expand_kernel": _first(p["expand_kernel"], c, 1),
             "depthwise_kernel": active_kernel(_first(p["depthwise_kernel"], c, 2), kernel, transforms),
             "project_kernel": _first(p["project_kernel"], c, 0)}
        if self.se:
            r = self.se_choices[expand_index]
            w.update(se_reduce_kernel=_first(_first(p["se_reduce_kernel"], c, 0), r, 1),
                     se_reduce_bias=_first(p["se_reduce_bias"], r, 0),
                     se_expand_kernel=_first(_first(p["se_expand_kernel"], r, 0), c, 1),
                     se_expand_bias=_first(p["se_expand_bias"], c, 0))
        return w

    def _chunk(self, a, j, axis: int):
        """Expanded channels [j * chunk, (j + 1) * chunk) of a along `axis`; j may be traced."""
        return lax.dynamic_slice_in_dim(a, j * self.chunk, self.chunk, axis)

    def _chunk_weights(self, p: dict, j) -> dict:
        """The weights of the block's j-th chunk of expanded channels."""
        def bn(name):
            return {n: self._chunk(v, j, 0) for n, v in p[name].items()}

        return {"expand_kernel": self._chunk(p["expand_kernel"], j, 1), "expand_bn": bn("expand_bn"),
                "depthwise_kernel": self._chunk(p["depthwise_kernel"], j, 2), "depthwise_bn": bn("depthwise_bn"),
                "project_kernel": self._chunk(p["project_kernel"], j, 0)}

    def _active_chunks(self, expand_index):
        """How many chunks the traced expand choice uses."""
        return lax.dynamic_index_in_dim(np.array(self.chunk_counts, np.int32), expand_index, keepdims=False)

    @staticmethod
    def _active_depthwise_kernel(kernel, transform_5, transform_3, size: int):
        """The (size, size, C) depthwise kernel OFA derives from the (7, 7, C) `kernel` by its transforms."""
        return active_kernel(kernel, size, {5: transform_5, 3: transform_3})

    def _expanded(self, w: dict, x, mode: str):
        """One chunk's 1x1 expansion, BN and activation: (h1, BN statistics)."""
        z, stat = ElasticBatchNorm.normalize(w["expand_bn"], pointwise(x, w["expand_kernel"]), self.chunk, mode)
        return ACTIVATIONS[self.act](z), stat

    def _depthwise(self, p: dict, w: dict, kernel_index, h1):
        """One chunk's depthwise conv at the traced kernel size (`lax.switch` over static sizes)."""
        def at_size(size, h1, kernel):
            kernel = self._active_depthwise_kernel(kernel, p["transform_5"], p["transform_3"], size)
            return depthwise_conv(h1, kernel, self.stride)

        return lax.switch(kernel_index, [partial(at_size, s) for s in KERNEL_SIZES], h1, w["depthwise_kernel"])

    def _activated(self, w: dict, h2, mode: str):
        """One chunk's BN and activation after the depthwise conv: (a, BN statistics)."""
        z, stat = ElasticBatchNorm.normalize(w["depthwise_bn"], h2, self.chunk, mode)
        return ACTIVATIONS[self.act](z), stat

    def _se_gate(self, p: dict, pooled, expand_index):
        """(gate, backward) of SE on `pooled` (N, mid), zero beyond the active channels: gate = hsigmoid(relu(pooled @
        reduce + b) @ expand + b) with the squeezed units beyond the active choice's masked out; backward(d gate), d
        gate zero beyond the active channels, = (d SE weights, d pooled)."""
        reduce_kernel, expand_kernel = p["se_reduce_kernel"], p["se_expand_kernel"]
        active = lax.dynamic_index_in_dim(np.array(self.se_choices, np.int32), expand_index, keepdims=False)
        units = reduce_kernel.shape[1]
        mask = lax.broadcast_in_dim(lax.convert_element_type(first_mask(units, active), pooled.dtype),
                                    (pooled.shape[0], units), (1,))
        squeezed, squeeze_vjp = activation_vjp("relu", _affine(pooled, reduce_kernel, p["se_reduce_bias"]))
        squeezed = lax.mul(squeezed, mask)
        gate, gate_vjp = activation_vjp("hsigmoid", _affine(squeezed, expand_kernel, p["se_expand_bias"]))

        def backward(d_gate):
            d_gate = gate_vjp(d_gate)
            d_squeezed = squeeze_vjp(lax.mul(contract(d_gate, expand_kernel, 1, 1), mask))
            grads = {"se_reduce_kernel": pointwise_kernel_grad(pooled, d_squeezed),
                     "se_reduce_bias": channel_sum(d_squeezed),
                     "se_expand_kernel": pointwise_kernel_grad(squeezed, d_gate),
                     "se_expand_bias": channel_sum(d_gate)}
            return grads, contract(d_squeezed, reduce_kernel, 1, 1)

        return gate, backward

    def _gate_chunk(self, gate, j, a):
        """The j-th chunk of the SE gate (N, mid) broadcast to a chunk's activations a (N, H, W, chunk)."""
        return lax.broadcast_in_dim(self._chunk(gate, j, 1), a.shape, (0, 3))

    def _forward(self, p: dict, x, expand_index, kernel_index, mode: str):
        """The block at traced choice indices: (y, its 3 BN statistics or None in eval mode, in train mode the
        residuals `_backward` reads, else None).

        The expanded channels run in chunks of `chunk` channels through a `lax.fori_loop` whose trip count is the
        expand choice's number of chunks: expansion, BN, depthwise (a `lax.switch` over the kernel size), BN and
        activation are per channel, and the projection sums the chunks' contributions. With SE a second loop applies
        the gate, which needs every chunk's pooled activations.
        """
        n = self._active_chunks(expand_index)
        mid = p["expand_kernel"].shape[1]
        height, width = -(-x.shape[1] // self.stride), -(-x.shape[2] // self.stride)
        chunks = mid // self.chunk
        zeros = partial(lax.full, fill_value=0, dtype=x.dtype)
        carry = {"project_in": zeros((*x.shape[:1], height, width, self.out_channels))}
        if mode != "eval":
            carry["stats"] = tuple(zeros((mid,)) for _ in range(4))
        if mode == "train" or self.se:
            carry["h2"] = zeros((chunks, x.shape[0], height, width, self.chunk))
        if self.se:
            carry["pooled"] = zeros((x.shape[0], mid))

        def expand_depthwise(j, carry):
            w = self._chunk_weights(p, j)
            h1, s_expand = self._expanded(w, x, mode)
            h2 = self._depthwise(p, w, kernel_index, h1)
            a, s_depthwise = self._activated(w, h2, mode)
            carry = dict(carry)
            if self.se:
                carry["pooled"] = lax.dynamic_update_slice_in_dim(carry["pooled"], _divided(
                    _spatial_sum(a), height * width), j * self.chunk, 1)
            else:
                carry["project_in"] = lax.add(carry["project_in"], pointwise(a, w["project_kernel"]))
            if "h2" in carry:
                carry["h2"] = lax.dynamic_update_index_in_dim(carry["h2"], h2, j, 0)
            if "stats" in carry:
                carry["stats"] = tuple(lax.dynamic_update_slice_in_dim(total, v, j * self.chunk, 0) for total, v in
                                       zip(carry["stats"], (*s_expand[:2], *s_depthwise[:2])))
            return carry

        carry = lax.fori_loop(0, n, expand_depthwise, carry)
        project_in = carry["project_in"]
        if self.se:
            gate = self._se_gate(p, carry["pooled"], expand_index)[0]

            def project(j, total):
                w = self._chunk_weights(p, j)
                a = self._activated(w, lax.dynamic_index_in_dim(carry["h2"], j, 0, keepdims=False), mode)[0]
                return lax.add(total, pointwise(lax.mul(a, self._gate_chunk(gate, j, a)), w["project_kernel"]))

            project_in = lax.fori_loop(0, n, project, project_in)
        y, s_project = ElasticBatchNorm.normalize(p["project_bn"], project_in, self.out_channels, mode)
        if self.residual:
            y = lax.add(y, x)
        if mode == "eval":
            return y, None, None
        count = lax.mul(n, np.int32(self.chunk))
        mean_e, var_e, mean_d, var_d = carry["stats"]
        stats = ((mean_e, var_e, count), (mean_d, var_d, count), s_project)
        if mode != "train":
            return y, stats, None
        return y, stats, {"h2": carry["h2"], "project_in": project_in, "pooled": carry.get("pooled")}

    def _skip(self, p: dict, x, mode: str):
        """A block beyond its stage's depth (a stride-1 residual block): the identity, empty statistics and, in train
        mode, zero residuals in place of the forward's."""
        names = ("expand_bn", "depthwise_bn", "project_bn")
        stats = None if mode == "eval" else tuple(ElasticBatchNorm.empty_stat(p[n]) for n in names)
        if mode != "train":
            return x, stats, None
        mid = p["expand_kernel"].shape[1]
        h2 = lax.full((mid // self.chunk, *x.shape[:3], self.chunk), 0, x.dtype)
        return x, stats, {"h2": h2, "project_in": lax.full_like(x, 0),
                          "pooled": lax.full((x.shape[0], mid), 0, x.dtype) if self.se else None}

    def _depthwise_backward(self, p: dict, w: dict, kernel_index, h1, dh2):
        """One chunk's depthwise vjp at the traced kernel size: (d h1, d (7, 7, chunk) kernel, d transform_5,
        d transform_3)."""
        def at_size(size, h1, dh2, kernel):
            active, kernel_vjp = jax.vjp(partial(self._active_depthwise_kernel, size=size), kernel,
                                         p["transform_5"], p["transform_3"])
            dh1, d_active = depthwise_conv_vjp(h1, active, self.stride, dh2)
            return (dh1, *kernel_vjp(d_active))

        return lax.switch(kernel_index, [partial(at_size, s) for s in KERNEL_SIZES], h1, dh2, w["depthwise_kernel"])

    def _backward(self, p: dict, x, residuals: dict, expand_index, kernel_index, dy):
        """(d p, d x) of the training-mode block output for cotangent dy, given the block's input x and the forward's
        residuals: the projection's BN, then per chunk (a `lax.fori_loop` as in `_forward`) the projection, BN,
        depthwise, BN and expansion, differentiated by hand (JAX cannot reverse a loop of traced length). With SE a
        first loop collects the gate's cotangent. BN running statistics get no gradient."""
        n = self._active_chunks(expand_index)
        _, project_bn_backward = batch_norm_train(p["project_bn"], residuals["project_in"], self.out_channels)
        d_project_bn, du = project_bn_backward(dy)

        def chunk_activations(j):
            w = self._chunk_weights(p, j)
            h2 = lax.dynamic_index_in_dim(residuals["h2"], j, 0, keepdims=False)
            z, depthwise_bn_backward = batch_norm_train(w["depthwise_bn"], h2, self.chunk)
            return w, z, depthwise_bn_backward

        if self.se:
            gate, se_backward = self._se_gate(p, residuals["pooled"], expand_index)

            def gate_cotangent(j, d_gate):
                w, z, _ = chunk_activations(j)
                d_scaled = pointwise_transposed(du, w["project_kernel"])
                d_chunk = _spatial_sum(lax.mul(d_scaled, ACTIVATIONS[self.act](z)))
                return lax.dynamic_update_slice_in_dim(d_gate, d_chunk, j * self.chunk, 1)

            d_gate = lax.fori_loop(0, n, gate_cotangent, lax.full_like(residuals["pooled"], 0))
            d_se, d_pooled = se_backward(d_gate)
            pixels = du.shape[1] * du.shape[2]

        def chunk_backward(j, carry):
            grads, dx = carry
            w, z, depthwise_bn_backward = chunk_activations(j)
            a, act_vjp = activation_vjp(self.act, z)
            d_scaled = pointwise_transposed(du, w["project_kernel"])
            if self.se:
                gate_j = self._gate_chunk(gate, j, a)
                scaled = lax.mul(a, gate_j)
                da = lax.add(lax.mul(d_scaled, gate_j), lax.broadcast_in_dim(
                    _divided(self._chunk(d_pooled, j, 1), pixels), a.shape, (0, 3)))
            else:
                scaled, da = a, d_scaled
            d_depthwise_bn, dh2 = depthwise_bn_backward(act_vjp(da))
            z_expand, expand_bn_backward = batch_norm_train(w["expand_bn"], pointwise(x, w["expand_kernel"]),
                                                            self.chunk)
            h1, expand_act_vjp = activation_vjp(self.act, z_expand)
            dh1, d_kernel, d_t5, d_t3 = self._depthwise_backward(p, w, kernel_index, h1, dh2)
            d_expand_bn, du_expand = expand_bn_backward(expand_act_vjp(dh1))
            at = j * self.chunk
            put = lax.dynamic_update_slice_in_dim
            grads = dict(grads)
            grads["expand_kernel"] = put(grads["expand_kernel"], pointwise_kernel_grad(x, du_expand), at, 1)
            grads["project_kernel"] = put(grads["project_kernel"], pointwise_kernel_grad(scaled, du), at, 0)
            grads["depthwise_kernel"] = put(grads["depthwise_kernel"], d_kernel, at, 2)
            grads["transform_5"] = lax.add(grads["transform_5"], d_t5)
            grads["transform_3"] = lax.add(grads["transform_3"], d_t3)
            for name, d_bn in (("expand_bn", d_expand_bn), ("depthwise_bn", d_depthwise_bn)):
                grads[name] = {**grads[name], "scale": put(grads[name]["scale"], d_bn["scale"], at, 0),
                               "bias": put(grads[name]["bias"], d_bn["bias"], at, 0)}
            return grads, lax.add(dx, pointwise_transposed(du_expand, w["expand_kernel"]))

        zero_grads = jax.tree.map(lambda v: lax.full_like(v, 0), p)
        grads, dx = lax.fori_loop(0, n, chunk_backward, (zero_grads, lax.full_like(x, 0)))
        grads["project_bn"] = d_project_bn
        if self.se:
            grads.update(d_se)
        return grads, (lax.add(dx, dy) if self.residual else dx)

    def _run(self, p: dict, x, expand_index, kernel_index, active, mode: str):
        """`_forward`, or with `active` given, `lax.cond` between it and `_skip` (a block beyond its stage's depth)."""
        if active is None:
            return self._forward(p, x, expand_index, kernel_index, mode)
        return lax.cond(active, lambda p, x, e, k: self._forward(p, x, e, k, mode),
                        lambda p, x, e, k: self._skip(p, x, mode), p, x, expand_index, kernel_index)

    def train_forward(self, p: dict, x, expand_index, kernel_index, active):
        """The training-mode block: ((y, its 3 BN statistics), residuals for `train_backward`).

        The residuals are the block's input, its depthwise output chunk by chunk (zero beyond the active chunks; the
        backward recomputes the expansion), the projection's input and, with SE, the pooled activations; with the
        weights and choices.
        """
        y, stats, residuals = self._run(p, x, expand_index, kernel_index, active, "train")
        return (y, stats), (p, x, residuals, expand_index, kernel_index, active)

    def train_backward(self, residuals, dy):
        """(d p, d x) of the training-mode block output for cotangent dy (`_backward`); for a skipped block, zero
        weight gradients and dy itself."""
        p, x, saved, e, k, active = residuals
        if active is None:
            return self._backward(p, x, saved, e, k, dy)
        skipped = lambda p, x, saved, e, k, dy: (jax.tree.map(lambda v: lax.full_like(v, 0), p), dy)
        return lax.cond(active, self._backward, skipped, p, x, saved, e, k, dy)

    @property
    def spec(self) -> tuple:
        """(in_channels, out_channels, stride, act, se): everything the block's functions read besides weights."""
        return self.in_channels, self.out_channels, self.stride, self.act, self.se

    def apply(self, p: dict, x, expand_index, kernel_index, active, mode: str):
        """The block on weights `p` (`arrays()`) at traced choice indices: (y, its 3 BN statistics or None).

        With `active` given, `lax.cond` skips the block (identity) when it lies beyond its stage's depth.

        In training the block has a hand-written backward (`jax.custom_vjp` of `train_forward` and
        `train_backward`): JAX cannot reverse the chunk loops (their trip count is traced), and its autodiff of the
        kernel switch and the skip cond would keep every branch's residuals, zero-filled for the branches not taken.

        Forward and backward run as jitted functions of the block's `spec`: blocks of equal spec (a stage's blocks
        after its first) are traced once, and XLA compiles their identical kernels once.
        """
        if mode != "train":
            return _jitted_run(self.spec, mode, p, x, expand_index, kernel_index, active)[:2]
        block = jax.custom_vjp(lambda *args: _jitted_train_forward(self.spec, *args)[0])
        block.defvjp(partial(_jitted_train_forward, self.spec),
                     lambda residuals, cotangents: (*_jitted_train_backward(self.spec, residuals, cotangents[0]),
                                                    None, None, None))
        return block(p, x, expand_index, kernel_index, active)

    def sort_channels(self, expand_stage: int = 0):
        """OFA's re_organize_middle_weights: order the expanded channels by L1 norm of their projection weights.

        With expand_stage > 0 the channels of the already-trained widths (largest first) stay in their groups.
        Expand conv, both BNs, the depthwise kernel and SE follow; SE's hidden units are then ordered by the L1
        norm of their expand weights.
        """
        importance = np.abs(np.asarray(self.project_kernel[...])).sum(axis=1)
        if expand_stage > 0:
            widths = sorted(self.mid_choices, reverse=True)
            right, base = len(importance), -len(widths) * 1e5
            for i in range(expand_stage + 1):
                left = widths[i]
                importance[left:right] += base
                base += 1e5
                right = left
        order = np.argsort(-importance, kind="stable")
        self.project_kernel[...] = self.project_kernel[...][order]
        self.expand_kernel[...] = self.expand_kernel[...][:, order]
        self.depthwise_kernel[...] = self.depthwise_kernel[...][:, :, order]
        self.expand_bn.permute(order)
        self.depthwise_bn.permute(order)
        if self.se:
            self.se_expand_kernel[...] = self.se_expand_kernel[...][:, order]
            self.se_expand_bias[...] = self.se_expand_bias[...][order]
            self.se_reduce_kernel[...] = self.se_reduce_kernel[...][order]
            se_order = np.argsort(-np.abs(np.asarray(self.se_expand_kernel[...])).sum(axis=1), kind="stable")
            self.se_expand_kernel[...] = self.se_expand_kernel[...][se_order]
            self.se_reduce_kernel[...] = self.se_reduce_kernel[...][:, se_order]
            self.se_reduce_bias[...] = self.se_reduce_bias[...][se_order]


@functools.lru_cache(maxsize=None)
def _template(spec: tuple) -> ElasticMBConv:
    """An abstract block (weights as shapes only) of `spec`, whose methods the jitted block functions call."""
    return nnx.eval_shape(lambda: ElasticMBConv(*spec, rngs=nnx.Rngs(0)))


@partial(jax.jit, static_argnums=(0, 1))
def _jitted_run(spec: tuple, mode: str, p, x, expand_index, kernel_index, active):
    return _template(spec)._run(p, x, expand_index, kernel_index, active, mode)


@partial(jax.jit, static_argnums=0)
def _jitted_train_forward(spec: tuple, p, x, expand_index, kernel_index, active):
    return _template(spec).train_forward(p, x, expand_index, kernel_index, active)


@partial(jax.jit, static_argnums=0)
def _jitted_train_backward(spec: tuple, residuals, dy):
    return _template(spec).train_backward(residuals, dy)

