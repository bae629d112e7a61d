"""The Dataset and Split containers, the registry of loaders by name, and `load_dataset`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from search_spaces.errors import UserInputError

from nas.data.transforms import channel_stats, resize

TASKS = ("classification", "segmentation", "depth")
SPLITS = ("train", "val", "test")
BACKGROUND_DEPTH = 1.0


@dataclass(frozen=True)
class Split:
    """One split: float32 NHWC `images` in [0, 1], int32 `labels` (N,); for dense tasks both per-pixel int32
    `masks` (N, H, W), 0 = background, and float32 `depth` (N, H, W) in (0, 1], larger is farther, background
    BACKGROUND_DEPTH."""

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray | None = None
    depth: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index) -> "Split":
        """The samples at `index` (a slice or an int array), in that order."""
        return Split(*(None if a is None else a[index] for a in (self.images, self.labels, self.masks, self.depth)))

    def resized(self, size) -> "Split":
        """This split at another resolution: images bilinear, masks and depth nearest."""
        masks, depth = (None if a is None else resize(a, size, "nearest") for a in (self.masks, self.depth))
        return Split(resize(self.images, size), self.labels, masks, depth)


@dataclass(frozen=True)
class Dataset:
    """Train/val/test splits with the normalisation statistics of the training split.

    `mean` and `std` are per-channel float32 (C,) over the training images; `num_mask_classes` counts mask values
    including background (0 when the data set has no masks).
    """

    name: str
    task: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    class_names: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    num_mask_classes: int = 0

    @property
    def resolution(self) -> tuple[int, int]:
        return self.train.images.shape[1], self.train.images.shape[2]

    @property
    def channels(self) -> int:
        return self.train.images.shape[3]

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise UserInputError(f"split {name!r} is unknown: expected one of {SPLITS}")
        return getattr(self, name)

    def resized(self, size) -> "Dataset":
        """All splits at another resolution; the statistics are kept (resizing barely moves them)."""
        return replace(self, **{name: self.split(name).resized(size) for name in SPLITS})

    def batches(self, split: str, batch_size: int, *, seed: int, augment: bool = False, **kwargs):
        """A resumable `Batches` stream over one split, normalised with this data set's statistics."""
        from nas.data.batches import Batches

        return Batches(self.split(split), batch_size, seed=seed, augment=augment, mean=self.mean, std=self.std,
                       **kwargs)


@dataclass(frozen=True)
class RawSplits:
    """What a loader returns: the three splits at their native size, before counts, resizing and statistics."""

    train: Split
    val: Split
    test: Split
    num_classes: int
    class_names: tuple[str, ...]
    num_mask_classes: int = 0


Loader = Callable[..., RawSplits]
_LOADERS: dict[str, Loader] = {}


def register_dataset(name: str):
    """Decorator: register `loader(*, root, resolution, counts, seed) -> RawSplits` under `name`.

    `counts` is a dict split name -> requested size or None (None: the loader's default or everything there is).
    Loaders may return more samples than asked; `load_dataset` keeps the first ones.
    """

    def add(loader: Loader) -> Loader:
        _LOADERS[name] = loader
        return loader

    return add


def dataset_names() -> tuple[str, ...]:
    return tuple(sorted(_LOADERS))


def non_negative_int(key: str, value) -> int:
    """`value` as an int, or a UserInputError naming `key` when it is not a non-negative int."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise UserInputError(f"{key}={value!r} is invalid: expected a non-negative int")
    return int(value)


def _first(split: Split, count: int | None, key: str, dataset: str) -> Split:
    if count is None:
        return split
    if count > len(split):
        raise UserInputError(f"{key}={count} is more than data set {dataset!r} has in that split ({len(split)})")
    return split.take(slice(0, count))


def load_dataset(name: str, *, root=None, resolution=None, num_train: int | None = None, num_val: int | None = None,
                 num_test: int | None = None, seed: int = 0, task: str = "classification") -> Dataset:
    """Load data set `name` (see `dataset_names()`) as float32 NHWC splits at `resolution` (None: native).

    Counts of None take the loader's default (for `shapes`) or the whole fixed split (file data sets). `seed` only
    drives generated data (`shapes`); file data sets have fixed splits so test numbers are comparable across seeds.
    `task` is "classification", or "segmentation"/"depth" for data sets with masks and depth (`shapes`).
    """
    if name not in _LOADERS:
        raise UserInputError(f"data set {name!r} is unknown: known data sets are {', '.join(dataset_names())}")
    if task not in TASKS:
        raise UserInputError(f"task {task!r} is unknown: expected one of {TASKS}")
    counts = {split: None if value is None else non_negative_int(key, value)
              for split, key, value in zip(SPLITS, ("num_train", "num_val", "num_test"), (num_train, num_val, num_test))}
    raw = _LOADERS[name](root=root, resolution=resolution, counts=counts, seed=non_negative_int("seed", seed))
    splits = {split: _first(getattr(raw, split), counts[split], key, name)
              for split, key in zip(SPLITS, ("num_train", "num_val", "num_test"))}
    if task != "classification" and splits["train"].masks is None:
        raise UserInputError(f"task {task!r} needs per-pixel masks and depth, which data set {name!r} does not have; "
                             f"use task='classification' or the 'shapes' data set")
    if len(splits["train"]) == 0:
        raise UserInputError(f"data set {name!r} has an empty training split: num_train must be at least 1")
    if resolution is not None:
        splits = {split: data.resized(resolution) for split, data in splits.items()}
    mean, std = channel_stats(splits["train"].images)
    return Dataset(name=name, task=task, num_classes=raw.num_classes, class_names=raw.class_names, mean=mean,
                   std=std, num_mask_classes=raw.num_mask_classes, **splits)
