"""Batch streams: order as a pure function of (seed, epoch), exact resume, augmentation, normalisation."""

import numpy as np
import pytest

from nas.data import Batches, Split, iterate_batches, load_dataset
from search_spaces.errors import UserInputError


@pytest.fixture(scope="module")
def data():
    return load_dataset("shapes", resolution=12, num_train=50, num_val=10, num_test=10, seed=0, task="segmentation")


def _same(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_resume_from_saved_position_yields_the_remaining_batches(data):
    stream = data.batches("train", 8, seed=3, augment=True)
    assert stream.num_batches == 6  # 50 // 8, the partial batch is dropped while training
    full = [next(stream) for _ in range(15)]
    assert stream.position == (2, 3)
    resumed = data.batches("train", 8, seed=3, augment=True)
    for _ in range(9):
        next(resumed)
    saved = resumed.position
    assert saved == (1, 3)
    restored = data.batches("train", 8, seed=3, augment=True, epoch=saved[0], index=saved[1])
    for expected in full[9:]:
        _same(next(restored), expected)


def test_order_depends_on_seed_and_epoch_and_covers_each_sample_once(data):
    stream = data.batches("train", 10, seed=0)
    orders = [stream.order(0), stream.order(1), data.batches("train", 10, seed=1).order(0)]
    assert all(sorted(order) == list(range(50)) for order in orders)
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[0], orders[2])
    np.testing.assert_array_equal(data.batches("train", 10, seed=0).order(1), orders[1])
    labels = np.concatenate([batch.labels for batch in stream.epoch(1)])
    np.testing.assert_array_equal(labels, data.train.labels[orders[1]])


def test_batches_are_normalised_and_augmented_consistently(data):
    plain = next(data.batches("train", 16, seed=2))
    augmented = next(data.batches("train", 16, seed=2, augment=True))
    assert plain.images.shape == augmented.images.shape == (16, 12, 12, 3)
    assert plain.images.dtype == augmented.images.dtype == np.float32
    assert plain.masks.shape == augmented.masks.shape == (16, 12, 12)
    np.testing.assert_array_equal(plain.labels, augmented.labels)
    assert not np.array_equal(plain.images, augmented.images)
    order = data.batches("train", 16, seed=2).order(0)[:16]
    np.testing.assert_allclose(plain.images, (data.train.images[order] - data.mean) / data.std, atol=1e-6)
    assert plain.target("segmentation") is plain.masks and plain.target("depth") is plain.depth
    # padding added by the crop is background in masks and depth as well
    background = augmented.masks == 0
    np.testing.assert_array_equal(background, augmented.depth == 1.0)


def test_evaluation_epoch_keeps_order_and_the_partial_batch(data):
    batches = list(iterate_batches(data.test, 4, seed=0, shuffle=False))
    assert [len(b.labels) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b.images for b in batches]), data.test.images)
    assert batches[0].masks is not None


def test_classification_data_has_no_dense_targets_and_bad_arguments_are_errors():
    split = Split(np.zeros((5, 4, 4, 1), np.float32), np.arange(5, dtype=np.int32))
    batch = next(Batches(split, 2, seed=0, augment=True))
    assert batch.masks is None and batch.depth is None and batch.images.shape == (2, 4, 4, 1)
    with pytest.raises(UserInputError, match="batch_size=0"):
        Batches(split, 0, seed=0)
    with pytest.raises(UserInputError, match="batch_size=8"):
        Batches(split, 8, seed=0)
    with pytest.raises(UserInputError, match="position"):
        Batches(split, 2, seed=0, index=2)
