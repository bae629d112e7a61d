"""The elastic MBConv block: its chunked forward and hand-written backward equal JAX's autodiff of the block on
statically sliced weights."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from search_spaces.ofa_mbv3 import EXPAND_CHOICES
from supernets.depthwise import depthwise_conv
from supernets.elastic import ElasticMBConv
from supernets.elastic_bn import ElasticBatchNorm
from supernets.kernel_transform import KERNEL_SIZES
from supernets.pointwise import pointwise
from supernets.static import ACTIVATIONS, hsigmoid, relu


def _perturbed_arrays(block, rng):
    """The block's arrays with every parameter (transforms and BN scales included) moved off its initial value."""
    return jax.tree.map(lambda a: a + 0.1 * jnp.asarray(rng.standard_normal(a.shape), a.dtype), block.arrays())


def _reference_forward(block, p, x, expand_index: int, kernel_index: int):
    """The training-mode block at static choices on statically sliced weights, in ops JAX differentiates."""
    w = block.sliced_weights(p, expand_index, KERNEL_SIZES[kernel_index])
    act = ACTIVATIONS[block.act]
    h, _ = ElasticBatchNorm.normalize(p["expand_bn"], pointwise(x, w["expand_kernel"]), w["mid"], "train")
    h = depthwise_conv(act(h), w["depthwise_kernel"], block.stride)
    h, _ = ElasticBatchNorm.normalize(p["depthwise_bn"], h, w["mid"], "train")
    h = act(h)
    if block.se:
        squeezed = relu(jnp.mean(h, axis=(1, 2)) @ w["se_reduce_kernel"] + w["se_reduce_bias"])
        h = h * hsigmoid(squeezed @ w["se_expand_kernel"] + w["se_expand_bias"])[:, None, None, :]
    y, _ = ElasticBatchNorm.normalize(p["project_bn"], pointwise(h, w["project_kernel"]), block.out_channels, "train")
    return y + x if block.residual else y


@pytest.mark.parametrize("stride, se, in_channels, out_channels", [(1, True, 16, 16), (2, False, 16, 24)])
def test_training_forward_and_backward_equal_the_statically_sliced_block_for_every_choice(stride, se, in_channels,
                                                                                        out_channels):
    """Every expand and kernel choice, a skipped residual block included: the output, and gradients of every
    parameter and the input against JAX's autodiff of the block on statically sliced weights; one compilation for all
    choices."""
    block = ElasticMBConv(in_channels, out_channels, stride, "hswish", se, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(1)
    p = _perturbed_arrays(block, rng)
    x = jnp.asarray(rng.standard_normal((4, 9, 9, in_channels)), jnp.float32)
    size = -(-9 // stride)
    cotangent = jnp.asarray(rng.standard_normal((4, size, size, out_channels)), jnp.float32)

    @jax.jit
    def ours(p, x, e, k, active):
        y, vjp = jax.vjp(lambda p, x: block.apply(p, x, e, k, active if block.residual else None, "train")[0], p, x)
        return y, vjp(cotangent)

    @partial(jax.jit, static_argnums=(2, 3))
    def reference(p, x, e, k):
        y, vjp = jax.vjp(lambda p, x: _reference_forward(block, p, x, e, k), p, x)
        return y, vjp(cotangent)

    for e in range(len(EXPAND_CHOICES)):
        for k in range(len(KERNEL_SIZES)):
            expected = {True: reference(p, x, e, k)}
            if block.residual:
                expected[False] = (x, (jax.tree.map(jnp.zeros_like, p), cotangent))
            for active, want in expected.items():
                got = ours(p, x, jnp.int32(e), jnp.int32(k), jnp.bool_(active))
                for (path, g), w in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
                    np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-5 * (float(np.abs(w).max()) + 1e-12),
                                               err_msg=f"expand {e} kernel {k} active {active} "
                                                       f"{jax.tree_util.keystr(path)}")
    assert ours._cache_size() == 1
