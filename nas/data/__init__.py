"""Data sets for search and training: generated `shapes`, bundled `digits`, and CIFAR-10, image folders and .npz
files on disk; bilinear resizing, seeded augmentation and resumable batch streams.

    data = load_dataset("shapes", resolution=32, num_train=5000, num_val=1000, num_test=1000, seed=0)
    stream = data.batches("train", 128, seed=0, augment=True)     # stream.position -> (epoch, index)
"""

from nas.data.batches import Batch, Batches, iterate_batches
from nas.data.dataset import (BACKGROUND_DEPTH, SPLITS, TASKS, Dataset, RawSplits, Split, dataset_names,
                              load_dataset, register_dataset)
from nas.data.transforms import channel_stats, random_crop_flip, resize
from nas.data import files as _files, shapes as _shapes  # noqa: F401  (register the loaders)

__all__ = ["BACKGROUND_DEPTH", "SPLITS", "TASKS", "Batch", "Batches", "Dataset", "RawSplits", "Split",
           "channel_stats", "dataset_names", "iterate_batches", "load_dataset", "random_crop_flip",
           "register_dataset", "resize"]
