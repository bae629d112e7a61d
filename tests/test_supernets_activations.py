"""The elastic block's lax activations: values equal the static network's (jax.nn) activations, vjps equal JAX's
autodiff of them, and an unknown name is a clear error."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from supernets import static
from supernets.activations import activation_vjp

REFERENCES = {"relu": static.relu, "hswish": static.hswish, "hsigmoid": static.hsigmoid}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_values_and_vjp_equal_the_static_activations(name):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(-5, 5, (4, 256)), jnp.float32)
    dy = jnp.asarray(rng.standard_normal(x.shape), jnp.float32)
    y, vjp = activation_vjp(name, x)
    want, want_vjp = jax.vjp(REFERENCES[name], x)
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(vjp(dy), want_vjp(dy)[0], rtol=1e-6, atol=1e-6)


def test_unknown_activation_names_the_allowed_ones():
    with pytest.raises(ValueError, match="hsigmoid.*hswish.*relu.*'gelu'"):
        activation_vjp("gelu", jnp.zeros(3))
