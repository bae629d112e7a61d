"""Batches whose order and augmentation are a pure function of (seed, epoch, index), so a run resumes exactly."""

from __future__ import annotations

from typing import Iterator, NamedTuple

import numpy as np

from search_spaces.errors import UserInputError

from nas.data.dataset import BACKGROUND_DEPTH, Split, non_negative_int
from nas.data.transforms import random_crop_flip

_ORDER_STREAM, _AUGMENT_STREAM = 0, 1


class Batch(NamedTuple):
    """Float32 NHWC `images` (normalised when the stream has statistics), int32 `labels`, and for data sets with
    dense targets int32 `masks` (N, H, W) and float32 `depth` (N, H, W), else None."""

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray | None
    depth: np.ndarray | None

    def target(self, task: str) -> np.ndarray:
        """The array a model for `task` learns: labels, masks (segmentation) or depth."""
        return {"classification": self.labels, "segmentation": self.masks, "depth": self.depth}[task]


class Batches:
    """An endless stream of batches over one split; `position` (epoch, index) says which batch comes next.

    Batch (epoch, index) depends only on the split, `seed`, `epoch` and `index`: the sample order is a permutation
    drawn from (seed, epoch) and the augmentation (random crop with `pad` pixels of zero padding, horizontal flip)
    from (seed, epoch, index). Save `position` with a checkpoint and pass it back as `epoch`/`index` to continue
    with exactly the batches that were still to come. `drop_last` (default: `shuffle`) drops a partial last batch.
    """

    def __init__(self, split: Split, batch_size: int, *, seed: int, augment: bool = False, mean=None, std=None,
                 shuffle: bool = True, drop_last: bool | None = None, pad: int = 4, flip: bool = True,
                 epoch: int = 0, index: int = 0):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise UserInputError(f"batch_size={batch_size!r} is invalid: expected a positive int")
        self.split, self.batch_size, self.seed = split, int(batch_size), non_negative_int("seed", seed)
        self.augment, self.shuffle, self.pad, self.flip = augment, shuffle, int(pad), flip
        self.drop_last = shuffle if drop_last is None else drop_last
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32)
        self.std = None if std is None else np.asarray(std, dtype=np.float32)
        full, rest = divmod(len(split), self.batch_size)
        self.num_batches = full if self.drop_last else full + (rest > 0)
        if self.num_batches == 0:
            raise UserInputError(f"batch_size={batch_size} gives no batch over a split of {len(split)} samples "
                                 f"(drop_last={self.drop_last}): use a smaller batch_size or more data")
        self._order_epoch, self._order = None, None
        self.position = (epoch, index)

    @property
    def position(self) -> tuple[int, int]:
        """(epoch, index) of the next batch."""
        return self._epoch, self._index

    @position.setter
    def position(self, value) -> None:
        epoch, index = (int(v) for v in value)
        if epoch < 0 or not 0 <= index < self.num_batches:
            raise UserInputError(f"batch position {tuple(value)} is invalid: expected epoch >= 0 and "
                                 f"0 <= index < {self.num_batches} (batches per epoch)")
        self._epoch, self._index = epoch, index

    def order(self, epoch: int) -> np.ndarray:
        """The sample indices of `epoch`, in the order they are batched."""
        if self._order_epoch != epoch:
            n = len(self.split)
            rng = np.random.default_rng([self.seed, epoch, _ORDER_STREAM])
            self._order = rng.permutation(n) if self.shuffle else np.arange(n)
            self._order_epoch = epoch
        return self._order

    def batch(self, epoch: int, index: int) -> Batch:
        """Batch `index` of `epoch` (does not move `position`)."""
        picked = self.order(epoch)[index * self.batch_size:(index + 1) * self.batch_size]
        data = self.split.take(picked)
        images, masks, depth = data.images, data.masks, data.depth
        if self.augment:
            rng = np.random.default_rng([self.seed, epoch, _AUGMENT_STREAM, index])
            if masks is None:
                (images,) = random_crop_flip(rng, [images], pad=self.pad, flip=self.flip)
            else:
                images, masks, depth = random_crop_flip(rng, [images, masks, depth], pad=self.pad, flip=self.flip,
                                                        fills=[0.0, 0, BACKGROUND_DEPTH])
        if self.mean is not None:
            images = (images - self.mean) / self.std
        return Batch(images.astype(np.float32, copy=False), data.labels, masks, depth)

    def __iter__(self) -> "Batches":
        return self

    def __next__(self) -> Batch:
        epoch, index = self.position
        out = self.batch(epoch, index)
        self._epoch, self._index = (epoch + 1, 0) if index + 1 == self.num_batches else (epoch, index + 1)
        return out

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """All batches of one epoch, in order (does not move `position`)."""
        return (self.batch(epoch, index) for index in range(self.num_batches))


def iterate_batches(split: Split, batch_size: int, *, seed: int, epoch: int = 0, augment: bool = False,
                    **kwargs) -> Iterator[Batch]:
    """The batches of one epoch over `split`; keyword arguments as for `Batches` (mean, std, shuffle, ...)."""
    return Batches(split, batch_size, seed=seed, augment=augment, **kwargs).epoch(epoch)
