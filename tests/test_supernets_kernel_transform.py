"""Tests for supernets.kernel_transform: centre crops chained through OFA's transform matrices."""

import jax.numpy as jnp
import numpy as np
import pytest

from supernets.kernel_transform import KERNEL_SIZES, active_kernel, centre_crop


def identity_transforms() -> dict:
    """Transform matrices at initialisation (identity): {5: (25, 25), 3: (9, 9)}."""
    return {s: jnp.eye(s * s, dtype=jnp.float32) for s in KERNEL_SIZES[:-1]}


def _kernel(c=3):
    return jnp.asarray(np.random.default_rng(0).standard_normal((7, 7, c)), jnp.float32)


@pytest.mark.parametrize("size", [3, 5, 7])
def test_identity_transforms_give_the_centre_crop(size):
    kernel = _kernel()
    np.testing.assert_array_equal(active_kernel(kernel, size, identity_transforms()), centre_crop(kernel, size))


def test_three_by_three_goes_through_the_five_by_five_transform_first():
    kernel = _kernel()
    rng = np.random.default_rng(1)
    transforms = {5: jnp.asarray(rng.standard_normal((25, 25)), jnp.float32),
                  3: jnp.asarray(rng.standard_normal((9, 9)), jnp.float32)}
    k5 = np.einsum("ij,jc->ic", np.asarray(transforms[5]), np.asarray(kernel[1:6, 1:6]).reshape(25, -1))
    k3 = np.einsum("ij,jc->ic", np.asarray(transforms[3]), k5.reshape(5, 5, -1)[1:4, 1:4].reshape(9, -1))
    np.testing.assert_allclose(active_kernel(kernel, 5, transforms), k5.reshape(5, 5, -1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(active_kernel(kernel, 3, transforms), k3.reshape(3, 3, -1), rtol=1e-5, atol=1e-5)


def test_rejects_a_kernel_size_not_in_the_space():
    with pytest.raises(ValueError, match="size must be one of"):
        active_kernel(_kernel(), 4, identity_transforms())
