"""Loaders for digits, CIFAR-10 batches, image folders and .npz files, and their errors on bad paths."""

import pickle
import re

import matplotlib.image
import numpy as np
import pytest

from nas.data import load_dataset
from search_spaces.errors import UserInputError


def test_digits_splits_are_fixed_sized_and_disjoint():
    a, b = load_dataset("digits", seed=0), load_dataset("digits", seed=5)
    assert (len(a.train), len(a.val), len(a.test)) == (1437, 180, 180)
    assert a.train.images.shape[1:] == (8, 8, 1) and a.train.images.dtype == np.float32
    assert 0.0 <= a.train.images.min() and a.train.images.max() <= 1.0
    np.testing.assert_array_equal(a.test.images, b.test.images)  # the split does not depend on the seed
    rows = {name: {img.tobytes() for img in getattr(a, name).images} for name in ("train", "val", "test")}
    assert sum(map(len, rows.values())) == len(set().union(*rows.values())) > 1780  # no image in two splits


def test_digits_resized_and_limited():
    data = load_dataset("digits", resolution=16, num_train=100, num_val=10, num_test=20)
    assert data.train.images.shape == (100, 16, 16, 1) and len(data.val) == 10 and len(data.test) == 20
    assert data.mean.shape == data.std.shape == (1,)
    with pytest.raises(UserInputError, match="num_train=5000"):
        load_dataset("digits", num_train=5000)


def _write_cifar(root, per_batch=6, labels_key=b"labels"):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 labels_key: rng.integers(0, 10, per_batch).tolist()}
        (root / name).write_bytes(pickle.dumps(batch))


def test_cifar10_batches_load_as_nhwc(tmp_path):
    _write_cifar(tmp_path)
    data = load_dataset("cifar10", root=tmp_path, num_val=5)
    assert (len(data.train), len(data.val), len(data.test)) == (25, 5, 6)
    with (tmp_path / "data_batch_1").open("rb") as f:
        first = pickle.load(f)
    expected = first[b"data"][0].reshape(3, 32, 32).transpose(1, 2, 0) / 255.0
    np.testing.assert_allclose(data.train.images[0], expected, atol=1e-6)
    assert data.train.labels[0] == first[b"labels"][0] and data.num_classes == 10
    assert data.class_names[0] == "airplane"


def test_cifar10_missing_and_malformed_files_name_the_path(tmp_path):
    with pytest.raises(UserInputError, match=re.escape(str(tmp_path / "nowhere"))):
        load_dataset("cifar10", root=tmp_path / "nowhere")
    with pytest.raises(UserInputError, match="data_batch_1.*test_batch"):
        load_dataset("cifar10", root=tmp_path)
    _write_cifar(tmp_path, labels_key=b"fine_labels")
    with pytest.raises(UserInputError, match="data_batch_1"):
        load_dataset("cifar10", root=tmp_path)
    (tmp_path / "data_batch_1").write_bytes(b"not a pickle")
    with pytest.raises(UserInputError, match="data_batch_1"):
        load_dataset("cifar10", root=tmp_path)
    with pytest.raises(UserInputError, match="needs root"):
        load_dataset("cifar10")


class _Payload:
    """Unpickling this runs `touch MARKER`: what a crafted batch would do to a plain pickle.load."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar10_batch_with_code_is_refused_unrun(tmp_path, protocol):
    _write_cifar(tmp_path)
    marker = tmp_path / "payload_ran"
    batch = {b"data": np.zeros((6, 3072), np.uint8), b"labels": [0] * 6, b"extra": _Payload(marker)}
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps(batch, protocol=protocol))
    with pytest.raises(UserInputError, match=r"data_batch_3 is not a CIFAR-10 batch: it names (posix|os)\.system"):
        load_dataset("cifar10", root=tmp_path)
    assert not marker.exists()
    pickle.loads((tmp_path / "data_batch_3").read_bytes())  # the same file runs its payload under pickle.load
    assert marker.exists()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_cifar10_batches_of_every_pickle_protocol_load(tmp_path, protocol):
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"batch_label": b"training batch", b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, 4).tolist(), b"filenames": [b"a.png"] * 4}
        (tmp_path / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    data = load_dataset("cifar10", root=tmp_path, num_val=2)
    assert (len(data.train), len(data.test)) == (18, 4)


def _write_folder(root, size=(6, 6)):
    rng = np.random.default_rng(0)
    for name, count in (("cat", 6), ("dog", 5)):
        (root / name).mkdir(parents=True)
        for i in range(count):
            matplotlib.image.imsave(root / name / f"{i}.png", rng.random((*size, 3)))
    return rng


def test_imagefolder_reads_classes_and_resizes(tmp_path):
    _write_folder(tmp_path)
    matplotlib.image.imsave(tmp_path / "dog" / "big.png", np.zeros((9, 7)), cmap="gray")
    with pytest.raises(UserInputError, match="differ in size"):
        load_dataset("imagefolder", root=tmp_path)
    data = load_dataset("imagefolder", root=tmp_path, resolution=4, num_val=2, num_test=3)
    assert data.class_names == ("cat", "dog") and data.num_classes == 2
    assert data.train.images.shape == (7, 4, 4, 3) and (len(data.val), len(data.test)) == (2, 3)
    assert sorted(np.concatenate([data.train.labels, data.val.labels, data.test.labels]).tolist()) == [0] * 6 + [1] * 6


def test_imagefolder_bad_layouts_name_the_path(tmp_path):
    with pytest.raises(UserInputError, match="no class subdirectories"):
        load_dataset("imagefolder", root=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match=re.escape(str(tmp_path / "empty"))):
        load_dataset("imagefolder", root=tmp_path)
    (tmp_path / "empty" / "broken.png").write_bytes(b"no image here")
    with pytest.raises(UserInputError, match="broken.png"):
        load_dataset("imagefolder", root=tmp_path)


def test_npz_loads_uint8_and_float_and_splits_by_counts(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 5, 5, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(30) % 3)
    np.savez(tmp_path / "f.npz", x=x[..., 0] / 255.0, y=np.arange(30) % 3)
    data = load_dataset("npz", root=tmp_path / "d.npz", num_val=4, num_test=6)
    assert (len(data.train), len(data.val), len(data.test), data.num_classes) == (20, 4, 6, 3)
    grey = load_dataset("npz", root=tmp_path / "f.npz", num_val=4, num_test=6)
    assert grey.train.images.shape == (20, 5, 5, 1)
    np.testing.assert_allclose(grey.train.images[..., 0], data.train.images[..., 0], atol=1e-6)
    restored = np.rint(np.concatenate([data.train.images, data.val.images, data.test.images]) * 255)
    assert sorted(map(bytes, restored.astype(np.uint8))) == sorted(map(bytes, x))


@pytest.mark.parametrize("content", ["missing", "text", "keys", "shapes", "npy"])
def test_npz_bad_files_name_the_path(tmp_path, content):
    path = tmp_path / "bad.npz"
    if content == "text":
        path.write_text("hello")
    elif content == "keys":
        np.savez(path, images=np.zeros((2, 4, 4, 3)), y=np.zeros(2, int))
    elif content == "shapes":
        np.savez(path, x=np.zeros((2, 4, 4, 3)), y=np.zeros(3, int))
    elif content == "npy":
        with path.open("wb") as f:
            np.save(f, np.zeros(3))
    with pytest.raises(UserInputError, match=re.escape(str(path))):
        load_dataset("npz", root=path)
