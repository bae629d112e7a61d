"""BN calibration (OFA's reset_running_statistics): a subnet's running statistics from K training batches."""

from __future__ import annotations

from collections import Counter

import jax.numpy as jnp
from flax import nnx

TRACES = Counter()


@nnx.jit
def batch_statistics(model, x, arch):
    """Per BN of `model.batch_norms()`: (batch mean, biased batch variance, active channels), padded to full width.

    Normalises with batch statistics as training does; `arch` is traced, so every subnet shares one compilation
    per input shape (counted in TRACES["batch_statistics"]).
    """
    TRACES["batch_statistics"] += 1
    _, stats = model.forward(x, arch, "calibrate")
    return stats


def calibrate_bn(model, arch, batches) -> int:
    """Sets the running mean and variance of every BN the subnet `arch` uses to the mean over `batches` of the
    batch means and batch variances (weighted by batch size); other channels and skipped blocks keep theirs.

    `batches` yields input arrays (N, H, W, C) or (inputs, labels) pairs. Returns the number of batches used.
    """
    arch = jnp.asarray(arch, jnp.int32)
    dtype = model.first_conv_kernel[...].dtype  # inputs in the parameters' precision
    sums, total, used = None, 0, 0
    for batch in batches:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        x = jnp.asarray(x, dtype)
        stats = batch_statistics(model, x, arch)
        n = x.shape[0]
        weighted = [(mean * n, var * n, count) for mean, var, count in stats]
        sums = weighted if sums is None else [(a + m, b + v, c) for (a, b, c), (m, v, _) in zip(sums, weighted)]
        total, used = total + n, used + 1
    if used == 0:
        raise ValueError("calibrate_bn: no batches given")
    for bn, (mean, var, count) in zip(model.batch_norms(), sums):
        bn.set_statistics(mean / total, var / total, count)
    return used
