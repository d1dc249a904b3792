"""Datasets, splits, batching and augmentation for calikd.

Everything is held in memory as uint8 tensors (:class:`ArrayDataset`) and batched with tensor indexing
(:class:`BatchLoader`); augmentation runs on whole batches on their device (:mod:`calikd.data.augment`).

Conventions
-----------
* **Splits.** ``test`` is the dataset's official test split (TinyImageNet: its labelled official val).
  ``val`` is held out of the official train split: ``val_fraction`` (default 0.1) of every class, chosen by
  a ``torch.Generator`` seeded with ``derive_seed(split_seed, "val-split", name)`` (default
  ``split_seed=0``), so the split is fixed for a dataset and seed and disjoint from train.
  ``val_fraction=0`` gives an empty val. Exceptions, by option: CINIC-10 / imagefolder ``valid="use"``
  take the dataset's own val folder as val (imagefolder does so by default when it has one).
* **Where files are found.** ``data_dir``, ``$CALIKD_DATA``, ``$XDG_CACHE_HOME/calikd`` (default
  ``~/.cache/calikd``), then system folders (Fashion-MNIST: Debian's ``/usr/share/datasets/fashion-mnist``);
  see :mod:`calikd.data.locate`. ``download=True`` / :func:`fetch_dataset` download into the first of
  ``data_dir``, ``$CALIKD_DATA`` and the cache, verifying SHA-256 (:mod:`calikd.data.fetch`).
* **Integrity.** IDX files are checked for magic number, sizes, counts and (Fashion-MNIST) the SHA-256 of
  their content; CIFAR binaries for whole records and counts; image trees are decoded once into a cache.
  Nothing is ever unpickled.
* **Normalisation.** Published per-dataset mean/std in :class:`DatasetInfo`; imagefolder and synthetic
  compute theirs from the train split.
* **Your own data.** :func:`from_arrays` registers NumPy/torch arrays for this process; the ``arrays``
  dataset reads them from a ``.npz`` / ``.safetensors`` file (:func:`save_arrays` writes one);
  ``imagefolder`` reads ``root/{train,test[,val]}/<class>/`` or a flat ``root/<class>/`` tree.
"""

from calikd.data import arrays, cifar, cinic, hf, image_folder, mnist, synthetic, tinyimagenet  # noqa: F401
from calikd.data.api import dataset_info, load_dataset
from calikd.data.archive import safe_extract
from calikd.data.arrays import from_arrays, save_arrays
from calikd.data.augment import (
    EvalTransform,
    TrainTransform,
    build_eval_transform,
    build_train_transform,
    normalize,
    random_crop,
    random_hflip,
)
from calikd.data.cifar import read_cifar_binary
from calikd.data.dataset import ArrayDataset, DatasetSplits
from calikd.data.download import download
from calikd.data.fetch import fetch_dataset
from calikd.data.idx import read_idx
from calikd.data.info import DatasetInfo
from calikd.data.loader import BatchLoader
from calikd.data.locate import cache_root
from calikd.data.registry import get_spec, list_datasets, register_dataset
from calikd.data.resolution import ResolutionTransform

__all__ = [
    "ArrayDataset",
    "BatchLoader",
    "DatasetInfo",
    "DatasetSplits",
    "EvalTransform",
    "ResolutionTransform",
    "TrainTransform",
    "build_eval_transform",
    "build_train_transform",
    "cache_root",
    "dataset_info",
    "download",
    "fetch_dataset",
    "from_arrays",
    "get_spec",
    "list_datasets",
    "load_dataset",
    "normalize",
    "random_crop",
    "random_hflip",
    "read_cifar_binary",
    "read_idx",
    "register_dataset",
    "safe_extract",
    "save_arrays",
]
