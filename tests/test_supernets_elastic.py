"""Elastic layers: the MBConv block's hand-written training backward equals JAX's autodiff of the same forward; the
first conv as one matmul equals XLA's convolution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from search_spaces.ofa_mbv3 import EXPAND_CHOICES
from supernets.elastic import ElasticMBConv, patch_conv
from supernets.kernel_transform import KERNEL_SIZES


def _perturbed_arrays(block, rng):
    """The block's arrays with every parameter (transforms and BN scales included) moved off its initial value."""
    return jax.tree.map(lambda a: a + 0.1 * jnp.asarray(rng.standard_normal(a.shape), a.dtype), block.arrays())


@pytest.mark.parametrize("stride, se, in_channels, out_channels", [(1, True, 16, 16), (2, False, 16, 24)])
def test_training_backward_equals_autodiff_of_the_forward_for_every_choice(stride, se, in_channels, out_channels):
    """Every expand and kernel choice, a skipped residual block included: gradients of every parameter and the
    input; one compilation for all choices."""
    block = ElasticMBConv(in_channels, out_channels, stride, "hswish", se, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(1)
    p = _perturbed_arrays(block, rng)
    x = jnp.asarray(rng.standard_normal((4, 9, 9, in_channels)), jnp.float32)
    size = -(-9 // stride)
    cotangent = jnp.asarray(rng.standard_normal((4, size, size, out_channels)), jnp.float32)

    def grads_of(fn):
        return jax.jit(jax.grad(lambda p, x, e, k, a: jnp.sum(fn(p, x, e, k, a)[0] * cotangent), argnums=(0, 1)))

    def autodiff_forward(p, x, e, k, active):
        if block.residual:
            return jax.lax.cond(active, lambda p, x: block._forward(p, x, e, k, "train"),
                                lambda p, x: block._skip(p, x, "train"), p, x)
        return block._forward(p, x, e, k, "train")

    ours = grads_of(lambda p, x, e, k, a: block.apply(p, x, e, k, a if block.residual else None, "train"))
    autodiff = grads_of(autodiff_forward)
    for e in range(len(EXPAND_CHOICES)):
        for k in range(len(KERNEL_SIZES)):
            for active in (True, False) if block.residual else (True,):
                args = (p, x, jnp.int32(e), jnp.int32(k), jnp.bool_(active))
                got, want = ours(*args), autodiff(*args)
                for (path, g), w in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
                    np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-5 * (float(np.abs(w).max()) + 1e-12),
                                               err_msg=f"expand {e} kernel {k} active {active} "
                                                       f"{jax.tree_util.keystr(path)}")
    assert ours._cache_size() == 1


@pytest.mark.parametrize("stride, height, width", [(2, 32, 32), (2, 15, 16), (1, 9, 8)])
def test_patch_conv_equals_lax_convolution(stride, height, width):
    """Output and weight gradient, odd and even sizes (PyTorch-style padding k // 2)."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, height, width, 3)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((3, 3, 3, 8)), jnp.float32)

    def reference(kernel):
        return lax.conv_general_dilated(x, kernel, (stride, stride), ((1, 1), (1, 1)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

    np.testing.assert_allclose(patch_conv(x, kernel, stride), reference(kernel), atol=1e-5)
    weight = jnp.asarray(rng.standard_normal(reference(kernel).shape), jnp.float32)
    grad, grad_reference = (jax.grad(lambda k: jnp.sum(fn(k) * weight))(kernel)
                            for fn in (lambda k: patch_conv(x, k, stride), reference))
    np.testing.assert_allclose(grad, grad_reference, rtol=1e-4, atol=1e-4)
