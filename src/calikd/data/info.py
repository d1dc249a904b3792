"""Static facts about a dataset: shape, classes, normalisation and default augmentation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from calikd.errors import ConfigError, did_you_mean


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and a transform need to know about a dataset.

    ``mean``/``std`` are per channel in [0, 1] pixel units. ``classes`` may be empty only where the names
    are read from the files at load time (TinyImageNet before it is loaded).
    """

    name: str
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hflip: bool
    crop_padding: int
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        # Normalise lists (from JSON) to tuples so that equality and hashing work.
        object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        object.__setattr__(self, "classes", tuple(str(v) for v in self.classes))
        problems = []
        if not self.name:
            problems.append("name is empty")
        if self.num_classes < 1:
            problems.append(f"num_classes={self.num_classes} must be >= 1")
        if self.in_channels < 1:
            problems.append(f"in_channels={self.in_channels} must be >= 1")
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            problems.append(f"image_size={self.image_size} must be two positive integers (H, W)")
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            problems.append(f"mean and std need {self.in_channels} values (one per channel)")
        if any(s <= 0 for s in self.std):
            problems.append(f"std={self.std} must be positive")
        if self.crop_padding < 0:
            problems.append(f"crop_padding={self.crop_padding} must be >= 0")
        if self.classes and len(self.classes) != self.num_classes:
            problems.append(f"{len(self.classes)} class names for num_classes={self.num_classes}")
        if problems:
            raise ConfigError(f"invalid DatasetInfo for '{self.name}': " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DatasetInfo:
        """Inverse of :meth:`to_dict`; unknown or missing keys are a :class:`ConfigError`."""
        names = [f.name for f in fields(cls)]
        unknown = [k for k in d if k not in names]
        if unknown:
            raise ConfigError(
                f"unknown DatasetInfo key '{unknown[0]}'{did_you_mean(unknown[0], names)}",
                hint=f"valid keys: {', '.join(names)}",
            )
        missing = [k for k in names if k not in d]
        if missing:
            raise ConfigError(f"DatasetInfo is missing key(s): {', '.join(missing)}")
        return cls(**dict(d))


def default_crop_padding(image_size: Sequence[int]) -> int:
    """4 pixels for 28-32 px images, scaled with the image side for bigger (or smaller) ones."""
    return max(1, int(min(image_size) / 8 + 0.5))


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 ``images`` (N, C, H, W) in [0, 1] units (float64 accumulation)."""
    if images.ndim != 4 or images.shape[0] == 0:
        raise ConfigError(
            f"channel_stats needs a non-empty (N, C, H, W) tensor, got shape {tuple(images.shape)}"
        )
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, images.shape[0], chunk):
        x = images[start : start + chunk].to(torch.float64).div_(255.0).transpose(0, 1).reshape(c, -1)
        total += x.sum(dim=1)
        total_sq += (x * x).sum(dim=1)
    n = images.numel() // c
    mean = total / n
    std = (total_sq / n - mean * mean).clamp_min(0).sqrt().clamp_min(1e-3)
    return tuple(round(float(v), 6) for v in mean), tuple(round(float(v), 6) for v in std)
