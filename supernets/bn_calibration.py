"""BN calibration (OFA's reset_running_statistics): a subnet's running statistics from K training batches."""

from __future__ import annotations

from collections import Counter

import jax
import jax.numpy as jnp
from flax import nnx

TRACES = Counter()


@nnx.jit
def batch_statistics(model, x, arch):
    """The batch statistics `model.forward(x, arch, "calibrate")` returns (per BN: batch mean, biased variance).

    Normalises with batch statistics as training does; `arch` is traced, so every subnet shares one compilation
    per input shape (counted in TRACES["batch_statistics"]).
    """
    TRACES["batch_statistics"] += 1
    _, stats = model.forward(x, arch, "calibrate")
    return stats


def _floating(a) -> bool:
    return jnp.issubdtype(a.dtype, jnp.floating)


def calibrate_bn(model, arch, batches) -> int:
    """Sets the running mean and variance of every BN the subnet `arch` uses to the mean over `batches` of the
    batch means and batch variances (weighted by batch size), through `model.set_batch_statistics`; other BNs
    keep theirs.

    `model.forward(x, arch, "calibrate")` returns the batch statistics as any pytree: its floating-point leaves
    are averaged, other leaves (e.g. active channel counts) are taken as they are.
    `batches` yields input arrays (N, H, W, C) or (inputs, labels) pairs. Returns the number of batches used.
    """
    arch = jnp.asarray(arch, jnp.int32)
    dtype = jax.tree.leaves(nnx.state(model, nnx.Param))[0].dtype  # inputs in the parameters' precision
    sums, total, used = None, 0, 0
    for batch in batches:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        x = jnp.asarray(x, dtype)
        stats = batch_statistics(model, x, arch)
        n = x.shape[0]
        weighted = jax.tree.map(lambda a: a * n if _floating(a) else a, stats)
        sums = weighted if sums is None else jax.tree.map(lambda s, w: s + w if _floating(w) else w, sums, weighted)
        total, used = total + n, used + 1
    if used == 0:
        raise ValueError("calibrate_bn: no batches given")
    model.set_batch_statistics(arch, jax.tree.map(lambda s: s / total if _floating(s) else s, sums))
    return used
