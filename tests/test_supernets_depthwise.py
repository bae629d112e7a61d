"""Tests for supernets.depthwise: forward and both gradients equal the lax grouped convolution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from supernets.depthwise import depthwise_conv, depthwise_conv_reference


def _assert_close(actual, expected):
    expected = np.asarray(expected)
    assert actual.shape == expected.shape
    scale = float(np.max(np.abs(expected)))
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=1e-5, atol=1e-5 * scale)


def _inputs(shape, k, stride, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((k, k, shape[3])), jnp.float32)
    out_shape = depthwise_conv_reference(x, kernel, stride).shape
    cotangent = jnp.asarray(rng.standard_normal(out_shape), jnp.float32)
    return x, kernel, cotangent


def _grads(conv, x, kernel, cotangent, stride):
    loss = lambda a, b: jnp.sum(conv(a, b, stride) * cotangent)
    return jax.jit(jax.grad(loss, argnums=(0, 1)))(x, kernel)


@pytest.mark.parametrize(
    "k, stride, hw",
    [(3, 1, (8, 9)), (3, 2, (7, 6)), (5, 1, (7, 6)), (5, 2, (8, 9)), (7, 1, (9, 7)), (7, 2, (8, 8)), (7, 2, (7, 7))],
)
def test_matches_lax_grouped_conv_forward_and_gradients(k, stride, hw):
    x, kernel, cotangent = _inputs((2, *hw, 5), k, stride)
    _assert_close(jax.jit(depthwise_conv, static_argnums=2)(x, kernel, stride), depthwise_conv_reference(x, kernel, stride))
    ours = _grads(depthwise_conv, x, kernel, cotangent, stride)
    reference = _grads(depthwise_conv_reference, x, kernel, cotangent, stride)
    _assert_close(ours[0], reference[0])
    _assert_close(ours[1], reference[1])


@pytest.mark.parametrize("k, stride", [(3, 1), (7, 2)])
def test_large_inputs_split_into_tiles_still_match(k, stride):
    x, kernel, cotangent = _inputs((2, 19, 13, 4), k, stride, seed=2)
    ours = _grads(depthwise_conv, x, kernel, cotangent, stride)
    reference = _grads(depthwise_conv_reference, x, kernel, cotangent, stride)
    _assert_close(ours[0], reference[0])
    _assert_close(ours[1], reference[1])


@pytest.mark.parametrize("stride", [1, 2])
def test_output_size_is_ceil_of_input_over_stride_like_pytorch(stride):
    x = jnp.ones((1, 11, 6, 3), jnp.float32)
    y = depthwise_conv(x, jnp.ones((7, 7, 3), jnp.float32), stride)
    assert y.shape == (1, -(-11 // stride), -(-6 // stride), 3)


def test_padding_is_zero_k_over_2_on_each_side():
    x = jnp.ones((1, 5, 5, 1), jnp.float32)
    y = depthwise_conv(x, jnp.ones((3, 3, 1), jnp.float32), 1)
    assert float(y[0, 0, 0, 0]) == 4.0
    assert float(y[0, 2, 2, 0]) == 9.0
    assert float(y[0, 0, 2, 0]) == 6.0


def test_kernel_larger_than_input_still_matches():
    x, kernel, cotangent = _inputs((1, 2, 3, 4), 7, 2, seed=1)
    _assert_close(depthwise_conv(x, kernel, 2), depthwise_conv_reference(x, kernel, 2))
    ours = _grads(depthwise_conv, x, kernel, cotangent, 2)
    reference = _grads(depthwise_conv_reference, x, kernel, cotangent, 2)
    _assert_close(ours[0], reference[0])
    _assert_close(ours[1], reference[1])


def test_second_call_with_same_shapes_does_not_retrace():
    traces = []

    @jax.jit
    def step(x, kernel):
        traces.append(1)
        return jax.grad(lambda a, b: jnp.sum(depthwise_conv(a, b, 2) ** 2), argnums=(0, 1))(x, kernel)

    x, kernel, _ = _inputs((1, 6, 6, 2), 3, 2)
    step(x, kernel)
    step(x + 1.0, kernel * 2.0)
    assert len(traces) == 1


@pytest.mark.parametrize(
    "x_shape, k_shape, stride",
    [((4, 4, 3), (3, 3, 3), 1), ((1, 4, 4, 3), (4, 4, 3), 1), ((1, 4, 4, 3), (3, 3, 2), 1), ((1, 4, 4, 3), (3, 3, 3), 3)],
)
def test_rejects_bad_shapes_and_strides(x_shape, k_shape, stride):
    with pytest.raises(ValueError):
        depthwise_conv(jnp.zeros(x_shape), jnp.zeros(k_shape), stride)
