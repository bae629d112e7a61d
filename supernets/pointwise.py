"""1x1 and small k x k convolutions as matmuls (NHWC), with the 1x1 convolution's hand-written cotangents."""

import jax
import jax.numpy as jnp
from jax import lax


def contract(a, b, a_axis: int, b_axis: int):
    """The 2-D product of a and b over a's axis `a_axis` and b's `b_axis` (lax: jnp.dot traces a jitted function)."""
    return lax.dot_general(a, b, (((a_axis,), (b_axis,)), ((), ())))


def _rows(x):
    """x (..., C) as the matrix (prod(...), C)."""
    return lax.reshape(x, (x.size // x.shape[-1], x.shape[-1]))


def pointwise(x, kernel):
    """1x1 convolution of x (..., C_in) with kernel (C_in, C_out), as one matmul."""
    return lax.reshape(contract(_rows(x), kernel, 1, 0), (*x.shape[:-1], kernel.shape[1]))


def pointwise_transposed(dy, kernel):
    """1x1 convolution of dy (..., C_out) with kernel.T: the input cotangent of `pointwise(x, kernel)`."""
    return lax.reshape(contract(_rows(dy), kernel, 1, 1), (*dy.shape[:-1], kernel.shape[0]))


def pointwise_kernel_grad(x, dy):
    """Gradient of the 1x1 convolution's kernel, `pointwise(x, kernel)`, for output cotangent dy."""
    return contract(_rows(x), _rows(dy), 0, 0)


def patch_conv(x, kernel, stride: int):
    """k x k convolution of x (N, H, W, C_in) with kernel (k, k, C_in, C_out), padding k // 2, as one matmul of
    the k * k shifted (strided) views stacked along channels. For the first conv, whose C_in is 3: inside the
    training step at res 64, XLA's CPU convolution took 39 ms for its weight gradient (profiled before this
    function replaced it)."""
    k, c = kernel.shape[0], x.shape[-1]
    return pointwise(patches(x, k, stride), kernel.reshape(k * k * c, kernel.shape[3]))


def patches(x, k: int, stride: int = 1):
    """(N, H', W', k * k * C): the k * k shifted (strided) views of x (N, H, W, C), padding k // 2, stacked along
    channels in the (kh, kw, C) order of an HWIO kernel."""
    p = k // 2
    _, h, w, _ = x.shape
    ho, wo = -(-h // stride), -(-w // stride)
    xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    views = [xp[:, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride, :]
             for i in range(k) for j in range(k)]
    return jnp.concatenate(views, axis=-1)


def xla_conv(x, kernel, stride: int = 1):
    """XLA's k x k convolution of x (N, H, W, C_in) with kernel (k, k, C_in, C_out), padding k // 2."""
    p = kernel.shape[0] // 2
    return lax.conv_general_dilated(x, kernel, (stride, stride), ((p, p), (p, p)),
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


@jax.custom_vjp
def conv_forward_grads(x, kernel):
    """`xla_conv(x, kernel)` (stride 1) whose gradients are themselves forward NHWC/HWIO convolutions (a 1x1
    kernel's is one matmul): the input gradient convolves the cotangent with the flipped kernel, the kernel
    gradient is a valid convolution with the images' channels as batch and the batch as features. Inside
    `lax.switch` on CPU, XLA's own gradient convolutions ran about ten times slower (3x3, 8 channels, 64 x 32 x 32
    images): the SPOS supernet runs every edge's operation in a switch."""
    return xla_conv(x, kernel)


def _conv_forward(x, kernel):
    return xla_conv(x, kernel), (x, kernel)


def _conv_backward(residuals, dy):
    x, kernel = residuals
    k = kernel.shape[0]
    dx = xla_conv(dy, jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2))
    if k == 1:
        return dx, pointwise_kernel_grad(x, dy).reshape(kernel.shape)
    p = k // 2
    images = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0))).transpose(3, 1, 2, 0)  # (C_in, H + 2p, W + 2p, N)
    dk = lax.conv_general_dilated(images, dy.transpose(1, 2, 0, 3), (1, 1), "VALID",
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))       # (C_in, k, k, C_out)
    return dx, dk.transpose(1, 2, 0, 3)


conv_forward_grads.defvjp(_conv_forward, _conv_backward)
