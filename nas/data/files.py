"""Loaders for data on disk or bundled with a dependency: `digits`, `cifar10`, `imagefolder`, `npz`.

Splits are fixed (a permutation with a constant seed, or the files' own train/test division) so that numbers
on the test split compare across runs and seeds.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np

from search_spaces.errors import UserInputError

from nas.data.dataset import RawSplits, Split, register_dataset
from nas.data.transforms import resize

SPLIT_SEED = 0
HELD_OUT_FRACTION = 0.1
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_LAYOUT = ("a directory with the CIFAR-10 python files data_batch_1 .. data_batch_5 and test_batch (or its "
                  "cifar-10-batches-py subdirectory), each a pickled dict with b'data' (N, 3072) uint8 and b'labels'")
IMAGEFOLDER_LAYOUT = ("a directory with one subdirectory per class, each holding .png/.jpg/.jpeg images "
                      "(root/<class>/<image>)")
NPZ_LAYOUT = "an .npz file with arrays x (N, H, W, C) or (N, H, W), uint8 or float in [0, 1], and y (N,) int labels"
CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
# Data sets read from disk: what their root holds, and whether it is a directory
ROOT_LAYOUTS = {"cifar10": (CIFAR10_LAYOUT, True), "imagefolder": (IMAGEFOLDER_LAYOUT, True),
                "npz": (NPZ_LAYOUT, False)}


def _to_unit_float(x: np.ndarray) -> np.ndarray:
    """uint8 scaled to [0, 1]; floats kept as they are; both as float32."""
    return (x / np.float32(255.0)).astype(np.float32) if x.dtype == np.uint8 else x.astype(np.float32)


def _held_out_sizes(n: int, counts: dict, source) -> tuple[int, int]:
    """(num_val, num_test) taken from a pool of n: the requested counts, else HELD_OUT_FRACTION of n each."""
    sizes = [round(HELD_OUT_FRACTION * n) if counts[name] is None else counts[name] for name in ("val", "test")]
    if sum(sizes) >= n:
        raise UserInputError(f"num_val={sizes[0]} and num_test={sizes[1]} leave no training data among the {n} "
                             f"samples of {source}")
    return sizes[0], sizes[1]


def split_pool(images: np.ndarray, labels: np.ndarray, counts: dict, source) -> dict[str, Split]:
    """Test, then val, then train from one fixed permutation: the test set depends only on num_test."""
    num_val, num_test = _held_out_sizes(len(labels), counts, source)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    parts = {"test": order[:num_test], "val": order[num_test:num_test + num_val], "train": order[num_test + num_val:]}
    return {name: Split(images[index], labels[index].astype(np.int32)) for name, index in parts.items()}


def _num_classes(labels: np.ndarray, source) -> int:
    if len(labels) and labels.min() < 0:
        raise UserInputError(f"{source}: labels must be non-negative ints, found {labels.min()}")
    return int(labels.max()) + 1 if len(labels) else 0


def cifar10_folder(path: Path) -> Path:
    """Where a CIFAR-10 root keeps its batches: itself or its cifar-10-batches-py subdirectory."""
    return path / "cifar-10-batches-py" if (path / "cifar-10-batches-py").is_dir() else path


def root_problem(dataset: str, root) -> str | None:
    """What is wrong with the root of a data set read from disk, as the end of a sentence naming it (None: nothing
    found without reading the files)."""
    want_dir = ROOT_LAYOUTS[dataset][1]
    path = Path(root).expanduser()
    if not (path.is_dir() if want_dir else path.is_file()):
        return f"is not an existing {'directory' if want_dir else 'file'}"
    if dataset == "cifar10":
        missing = [name for name in CIFAR10_FILES if not (cifar10_folder(path) / name).is_file()]
        if missing:
            return f"lacks the CIFAR-10 python batches {', '.join(missing)}"
    return None


def _root(root, dataset: str) -> Path:
    layout = ROOT_LAYOUTS[dataset][0]
    if root is None:
        raise UserInputError(f"data set {dataset!r} needs root: {layout}")
    path = Path(root).expanduser()
    problem = root_problem(dataset, path)
    if problem:
        raise UserInputError(f"data set {dataset!r}: {path} {problem}; expected {layout}")
    return path


@register_dataset("digits")
def load_digits(*, root, resolution, counts, seed) -> RawSplits:
    """scikit-learn's bundled 8x8 digits (1,797 grey images, 10 classes), values scaled to [0, 1]."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = (bunch.images / 16.0).astype(np.float32)[..., None]
    splits = split_pool(images, bunch.target, counts, "the digits data set")
    return RawSplits(num_classes=10, class_names=tuple(str(d) for d in range(10)), **splits)


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles only what a CIFAR batch holds (dicts, lists, bytes, str, ints and NumPy arrays): any other global a
    pickle names (a function to call, a class to build) is refused before it is looked up, so no code in the file runs."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.numeric", "_frombuffer"),
               ("numpy._core.numeric", "_frombuffer"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR batch never holds (refused "
                                         "unread: only dicts, lists, bytes, str, ints and NumPy arrays are loaded)")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as f:
            batch = _CifarUnpickler(f, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except pickle.UnpicklingError as error:
        raise UserInputError(f"{path} is not a CIFAR-10 batch: {error}; expected {CIFAR10_LAYOUT}") from None
    except (OSError, EOFError, KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
        raise UserInputError(f"{path} is not a readable CIFAR-10 batch ({error!r}); expected {CIFAR10_LAYOUT}") from None
    if data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (len(data),) or not np.all((0 <= labels) & (labels < 10)):
        raise UserInputError(f"{path}: data has shape {data.shape} for labels of shape {labels.shape} (values "
                             f"{np.unique(labels)[:12]}); expected {CIFAR10_LAYOUT}, labels 0..9")
    return _to_unit_float(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)), labels


@register_dataset("cifar10")
def load_cifar10(*, root, resolution, counts, seed) -> RawSplits:
    """CIFAR-10 python batches; val is the last num_val (default 10%) of the 50,000 training images."""
    path = cifar10_folder(_root(root, "cifar10"))
    parts = [_read_cifar_batch(path / name) for name in CIFAR10_FILES]
    images = np.concatenate([part[0] for part in parts[:5]])
    labels = np.concatenate([part[1] for part in parts[:5]])
    num_val = round(HELD_OUT_FRACTION * len(labels)) if counts["val"] is None else counts["val"]
    if num_val >= len(labels):
        raise UserInputError(f"num_val={num_val} leaves no training data among the {len(labels)} images in {path}")
    cut = len(labels) - num_val
    test_images, test_labels = parts[5]
    return RawSplits(train=Split(images[:cut], labels[:cut].astype(np.int32)),
                     val=Split(images[cut:], labels[cut:].astype(np.int32)),
                     test=Split(test_images, test_labels.astype(np.int32)),
                     num_classes=len(CIFAR10_CLASSES), class_names=CIFAR10_CLASSES)


def _read_image(path: Path, resolution) -> np.ndarray:
    import matplotlib.image

    try:
        image = np.asarray(matplotlib.image.imread(path))
    except Exception as error:  # noqa: BLE001 - any decoder failure is a bad input file
        raise UserInputError(f"{path} is not a readable image ({error!r}); expected {IMAGEFOLDER_LAYOUT}") from None
    image = _to_unit_float(image)
    image = image[..., None] if image.ndim == 2 else image
    image = np.repeat(image[..., :1], 3, axis=-1) if image.shape[-1] in (1, 2) else image[..., :3]
    return image if resolution is None else resize(image[None], resolution)[0]


@register_dataset("imagefolder")
def load_imagefolder(*, root, resolution, counts, seed) -> RawSplits:
    """Images under root/<class>/ as RGB; classes are the sorted subdirectory names."""
    path = _root(root, "imagefolder")
    classes = sorted(entry.name for entry in path.iterdir() if entry.is_dir())
    if not classes:
        raise UserInputError(f"{path} has no class subdirectories; expected {IMAGEFOLDER_LAYOUT}")
    images, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(f for f in (path / name).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UserInputError(f"{path / name} holds no .png/.jpg/.jpeg image; expected {IMAGEFOLDER_LAYOUT}")
        images += [_read_image(f, resolution) for f in files]
        labels += [label] * len(files)
    if len({image.shape for image in images}) > 1:
        raise UserInputError(f"images under {path} differ in size ({sorted({im.shape[:2] for im in images})}): "
                             f"give a resolution to resize them all")
    splits = split_pool(np.stack(images), np.asarray(labels), counts, path)
    return RawSplits(num_classes=len(classes), class_names=tuple(classes), **splits)


@register_dataset("npz")
def load_npz(*, root, resolution, counts, seed) -> RawSplits:
    """Arrays x and y from one .npz file, split into test, val and train by a fixed permutation."""
    path = _root(root, "npz")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise UserInputError(f"{path} holds a single array, not an .npz archive; expected {NPZ_LAYOUT}")
        with archive:
            arrays = {key: archive[key] for key in ("x", "y") if key in archive.files}
            if len(arrays) < 2:
                raise UserInputError(f"{path} holds arrays {sorted(archive.files)}, not x and y; "
                                     f"expected {NPZ_LAYOUT}")
    except UserInputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise UserInputError(f"{path} is not a readable .npz file ({error!r}); expected {NPZ_LAYOUT}") from None
    x, y = arrays["x"], arrays["y"]
    if x.ndim not in (3, 4) or y.ndim != 1 or len(x) != len(y) or not np.issubdtype(y.dtype, np.integer) or not (
            x.dtype == np.uint8 or np.issubdtype(x.dtype, np.floating)):
        raise UserInputError(f"{path}: x is {x.dtype} {x.shape} and y is {y.dtype} {y.shape}; expected {NPZ_LAYOUT}")
    num_classes = _num_classes(y, path)
    splits = split_pool(_to_unit_float(x[..., None] if x.ndim == 3 else x), y, counts, path)
    return RawSplits(num_classes=num_classes, class_names=tuple(str(c) for c in range(num_classes)), **splits)
