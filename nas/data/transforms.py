"""Array transforms on NHWC batches: bilinear/nearest resize, random crop + flip, per-channel statistics."""

from __future__ import annotations

import numpy as np

from search_spaces.errors import UserInputError

RESIZE_METHODS = ("linear", "nearest")


def _size_pair(size) -> tuple[int, int]:
    pair = (size, size) if np.isscalar(size) else tuple(size)
    if len(pair) != 2 or any(int(s) != s or s < 1 for s in pair):
        raise UserInputError(f"resolution {size!r} is invalid: expected a positive int or a (height, width) pair")
    return int(pair[0]), int(pair[1])


def _linear_weights(in_size: int, out_size: int) -> np.ndarray:
    """(out, in) weights of antialiased linear interpolation, the same as jax.image.resize(method='linear')."""
    inv_scale = in_size / out_size
    kernel_scale = max(inv_scale, 1.0)
    sample = (np.arange(out_size) + 0.5) * inv_scale - 0.5
    weights = np.maximum(0.0, 1.0 - np.abs(sample[:, None] - np.arange(in_size)[None, :]) / kernel_scale)
    return weights / weights.sum(axis=1, keepdims=True)


def _nearest_index(in_size: int, out_size: int) -> np.ndarray:
    return np.minimum(((np.arange(out_size) + 0.5) * in_size / out_size).astype(np.int64), in_size - 1)


def resize(images: np.ndarray, size, method: str = "linear") -> np.ndarray:
    """Resize a batch, (N, H, W, C) images or (N, H, W) maps, to `size` (int or (h, w)).

    `linear` is antialiased bilinear (the same weights as jax.image.resize(method="linear")) and returns float32;
    `nearest` keeps the dtype and is meant for masks and depth maps.
    """
    if method not in RESIZE_METHODS:
        raise UserInputError(f"resize method {method!r} is unknown: expected one of {RESIZE_METHODS}")
    out_h, out_w = _size_pair(size)
    batch = np.asarray(images)
    if batch.ndim not in (3, 4):
        raise UserInputError(f"resize expects (N, H, W, C) or (N, H, W) arrays, got shape {batch.shape}")
    in_h, in_w = batch.shape[1], batch.shape[2]
    if (in_h, in_w) == (out_h, out_w):
        out = batch if method == "nearest" else batch.astype(np.float32, copy=False)
    elif method == "nearest":
        out = batch[:, _nearest_index(in_h, out_h)][:, :, _nearest_index(in_w, out_w)]
    else:
        wy = _linear_weights(in_h, out_h).astype(np.float32)
        wx = _linear_weights(in_w, out_w).astype(np.float32)
        spec = "yh,nhwc,xw->nyxc" if batch.ndim == 4 else "yh,nhw,xw->nyx"
        out = np.einsum(spec, wy, batch.astype(np.float32, copy=False), wx, optimize=True)
    return out


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (float32, shape (C,)) of an NHWC array; std is floored at 1e-3."""
    mean = images.mean(axis=(0, 1, 2), dtype=np.float64)
    std = images.std(axis=(0, 1, 2), dtype=np.float64)
    return mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32)


def random_crop_flip(rng: np.random.Generator, arrays, pad: int = 4, flip: bool = True, fills=None):
    """Apply one random crop (zero padding of `pad` pixels) and horizontal flip per sample to aligned arrays.

    `arrays` is a sequence of (N, H, W, ...) arrays that share N, H and W (images, masks, depth): every array gets
    the same offsets and flips. `fills` gives each array's padding value (default 0). Returns a list of arrays with
    the input shapes and dtypes. The draw from `rng` depends only on N, `pad` and `flip`.
    """
    n, h, w = arrays[0].shape[:3]
    fills = fills if fills is not None else [0] * len(arrays)
    offset_y = rng.integers(0, 2 * pad + 1, size=n)
    offset_x = rng.integers(0, 2 * pad + 1, size=n)
    flips = rng.random(n) < 0.5 if flip else np.zeros(n, dtype=bool)
    rows = offset_y[:, None] + np.arange(h)[None, :]
    cols = offset_x[:, None] + np.arange(w)[None, :]
    cols = np.where(flips[:, None], cols[:, ::-1], cols)
    index = (np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :])
    out = []
    for array, fill in zip(arrays, fills):
        widths = [(0, 0), (pad, pad), (pad, pad)] + [(0, 0)] * (array.ndim - 3)
        out.append(np.pad(array, widths, constant_values=fill)[index])
    return out
