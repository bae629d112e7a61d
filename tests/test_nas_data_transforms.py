"""Resize (against jax.image.resize), channel statistics and the seeded crop-and-flip augmentation."""

import jax
import numpy as np
import pytest

from nas.data import channel_stats, random_crop_flip, resize
from search_spaces.errors import UserInputError


@pytest.mark.parametrize("size", [(5, 7), (16, 16), (13, 29)])
def test_linear_resize_matches_jax_image_resize(size):
    images = np.random.default_rng(0).random((2, 11, 13, 3), dtype=np.float32)
    expected = jax.image.resize(images, (2, *size, 3), method="linear")
    np.testing.assert_allclose(resize(images, size), np.asarray(expected), atol=1e-5)


def test_resize_keeps_constants_and_nearest_keeps_mask_values():
    assert np.allclose(resize(np.full((1, 8, 8, 2), 0.25, np.float32), 20), 0.25)
    masks = np.random.default_rng(1).integers(0, 5, (3, 8, 8)).astype(np.int32)
    up = resize(masks, 16, method="nearest")
    assert up.shape == (3, 16, 16) and up.dtype == np.int32
    np.testing.assert_array_equal(up[:, ::2, ::2], masks)


def test_resize_rejects_bad_sizes_and_methods():
    images = np.zeros((1, 4, 4, 3), np.float32)
    for size in (0, (3,), 2.5):
        with pytest.raises(UserInputError, match="resolution"):
            resize(images, size)
    with pytest.raises(UserInputError, match="cubic"):
        resize(images, 8, method="cubic")


def test_channel_stats_are_per_channel():
    images = np.stack([np.zeros((4, 3, 3)), np.ones((4, 3, 3)), np.tile([0.0, 1.0, 0.0], (4, 3, 1))], axis=-1)
    mean, std = channel_stats(images.astype(np.float32))
    np.testing.assert_allclose(mean, [0.0, 1.0, 1 / 3], atol=1e-6)
    np.testing.assert_allclose(std, [1e-3, 1e-3, np.sqrt(2) / 3], atol=1e-6)


def test_crop_flip_is_seeded_keeps_shapes_and_moves_aligned_arrays_together():
    n, h, w = 32, 10, 12
    rows, cols = np.meshgrid(np.arange(1, h + 1), np.arange(1, w + 1), indexing="ij")
    images = np.broadcast_to(np.stack([rows, cols, rows * 0 + 1], axis=-1), (n, h, w, 3)).astype(np.float32)
    masks = np.broadcast_to(cols, (n, h, w)).astype(np.int32)
    a = random_crop_flip(np.random.default_rng(5), [images, masks], pad=2)
    b = random_crop_flip(np.random.default_rng(5), [images, masks], pad=2)
    c = random_crop_flip(np.random.default_rng(6), [images, masks], pad=2)
    assert a[0].shape == images.shape and a[0].dtype == np.float32
    assert a[1].shape == masks.shape and a[1].dtype == np.int32
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
    np.testing.assert_array_equal(a[1], a[0][..., 1])  # mask moved with its pixels; padding is 0 in both
    flipped = 0
    for out in a[0]:
        kept = out[..., 2] == 1
        ys, xs = np.nonzero(kept)
        assert len(np.unique(out[ys, xs, 0] - ys)) == 1  # rows shifted by one offset, at most pad
        shift, mirrored = np.unique(out[ys, xs, 1] - xs), np.unique(out[ys, xs, 1] + xs)
        assert len(shift) == 1 or len(mirrored) == 1  # columns shifted, or shifted and mirrored
        flipped += len(shift) > 1
    assert 0 < flipped < n


def test_crop_flip_without_padding_and_flip_is_identity():
    images = np.random.default_rng(0).random((4, 6, 6, 3), dtype=np.float32)
    (out,) = random_crop_flip(np.random.default_rng(0), [images], pad=0, flip=False)
    np.testing.assert_array_equal(out, images)
