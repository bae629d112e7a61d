"""Elastic batch norm: BN over the first c of its channels with running statistics at full width, and its
training-mode backward."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from supernets.static import BN_EPS

BN_MOMENTUM = 0.1


def channel_sum(x):
    """Sum over every axis but the last (channels)."""
    return lax.reduce(x, np.array(0, x.dtype), lax.add, tuple(range(x.ndim - 1)))


def _channel_mean(x):
    """Mean over every axis but the last (channels)."""
    return lax.div(channel_sum(x), np.array(x.size // x.shape[-1], x.dtype))


def _per_channel(v, x):
    """The (C,) vector v broadcast to x's shape (..., C)."""
    return lax.broadcast_in_dim(v, x.shape, (x.ndim - 1,))


def first_mask(size: int, count):
    """Boolean mask (size,) of the first `count` (traced) entries."""
    return lax.lt(lax.iota(np.int32, size), lax.broadcast(count, (size,)))


def _batch_moments(x):
    """(mean, x - mean, biased variance) of x (..., C) per channel."""
    mean = _channel_mean(x)
    centred = lax.sub(x, _per_channel(mean, x))
    return mean, centred, _channel_mean(lax.mul(centred, centred))


def _scale_shift(p: dict, c: int, centred, var):
    """(rsqrt(var + eps), that times the scale, y = centred * it + bias) over the first c channels of `p`."""
    rstd = lax.rsqrt(lax.add(var, np.array(BN_EPS, var.dtype)))
    gain = lax.mul(rstd, lax.slice_in_dim(p["scale"], 0, c))
    return rstd, gain, lax.add(lax.mul(centred, _per_channel(gain, centred)),
                               _per_channel(lax.slice_in_dim(p["bias"], 0, c), centred))


class ElasticBatchNorm(nnx.Module):
    """Batch norm over the first `c` of `channels` channels; running statistics stored at full width.

    `normalize` is pure: modes 'train' and 'calibrate' normalize with batch statistics and return them
    (train: unbiased variance, for the running update; calibrate: biased, OFA's reset_running_statistics),
    padded to full width with the active channel count; mode 'eval' uses the running statistics. `zero_scale`
    starts the scale at zero (the last BN of a residual block, OFA's `zero_last_gamma`).
    """

    def __init__(self, channels: int, zero_scale: bool = False):
        self.channels = channels
        self.scale = nnx.Param(jnp.full((channels,), 0.0 if zero_scale else 1.0, jnp.float32))
        self.bias = nnx.Param(jnp.zeros((channels,), jnp.float32))
        self.mean = nnx.BatchStat(jnp.zeros((channels,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((channels,), jnp.float32))

    def arrays(self) -> dict:
        return {"scale": self.scale[...], "bias": self.bias[...], "mean": self.mean[...], "var": self.var[...]}

    @staticmethod
    def normalize(p: dict, x, c: int, mode: str):
        """(y, statistics) of x (..., c): (x - mean) * (rsqrt(var + eps) * scale) + bias over its first c channels.

        Written with lax primitives: a jnp operator on a tracer traces a small jitted function, and the training
        step traces this for every BN of every block and its backward.
        """
        if mode == "eval":
            mean, var, stat = lax.slice_in_dim(p["mean"], 0, c), lax.slice_in_dim(p["var"], 0, c), None
            centred = lax.sub(x, _per_channel(mean, x))
        else:
            mean, centred, var = _batch_moments(x)
            n = x.size // c
            kept = lax.mul(var, np.array(n / max(n - 1, 1), var.dtype)) if mode == "train" else var
            width = p["scale"].shape[0]
            stat = (pad_axis(lax.stop_gradient(mean), 0, width), pad_axis(lax.stop_gradient(kept), 0, width),
                    np.int32(c))
        return _scale_shift(p, c, centred, var)[2], stat

    @staticmethod
    def empty_stat(p: dict):
        zeros = lax.full_like(p["mean"], 0)
        return zeros, zeros, np.int32(0)

    def update(self, stat, momentum: float = BN_MOMENTUM):
        """Running average (PyTorch momentum convention) over the channels the batch used."""
        mean, var, count = stat
        active = first_mask(self.channels, count)
        for running, batch in ((self.mean, mean), (self.var, var)):
            old = running.get_value()
            keep, take = np.array(1 - momentum, old.dtype), np.array(momentum, old.dtype)
            new = lax.add(lax.mul(old, keep), lax.mul(batch, take))
            running.set_value(lax.select(active, new, old))

    def set_statistics(self, mean, var, count):
        """Overwrite the running statistics of the first `count` channels."""
        active = first_mask(self.channels, count)
        for running, batch in ((self.mean, mean), (self.var, var)):
            running.set_value(lax.select(active, batch, running.get_value()))

    def permute(self, order):
        for v in (self.scale, self.bias, self.mean, self.var):
            v[...] = v[...][order]


def pad_axis(x, axis: int, size: int):
    """x zero-padded at the end of `axis` to `size`."""
    config = [(0, 0, 0)] * x.ndim
    config[axis] = (0, size - x.shape[axis], 0)
    return lax.pad(x, np.array(0, x.dtype), config)


def batch_norm_train(p: dict, x, c: int):
    """Training-mode `ElasticBatchNorm.normalize` of x (..., c) with its backward: (y, backward), where
    backward(dy) = (d p, dx), the batch statistics differentiated through and the running ones getting zeros."""
    _, centred, var = _batch_moments(x)
    rstd, gain, y = _scale_shift(p, c, centred, var)

    def backward(dy):
        n = x.size // c
        normalized = lax.mul(centred, _per_channel(rstd, centred))
        d_bias, d_scale = channel_sum(dy), channel_sum(lax.mul(dy, normalized))
        dx = lax.sub(lax.sub(dy, _per_channel(lax.div(d_bias, lax.full_like(d_bias, n)), dy)),
                     lax.mul(normalized, _per_channel(lax.div(d_scale, lax.full_like(d_scale, n)), dy)))
        dx = lax.mul(dx, _per_channel(gain, dx))
        width = p["scale"].shape[0]
        zeros = lax.full((width,), 0, x.dtype)
        return {"scale": pad_axis(d_scale, 0, width), "bias": pad_axis(d_bias, 0, width), "mean": zeros,
                "var": zeros}, dx

    return y, backward
