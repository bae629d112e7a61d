"""load_dataset: the registry, counts, tasks, statistics and resizing of whole data sets."""

import numpy as np
import pytest

from nas.data import dataset as dataset_module
from nas.data import Dataset, RawSplits, Split, dataset_names, load_dataset, register_dataset
from search_spaces.errors import UserInputError


def test_unknown_name_lists_known_names():
    with pytest.raises(UserInputError, match="'mnist'.*cifar10, digits, imagefolder, npz, shapes"):
        load_dataset("mnist")


def test_bad_task_and_counts_are_clear_errors():
    with pytest.raises(UserInputError, match="task 'detection'"):
        load_dataset("shapes", task="detection")
    with pytest.raises(UserInputError, match="needs per-pixel masks.*digits"):
        load_dataset("digits", task="segmentation")
    for bad in (-1, 2.5, True):
        with pytest.raises(UserInputError, match="num_val"):
            load_dataset("digits", num_val=bad)
    with pytest.raises(UserInputError, match="seed=-1"):
        load_dataset("digits", seed=-1)
    with pytest.raises(UserInputError, match="empty training split"):
        load_dataset("shapes", resolution=8, num_train=0, num_val=1, num_test=1)


def test_shapes_dataset_holds_splits_and_training_statistics():
    data = load_dataset("shapes", resolution=16, num_train=64, num_val=8, num_test=8, seed=1, task="depth")
    assert isinstance(data, Dataset) and data.name == "shapes" and data.task == "depth"
    assert data.resolution == (16, 16) and data.channels == 3 and len(data.class_names) == data.num_classes
    assert data.mean.dtype == data.std.dtype == np.float32 and data.mean.shape == (3,)
    np.testing.assert_allclose(data.mean, data.train.images.mean(axis=(0, 1, 2)), atol=1e-5)
    np.testing.assert_allclose(data.std, data.train.images.std(axis=(0, 1, 2)), atol=1e-5)
    assert data.split("val") is data.val
    with pytest.raises(UserInputError, match="split 'dev'"):
        data.split("dev")


def test_resized_dataset_resizes_images_masks_and_depth():
    data = load_dataset("shapes", resolution=16, num_train=4, num_val=2, num_test=2).resized(24)
    assert data.train.images.shape == (4, 24, 24, 3) and data.test.masks.shape == (2, 24, 24)
    assert data.val.depth.dtype == np.float32 and data.val.masks.dtype == np.int32
    assert set(np.unique(data.train.masks)) <= set(range(data.num_mask_classes))


def test_registered_loader_is_found_by_name(monkeypatch):
    monkeypatch.setattr(dataset_module, "_LOADERS", dict(dataset_module._LOADERS))  # keep the registry unchanged

    @register_dataset("tiny_test_set")
    def tiny(*, root, resolution, counts, seed):
        split = Split(np.zeros((3, 4, 4, 2), np.float32), np.array([0, 1, 0], np.int32))
        return RawSplits(train=split, val=split, test=split, num_classes=2, class_names=("a", "b"))

    assert "tiny_test_set" in dataset_names()
    data = load_dataset("tiny_test_set", resolution=(2, 6), num_train=2)
    assert data.train.images.shape == (2, 2, 6, 2) and len(data.test) == 3
