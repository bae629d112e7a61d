"""Elastic layers with weights at their largest shape: the elastic MBConv block (kernel, expand) and its convs."""

from __future__ import annotations

import functools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from search_spaces.ofa_mbv3 import EXPAND_CHOICES, make_divisible
from supernets.activations import ACTIVATIONS, activation_vjp
from supernets.depthwise import depthwise_conv, depthwise_conv_vjp
from supernets.elastic_bn import ElasticBatchNorm, batch_norm_train, channel_sum, pad_axis
from supernets.kernel_transform import KERNEL_SIZES, active_kernel


def he_fout(rngs: nnx.Rngs, shape, fan_out: int):
    """OFA's 'he_fout' initialisation: normal with std sqrt(2 / (k * k * out_channels))."""
    return jax.random.normal(rngs.params(), shape, jnp.float32) * np.sqrt(2.0 / fan_out)


def _contract(a, b, a_axis: int, b_axis: int):
    """The 2-D product of a and b over a's axis `a_axis` and b's `b_axis` (lax: jnp.dot traces a jitted function)."""
    return lax.dot_general(a, b, (((a_axis,), (b_axis,)), ((), ())))


def _rows(x):
    """x (..., C) as the matrix (prod(...), C)."""
    return lax.reshape(x, (x.size // x.shape[-1], x.shape[-1]))


def pointwise(x, kernel):
    """1x1 convolution of x (..., C_in) with kernel (C_in, C_out), as one matmul."""
    return lax.reshape(_contract(_rows(x), kernel, 1, 0), (*x.shape[:-1], kernel.shape[1]))


def _pointwise_transposed(dy, kernel):
    """1x1 convolution of dy (..., C_out) with kernel.T: the input cotangent of `pointwise(x, kernel)`."""
    return lax.reshape(_contract(_rows(dy), kernel, 1, 1), (*dy.shape[:-1], kernel.shape[0]))


def _weight_grad(x, dy):
    """Gradient of the 1x1 convolution's kernel, `pointwise(x, kernel)`, for output cotangent dy."""
    return _contract(_rows(x), _rows(dy), 0, 0)


def _squeeze_excite(w: dict, a):
    """(a (N, H, W, C) times its SE gate, backward), backward(d out) = (d SE weights, da). The gate is
    hsigmoid(relu(mean over H, W of a @ reduce + b) @ expand + b), per image and channel."""
    pixels = a.shape[1] * a.shape[2]
    pooled = _divided(_spatial_sum(a), pixels)
    squeezed, squeeze_vjp = activation_vjp("relu", _affine(pooled, w["se_reduce_kernel"], w["se_reduce_bias"]))
    gate, gate_vjp = activation_vjp("hsigmoid", _affine(squeezed, w["se_expand_kernel"], w["se_expand_bias"]))
    gate_map = lax.broadcast_in_dim(gate, a.shape, (0, 3))

    def backward(d_out):
        d_gate = gate_vjp(_spatial_sum(lax.mul(d_out, a)))
        d_squeezed = squeeze_vjp(_contract(d_gate, w["se_expand_kernel"], 1, 1))
        d_pooled = _divided(_contract(d_squeezed, w["se_reduce_kernel"], 1, 1), pixels)
        grads = {"se_reduce_kernel": _weight_grad(pooled, d_squeezed), "se_reduce_bias": channel_sum(d_squeezed),
                 "se_expand_kernel": _weight_grad(squeezed, d_gate), "se_expand_bias": channel_sum(d_gate)}
        return grads, lax.add(lax.mul(d_out, gate_map), lax.broadcast_in_dim(d_pooled, a.shape, (0, 3)))

    return lax.mul(a, gate_map), backward


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
    y = _contract(x, kernel, 1, 0)
    return lax.add(y, lax.broadcast_in_dim(bias, y.shape, (1,)))


def patch_conv(x, kernel, stride: int):
    """k x k convolution of x (N, H, W, C_in) with kernel (k, k, C_in, C_out), padding k // 2, as one matmul of
    the k * k shifted (strided) views stacked along channels. For the first conv, whose C_in is 3: inside the
    training step at res 64, XLA's CPU convolution took 39 ms for its weight gradient (README, Known limits)."""
    k, p = kernel.shape[0], kernel.shape[0] // 2
    _, h, w, c = x.shape
    ho, wo = -(-h // stride), -(-w // stride)
    xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    views = [xp[:, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride, :]
             for i in range(k) for j in range(k)]
    return pointwise(jnp.concatenate(views, axis=-1), kernel.reshape(k * k * c, kernel.shape[3]))


class ElasticMBConv(nnx.Module):
    """MBConv block of OFA's MobileNetV3 with elastic kernel (3, 5, 7) and expand ratio (3, 4, 6).

    A smaller subnet computes less: the 1x1 convs run on static channel slices chosen by `lax.switch`, and the
    depthwise conv on the kernel size chosen the same way; see `apply`.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, act: str, se: bool, *, rngs: nnx.Rngs):
        self.in_channels, self.out_channels, self.stride, self.act, self.se = in_channels, out_channels, stride, act, se
        self.residual = stride == 1 and in_channels == out_channels
        self.mid_choices = tuple(make_divisible(round(in_channels * e), 8) for e in EXPAND_CHOICES)
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

    def _expand(self, p: dict, mode: str, expand_index: int, x):
        """1x1 expand, BN, activation on the first c channels; zero-padded to full width for the depthwise."""
        c = self.mid_choices[expand_index]
        h, stat = ElasticBatchNorm.normalize(p["expand_bn"], pointwise(x, _first(p["expand_kernel"], c, 1)), c, mode)
        return pad_axis(ACTIVATIONS[self.act](h), 3, p["expand_kernel"].shape[1]), stat

    @staticmethod
    def _active_depthwise_kernel(p: dict, kernel: int):
        """The block's (kernel, kernel, mid) depthwise kernel, OFA's transforms applied (`p` needs only the
        depthwise kernel and the transforms)."""
        return active_kernel(p["depthwise_kernel"], kernel, {5: p["transform_5"], 3: p["transform_3"]})

    def _depthwise(self, p: dict, kernel: int, h):
        return depthwise_conv(h, self._active_depthwise_kernel(p, kernel), self.stride)

    def _project(self, p: dict, mode: str, expand_index: int, h, x):
        """BN, activation, SE on the first c depthwise channels, then 1x1 projection, BN and shortcut."""
        w = self.sliced_weights(p, expand_index, KERNEL_SIZES[-1])
        c = w["mid"]
        h, s_depthwise = ElasticBatchNorm.normalize(p["depthwise_bn"], _first(h, c, 3), c, mode)
        h = ACTIVATIONS[self.act](h)
        if self.se:
            h = _squeeze_excite(w, h)[0]
        y, s_project = ElasticBatchNorm.normalize(p["project_bn"], pointwise(h, w["project_kernel"]),
                                                  self.out_channels, mode)
        if self.residual:
            y = lax.add(y, x)
        return y, (s_depthwise, s_project)

    def _forward(self, p: dict, x, expand_index, kernel_index, mode: str):
        """The block at traced choice indices: (y, its 3 BN statistics or None in eval mode, in train mode the
        (expanded, depthwise) activations the backward reuses, else None).

        Two `lax.switch`es over the expand choice slice the 1x1 convs (static shapes per branch); the depthwise
        runs at full width (padded channels stay zero) under a switch over the kernel size.
        """
        expands = range(len(EXPAND_CHOICES))
        h1, s_expand = lax.switch(expand_index, [partial(self._expand, p, mode, e) for e in expands], x)
        h2 = lax.switch(kernel_index, [partial(self._depthwise, p, k) for k in KERNEL_SIZES], h1)
        y, (s_depthwise, s_project) = lax.switch(
            expand_index, [partial(self._project, p, mode, e) for e in expands], h2, x)
        stats = None if mode == "eval" else (s_expand, s_depthwise, s_project)
        return y, stats, ((h1, h2) if mode == "train" else None)

    def _skip(self, p: dict, x, mode: str):
        """A block beyond its stage's depth (a stride-1 residual block): the identity, empty statistics and, in train
        mode, zero activations in place of the expanded and depthwise ones."""
        names = ("expand_bn", "depthwise_bn", "project_bn")
        stats = None if mode == "eval" else tuple(ElasticBatchNorm.empty_stat(p[n]) for n in names)
        if mode != "train":
            return x, stats, None
        zeros = lax.full((*x.shape[:3], p["expand_kernel"].shape[1]), 0, x.dtype)
        return x, stats, (zeros, zeros)

    def _expand_backward(self, p: dict, expand_index: int, x, dh):
        """(d expand weights, dx) for cotangent dh (full width) of `_expand`'s output, recomputed from x."""
        c, width = self.mid_choices[expand_index], p["expand_kernel"].shape[1]
        kernel = _first(p["expand_kernel"], c, 1)
        z, bn_backward = batch_norm_train(p["expand_bn"], pointwise(x, kernel), c)
        d_bn, du = bn_backward(activation_vjp(self.act, z)[1](_first(dh, c, 3)))
        d_kernel = pad_axis(_weight_grad(x, du), 1, width)
        return {"expand_kernel": d_kernel, "expand_bn": d_bn}, _pointwise_transposed(du, kernel)

    def _project_backward(self, p: dict, expand_index: int, h, dy):
        """(d projection, depthwise BN and SE weights, dh) for cotangent dy of `_project`'s output (shortcut
        excluded), recomputed from the depthwise output h (full width)."""
        w = self.sliced_weights(p, expand_index, KERNEL_SIZES[-1])
        c, width = w["mid"], h.shape[3]
        z, depthwise_bn_backward = batch_norm_train(p["depthwise_bn"], _first(h, c, 3), c)
        a, act_vjp = activation_vjp(self.act, z)
        scaled, se_backward = _squeeze_excite(w, a) if self.se else (a, None)
        _, project_bn_backward = batch_norm_train(p["project_bn"], pointwise(scaled, w["project_kernel"]),
                                                  self.out_channels)
        d_project_bn, du = project_bn_backward(dy)
        grads = {"project_kernel": pad_axis(_weight_grad(scaled, du), 0, width), "project_bn": d_project_bn}
        da = _pointwise_transposed(du, w["project_kernel"])
        if self.se:
            d_se, da = se_backward(da)
            r_width = p["se_reduce_kernel"].shape[1]
            grads.update(se_reduce_kernel=pad_axis(pad_axis(d_se["se_reduce_kernel"], 0, width), 1, r_width),
                         se_reduce_bias=pad_axis(d_se["se_reduce_bias"], 0, r_width),
                         se_expand_kernel=pad_axis(pad_axis(d_se["se_expand_kernel"], 0, r_width), 1, width),
                         se_expand_bias=pad_axis(d_se["se_expand_bias"], 0, width))
        d_depthwise_bn, dh = depthwise_bn_backward(act_vjp(da))
        grads["depthwise_bn"] = d_depthwise_bn
        return grads, pad_axis(dh, 3, width)

    def _backward(self, p: dict, x, h1, h2, expand_index, kernel_index, dy):
        """(d p, d x) of the training-mode block output for cotangent dy, given the block's input x and its
        expanded (h1) and depthwise (h2) activations from the forward: dy pulled back through projection, depthwise
        and expansion, one `lax.switch` each over static-shape branches. Projection and expansion are
        differentiated by hand (`_project_backward`, `_expand_backward`): JAX's linearisation of them was half the
        training step's trace. BN running statistics get no gradient."""
        expands = range(len(EXPAND_CHOICES))

        def depthwise_vjp(k, h, dh):
            kernel, kernel_vjp = jax.vjp(lambda sub: self._active_depthwise_kernel(sub, k),
                                         {n: p[n] for n in ("depthwise_kernel", "transform_5", "transform_3")})
            dh_in, d_kernel = depthwise_conv_vjp(h, kernel, self.stride, dh)
            return kernel_vjp(d_kernel)[0], dh_in

        d_project, dh2 = lax.switch(expand_index, [partial(self._project_backward, p, e) for e in expands], h2, dy)
        d_depthwise, dh1 = lax.switch(kernel_index, [partial(depthwise_vjp, k) for k in KERNEL_SIZES], h1, dh2)
        d_expand, dx = lax.switch(expand_index, [partial(self._expand_backward, p, e) for e in expands], x, dh1)
        return {**d_expand, **d_depthwise, **d_project}, (dx + dy if self.residual else dx)

    def _run(self, p: dict, x, expand_index, kernel_index, active, mode: str):
        """`_forward`, or with `active` given, `lax.cond` between it and `_skip` (a block beyond its stage's depth)."""
        if active is None:
            return self._forward(p, x, expand_index, kernel_index, mode)
        return lax.cond(active, lambda p, x, e, k: self._forward(p, x, e, k, mode),
                        lambda p, x, e, k: self._skip(p, x, mode), p, x, expand_index, kernel_index)

    def train_forward(self, p: dict, x, expand_index, kernel_index, active):
        """The training-mode block: ((y, its 3 BN statistics), residuals for `train_backward`).

        The residuals are the block's input and its expanded and depthwise activations (at the largest width, zero
        beyond the active one), with the weights and choices.
        """
        y, stats, (h1, h2) = self._run(p, x, expand_index, kernel_index, active, "train")
        return (y, stats), (p, x, h1, h2, expand_index, kernel_index, active)

    def train_backward(self, residuals, dy):
        """(d p, d x) of the training-mode block output for cotangent dy: the vjps of the branch the forward took
        (`_backward`); for a skipped block, zero weight gradients and dy itself."""
        p, x, h1, h2, e, k, active = residuals
        if active is None:
            return self._backward(p, x, h1, h2, e, k, dy)
        skipped = lambda p, x, h1, h2, e, k, dy: (jax.tree.map(lambda v: lax.full_like(v, 0), p), dy)
        return lax.cond(active, self._backward, skipped, p, x, h1, h2, e, k, dy)

    @property
    def spec(self) -> tuple:
        """(in_channels, out_channels, stride, act, se): everything the block's functions read besides weights."""
        return self.in_channels, self.out_channels, self.stride, self.act, self.se

    def apply(self, p: dict, x, expand_index, kernel_index, active, mode: str):
        """The block on weights `p` (`arrays()`) at traced choice indices: (y, its 3 BN statistics or None).

        With `active` given, `lax.cond` skips the block (identity) when it lies beyond its stage's depth.

        In training the block has a hand-written backward (`jax.custom_vjp` of `train_forward` and
        `train_backward`). JAX's own autodiff of a switch or cond keeps the residuals of every branch, zero-filled
        for the branches not taken; and tracing that autodiff (or `jax.checkpoint` around it) took most of the
        compile.

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

