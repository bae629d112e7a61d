"""Fast depthwise 2-D convolution (NHWC, PyTorch-style padding k//2) with its own VJP, and the lax reference.

XLA's CPU grouped convolution (feature_group_count=C) is 10-50x slower than a sum of shifted products, which XLA
turns into one vectorized loop fusion. Forward and input gradient are such sums (stride 2: over the four
polyphase components, so no product is wasted); the kernel gradient avoids XLA's reductions (scalar chains here)
by making the k x k taps the output elements of the fusion. Known hazard: a program whose only use of the output
is a single reduction (e.g. `jnp.sum(depthwise_conv(...))`) gets the products fused into that reduction and runs
slowly; a network's BatchNorm (several consumers) does not.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def _check(x, kernel, stride):
    if x.ndim != 4:
        raise ValueError(f"depthwise_conv: x must be (N, H, W, C), got shape {x.shape}")
    if kernel.ndim != 3 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
        raise ValueError(f"depthwise_conv: kernel must be (k, k, C) with k odd, got shape {kernel.shape}")
    if kernel.shape[2] != x.shape[3]:
        raise ValueError(f"depthwise_conv: kernel has {kernel.shape[2]} channels, x has {x.shape[3]}")
    if stride not in (1, 2):
        raise ValueError(f"depthwise_conv: stride must be the Python int 1 or 2, got {stride!r}")


def _out_size(size, stride):
    return -(-size // stride)


def depthwise_conv_reference(x, kernel, stride: int):
    """The same layer as one lax grouped convolution (what an extracted or exported network uses)."""
    _check(x, kernel, stride)
    p = kernel.shape[0] // 2
    return lax.conv_general_dilated(
        x,
        kernel[:, :, None, :],
        window_strides=(stride, stride),
        padding=((p, p), (p, p)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=x.shape[3],
    )


def _pad_hw(x, top, bottom, left, right):
    return lax.pad(x, np.zeros((), x.dtype), ((0, 0, 0), (top, bottom, 0), (left, right, 0), (0, 0, 0)))


def _window(x, top, left, height, width, stride=1):
    """x[:, top : top + stride * (height - 1) + 1 : stride, left : ... : stride, :] as one lax.slice."""
    n, _, _, c = x.shape
    return lax.slice(x, (0, top, left, 0), (n, top + stride * (height - 1) + 1, left + stride * (width - 1) + 1, c),
                     (1, stride, stride, 1))


def _taps(kernel, start, stride=2):
    """kernel[start[0]::stride, start[1]::stride] of a (k, k, C) kernel."""
    return lax.slice(kernel, (*start, 0), kernel.shape, (stride, stride, 1))


def _scaled(view, kernel, i, j):
    """view * kernel[i, j], the tap broadcast over the view's batch and spatial axes."""
    tap = lax.slice(kernel, (i, j, 0), (i + 1, j + 1, kernel.shape[2]))
    return lax.mul(view, lax.broadcast_in_dim(tap, view.shape, (1, 2, 3)))


def _phases(xp):
    """The four polyphase components of xp, [a][b] = xp[:, a::2, b::2], after padding H and W to even sizes."""
    xp = _pad_hw(xp, 0, xp.shape[1] % 2, 0, xp.shape[2] % 2)
    h, w = xp.shape[1] // 2, xp.shape[2] // 2
    return [[_window(xp, a, b, h, w, 2) for b in (0, 1)] for a in (0, 1)]


def _tree_sum(terms):
    """Sum of a list of arrays as a balanced tree of adds (short dependency chains inside one fusion)."""
    while len(terms) > 1:
        terms = [lax.add(terms[i], terms[i + 1]) if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
    return terms[0]


def _correlate_valid(src, kernel, out_h, out_w):
    """y[n, o, q, c] = sum_ij src[n, o + i, q + j, c] * kernel[i, j, c], cropped to (out_h, out_w).

    Written with lax primitives: jnp's operators and indexing each trace a small jitted function, and this loop
    runs k * k times per layer and kernel size, which made it a fifth of the training step's trace time.
    """
    kh, kw, _ = kernel.shape
    acc = None
    for i in range(kh):
        for j in range(kw):
            term = _scaled(_window(src, i, j, out_h, out_w), kernel, i, j)
            acc = term if acc is None else lax.add(acc, term)
    return acc


def _forward(x, kernel, stride):
    k = kernel.shape[0]
    p = k // 2
    n, h, w, c = x.shape
    xp = _pad_hw(x, p, p, p, p)
    if stride == 1:
        return _correlate_valid(xp, kernel, h, w)
    ho, wo = _out_size(h, 2), _out_size(w, 2)
    ph = _phases(xp)
    acc = None
    for a in (0, 1):
        for b in (0, 1):
            term = _correlate_valid(ph[a][b], _taps(kernel, (a, b)), ho, wo)
            acc = term if acc is None else lax.add(acc, term)
    return acc


def _input_grad(dy, kernel, stride, h, w):
    k = kernel.shape[0]
    p = k // 2
    if stride == 1:
        return _correlate_valid(_pad_hw(dy, p, p, p, p), lax.rev(kernel, (0, 1)), h, w)
    ho, wo = dy.shape[1], dy.shape[2]
    mh, mw = _out_size(h + 2 * p, 2), _out_size(w + 2 * p, 2)
    rows = []
    for a in (0, 1):
        cols = []
        for b in (0, 1):
            sub = lax.rev(_taps(kernel, (a, b)), (0, 1))
            ta, tb = sub.shape[0], sub.shape[1]
            dyp = _pad_hw(dy, ta - 1, mh - ho, tb - 1, mw - wo)
            cols.append(_correlate_valid(dyp, sub, mh, mw))
        rows.append(jnp.stack(cols, axis=3))
    dxp = jnp.stack(rows, axis=2).reshape(dy.shape[0], 2 * mh, 2 * mw, dy.shape[3])
    return _window(dxp, p, p, h, w)


def _tile_size(size):
    """Output rows (or columns) per loop step of the kernel gradient: all of them when few, else 4.

    4 x 4 tiles give 16 window terms per step; with fewer, XLA fuses the loop's dynamic slices into the fusion
    and its indexing stops vectorizing (2 x 2 tiles measured 7x slower).
    """
    return size if size <= 8 else 4


def _kernel_grad(x, dy, k, stride):
    """dk[i, j, c] = sum_{n,o,q} xp[n, s*o + i, s*q + j, c] * dy[n, o, q, c], xp = x zero-padded by k//2.

    The output grid of dy is cut into tiles; for each tile one loop fusion adds, per image, the k x k windows of
    xp weighted by the tile's dy pixels (taps are output elements, so nothing goes through XLA's reduction loops,
    which run as scalar chains here); a matrix-vector product with ones then sums the images.
    """
    n, ho, wo, c = dy.shape
    p = k // 2
    to, tq = _tile_size(ho), _tile_size(wo)
    nto, ntq = -(-ho // to), -(-wo // tq)
    dy = _pad_hw(dy, 0, nto * to - ho, 0, ntq * tq - wo)
    win_h, win_w = stride * (to - 1) + k, stride * (tq - 1) + k
    need_h, need_w = stride * (nto - 1) * to + win_h, stride * (ntq - 1) * tq + win_w
    xp = _pad_hw(x, p, max(p, need_h - x.shape[1] - p), p, max(p, need_w - x.shape[2] - p))

    def tile(o0, q0):
        ds = lax.dynamic_slice(dy, (0, o0, q0, 0), (n, to, tq, c))
        xs = lax.dynamic_slice(xp, (0, stride * o0, stride * q0, 0), (n, win_h, win_w, c))
        terms = [
            lax.mul(_window(xs, stride * u, stride * v, k, k),
                    lax.broadcast_in_dim(_window(ds, u, v, 1, 1), (n, k, k, c), (0, 1, 2, 3)))
            for u in range(to)
            for v in range(tq)
        ]
        return _tree_sum(terms)

    if nto * ntq == 1:
        per_image = tile(0, 0)
    else:
        body = lambda t, acc: lax.add(acc, tile((t // ntq) * to, (t % ntq) * tq))
        per_image = lax.fori_loop(0, nto * ntq, body, jnp.zeros((n, k, k, c), dy.dtype))
    return (jnp.ones((1, n), dy.dtype) @ per_image.reshape(n, -1)).reshape(k, k, c)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _depthwise_conv(x, kernel, stride):
    return _forward(x, kernel, stride)


def _depthwise_conv_fwd(x, kernel, stride):
    return _forward(x, kernel, stride), (x, kernel)


def _depthwise_conv_bwd(stride, residuals, dy):
    x, kernel = residuals
    dx = _input_grad(dy, kernel, stride, x.shape[1], x.shape[2])
    dk = _kernel_grad(x, dy, kernel.shape[0], stride)
    return dx.astype(x.dtype), dk.astype(kernel.dtype)


_depthwise_conv.defvjp(_depthwise_conv_fwd, _depthwise_conv_bwd)


def depthwise_conv_vjp(x, kernel, stride: int, dy):
    """(dx, dkernel) of `depthwise_conv(x, kernel, stride)` for cotangent dy, without tracing the forward."""
    _check(x, kernel, stride)
    return _depthwise_conv_bwd(stride, (x, kernel), dy)


def depthwise_conv(x, kernel, stride: int):
    """Depthwise conv of x (N, H, W, C) with kernel (k, k, C), k odd, padding k//2, stride 1 or 2 (static).

    Output (N, ceil(H / stride), ceil(W / stride), C), equal to `depthwise_conv_reference`; jit-able and
    differentiable in x and kernel through a custom VJP built from shifted products.
    """
    _check(x, kernel, stride)
    return _depthwise_conv(x, kernel, stride)
