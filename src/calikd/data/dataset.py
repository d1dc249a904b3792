"""In-memory dataset containers: :class:`ArrayDataset` and the train/val/test :class:`DatasetSplits`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import torch

from calikd.data.info import DatasetInfo
from calikd.errors import ConfigError

SPLIT_NAMES = ("train", "val", "test")


@dataclass
class ArrayDataset:
    """In-memory images, uint8 (N, C, H, W) contiguous on the CPU, and labels, int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor) or not isinstance(self.labels, torch.Tensor):
            raise ConfigError("ArrayDataset needs torch tensors for images and labels")
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ConfigError(
                f"ArrayDataset images must be uint8 (N, C, H, W), got {self.images.dtype} "
                f"of shape {tuple(self.images.shape)}"
            )
        if self.labels.ndim != 1 or self.labels.dtype not in (
            torch.int64,
            torch.int32,
            torch.uint8,
            torch.int16,
        ):
            raise ConfigError(
                f"ArrayDataset labels must be integers of shape (N,), got {self.labels.dtype} "
                f"of shape {tuple(self.labels.shape)}"
            )
        if self.images.shape[0] != self.labels.shape[0]:
            raise ConfigError(
                f"ArrayDataset has {self.images.shape[0]} images but {self.labels.shape[0]} labels"
            )
        self.images = self.images.cpu().contiguous()
        self.labels = self.labels.cpu().to(torch.int64).contiguous()

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the images and labels in order: names this exact split."""
        digest = hashlib.sha256()
        digest.update(str(tuple(self.images.shape)).encode())
        digest.update(self.images.numpy().tobytes())
        digest.update(self.labels.numpy().astype("<i8").tobytes())
        return digest.hexdigest()

    def subset(self, indices: torch.Tensor) -> ArrayDataset:
        """A new dataset holding the rows at ``indices`` (a copy)."""
        indices = torch.as_tensor(indices, dtype=torch.int64)
        return ArrayDataset(self.images.index_select(0, indices), self.labels.index_select(0, indices))

    def class_counts(self, num_classes: int) -> torch.Tensor:
        """How many samples of each class (int64, length ``num_classes``)."""
        return torch.bincount(self.labels, minlength=num_classes)

    @staticmethod
    def concat(parts: list[ArrayDataset]) -> ArrayDataset:
        """Concatenate datasets with the same image shape."""
        if not parts:
            raise ConfigError("ArrayDataset.concat needs at least one dataset")
        shapes = {tuple(p.images.shape[1:]) for p in parts}
        if len(shapes) != 1:
            raise ConfigError(f"cannot concatenate datasets of image shapes {sorted(shapes)}")
        return ArrayDataset(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]))

    @staticmethod
    def empty_like(other: ArrayDataset) -> ArrayDataset:
        """A dataset with no samples and ``other``'s image shape."""
        return ArrayDataset(other.images[:0].clone(), other.labels[:0].clone())


@dataclass
class DatasetSplits:
    """A dataset's three splits. ``val`` is held out of the official train split (see :mod:`calikd.data`).

    ``options`` are the dataset options given to :func:`load_dataset`; store them with ``info``,
    ``val_fraction`` and ``split_seed`` to load the very same splits again.
    """

    info: DatasetInfo
    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset
    val_fraction: float
    split_seed: int
    options: dict[str, Any] = field(default_factory=dict)  # the dataset options it was loaded with

    def split(self, name: str) -> ArrayDataset:
        """``"train"``, ``"val"`` or ``"test"``."""
        if name not in SPLIT_NAMES:
            raise ConfigError(f"unknown split '{name}'", hint=f"choose one of {', '.join(SPLIT_NAMES)}")
        return getattr(self, name)

    def sizes(self) -> dict[str, int]:
        """Number of samples in each split."""
        return {name: len(self.split(name)) for name in SPLIT_NAMES}
