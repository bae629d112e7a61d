"""The elastic block's activations in lax primitives, each with its hand-written vjp.

The training step traces these in every elastic block's forward and backward: `jax.nn.hard_swish` and jnp's
operators each trace a small jitted function per call, and `jax.vjp` of them traces their linearisation.
Values equal `supernets.static`'s activations (which the extracted networks use, for ONNX's HardSwish); the
derivatives equal JAX's (zero where relu6 clips, `jax.nn.relu6`'s convention; zero at 0 for relu).
"""

from __future__ import annotations

from jax import lax


def _const(value, x):
    return lax.full_like(x, value)


def relu(x):
    return lax.max(x, _const(0, x))


def _relu6_shifted(x):
    """relu6(x + 3)."""
    return lax.clamp(_const(0, x), lax.add(x, _const(3, x)), _const(6, x))


def hsigmoid(x):
    """relu6(x + 3) / 6."""
    return lax.div(_relu6_shifted(x), _const(6, x))


def hswish(x):
    """x * relu6(x + 3) / 6."""
    return lax.mul(x, hsigmoid(x))


def _relu_slope(x):
    return lax.convert_element_type(lax.gt(x, _const(0, x)), x.dtype)


def _hsigmoid_slope(x):
    """1/6 where -3 < x < 3, else 0."""
    inside = lax.bitwise_and(lax.gt(x, _const(-3, x)), lax.lt(x, _const(3, x)))
    return lax.div(lax.convert_element_type(inside, x.dtype), _const(6, x))


def _hswish_slope(x):
    return lax.add(hsigmoid(x), lax.mul(x, _hsigmoid_slope(x)))


ACTIVATIONS = {"relu": relu, "hswish": hswish, "hsigmoid": hsigmoid}
_SLOPES = {"relu": _relu_slope, "hswish": _hswish_slope, "hsigmoid": _hsigmoid_slope}


def activation_vjp(name: str, x):
    """(activation `name` of x, vjp) where vjp(dy) = dy * its derivative at x."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name](x), lambda dy: lax.mul(dy, _SLOPES[name](x))

