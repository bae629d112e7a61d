"""Convolutions as matmuls: the first conv equals XLA's convolution; the 1x1 conv's hand-written cotangents equal
JAX's autodiff."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from supernets.pointwise import patch_conv, pointwise, pointwise_kernel_grad, pointwise_transposed


def test_pointwise_cotangents_equal_autodiff():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 5, 3, 8)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((8, 6)), jnp.float32)
    dy = jnp.asarray(rng.standard_normal((2, 5, 3, 6)), jnp.float32)
    dx, d_kernel = jax.vjp(pointwise, x, kernel)[1](dy)
    np.testing.assert_allclose(pointwise_transposed(dy, kernel), dx, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pointwise_kernel_grad(x, dy), d_kernel, rtol=1e-5, atol=1e-5)


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
