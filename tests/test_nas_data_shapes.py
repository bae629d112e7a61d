"""The generated shapes data set: determinism, arrays, masks and depth against labels, learnability."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from nas.data import BACKGROUND_DEPTH, load_dataset, resize
from nas.data.shapes import MAX_SHAPES, NUM_CLASSES, generate_shapes
from search_spaces.errors import UserInputError


def test_same_seed_same_data_and_different_seed_different_data():
    a, b, c = generate_shapes(50, 24, seed=3), generate_shapes(50, 24, seed=3), generate_shapes(50, 24, seed=4)
    for name in ("images", "labels", "masks", "depth"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.images, c.images)
    assert not np.array_equal(a.labels, c.labels)


def test_arrays_have_documented_shapes_dtypes_and_ranges():
    split = generate_shapes(40, 20, seed=0)
    assert split.images.shape == (40, 20, 20, 3) and split.images.dtype == np.float32
    assert split.images.min() >= 0.0 and split.images.max() <= 1.0
    assert split.labels.shape == (40,) and split.labels.dtype == np.int32
    assert split.labels.min() >= 0 and split.labels.max() < NUM_CLASSES
    assert split.masks.shape == (40, 20, 20) and split.masks.dtype == np.int32
    assert split.masks.min() >= 0 and split.masks.max() <= NUM_CLASSES
    assert split.depth.shape == (40, 20, 20) and split.depth.dtype == np.float32
    assert split.depth.min() > 0.0 and split.depth.max() <= BACKGROUND_DEPTH


def test_masks_and_depth_agree_with_labels():
    split = generate_shapes(300, 32, seed=1)
    shape_pixels = split.masks > 0
    np.testing.assert_array_equal(shape_pixels, split.depth < BACKGROUND_DEPTH)
    assert np.all(shape_pixels.any(axis=(1, 2)))
    # the labelled class covers pixels in every image ...
    assert np.all((split.masks == (split.labels + 1)[:, None, None]).any(axis=(1, 2)))
    # ... and dominates: at least twice the pixels of any other class in nearly every image, so the label is clear
    counts = np.stack([(split.masks == c + 1).sum(axis=(1, 2)) for c in range(NUM_CLASSES)], axis=1)
    labelled = counts[np.arange(len(counts)), split.labels]
    others = np.where(np.arange(NUM_CLASSES) == split.labels[:, None], 0, counts).max(axis=1)
    assert np.mean(labelled >= 2 * others) > 0.95
    # depth is constant on a shape's visible pixels: at most MAX_SHAPES distinct shape depths per image
    assert all(len(np.unique(d[d < BACKGROUND_DEPTH])) <= MAX_SHAPES for d in split.depth)


def test_all_classes_occur_with_similar_frequency():
    counts = np.bincount(generate_shapes(3000, 16, seed=2).labels, minlength=NUM_CLASSES)
    assert counts.min() > 0.6 * counts.max()


def test_splits_are_seeded_independently_so_test_set_ignores_num_train():
    small = load_dataset("shapes", resolution=16, num_train=10, num_val=5, num_test=20, seed=7)
    large = load_dataset("shapes", resolution=16, num_train=40, num_val=5, num_test=20, seed=7)
    np.testing.assert_array_equal(small.test.images, large.test.images)
    np.testing.assert_array_equal(small.val.labels, large.val.labels)
    assert not np.array_equal(small.train.images[:5], small.test.images[:5])
    assert small.num_classes == NUM_CLASSES and small.num_mask_classes == NUM_CLASSES + 1


def test_any_resolution_and_too_small_resolution_is_a_clear_error():
    assert generate_shapes(3, 57, seed=0).images.shape == (3, 57, 57, 3)
    with pytest.raises(UserInputError, match="resolution"):
        generate_shapes(3, 4, seed=0)
    with pytest.raises(UserInputError, match="square"):
        load_dataset("shapes", resolution=(16, 24), num_train=2, num_val=1, num_test=1)


def test_learnable_by_a_linear_model_but_far_from_solved():
    """Colour family and coarse layout are linear; the kind of the shape needs more than a linear model."""
    data = load_dataset("shapes", resolution=32, num_train=2000, num_val=0, num_test=1000, seed=0)
    features = [resize(split.images, 8).reshape(len(split), -1) for split in (data.train, data.test)]
    mean, std = features[0].mean(axis=0), features[0].std(axis=0) + 1e-3
    model = LogisticRegression(max_iter=200, C=0.05).fit((features[0] - mean) / std, data.train.labels)
    accuracy = model.score((features[1] - mean) / std, data.test.labels)
    assert 0.2 < accuracy < 0.6  # chance is 0.1; measured 0.382 with this seed
