"""What a checkpoint's model expects as input, read from its metadata: always applied, never guessed.

A model sees images normalised with the ``normalization`` its checkpoint records (``{"mean": [...], "std":
[...]}``, one value per input channel, in [0, 1] pixel units), at ``input_size`` (H, W) with ``in_channels``
channels. Every calikd checkpoint records these; a checkpoint written by hand must too. A missing or
inconsistent field is a :class:`CheckpointError` when the checkpoint is loaded, naming the field and the fix,
rather than a silent fallback to the dataset's statistics (which would compute calibration and distillation
targets from wrongly preprocessed inputs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from calikd.errors import CheckpointError

EXAMPLE = (
    '{"model": {"name": "cnn", "kwargs": {}}, "num_classes": 10, "in_channels": 1, "input_size": [28, 28], '
    '"normalization": {"mean": [0.286], "std": [0.353]}, "dataset": {"name": "fashion-mnist"}}'
)


@dataclass(frozen=True)
class Preprocessing:
    """A model's input: channels, size (H, W) and per-channel normalisation."""

    in_channels: int
    input_size: tuple[int, int] | None
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std)}

    def same_normalization(self, mean: Sequence[float], std: Sequence[float]) -> bool:
        """Whether ``(mean, std)`` is this normalisation (exactly: then inputs can be shared bit for bit)."""
        return tuple(float(v) for v in mean) == self.mean and tuple(float(v) for v in std) == self.std


def _numbers(value: Any, channels: int, field: str, path: str) -> tuple[float, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != channels:
        raise CheckpointError(
            f"checkpoint '{path}': normalization.{field} must list one number per input channel "
            f"({channels}), got {value!r}",
            hint=f"fix its .json metadata; e.g. {EXAMPLE}",
        )
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            raise CheckpointError(
                f"checkpoint '{path}': normalization.{field} holds {v!r}, not a finite number"
            )
        out.append(float(v))
    if field == "std" and min(out) <= 0:
        raise CheckpointError(f"checkpoint '{path}': normalization.std must be positive, got {list(value)}")
    return tuple(out)


def per_channel(value: float | Sequence[float], channels: int) -> list[float]:
    """A normalisation statistic as floats, one number standing for every channel."""
    if isinstance(value, (int, float)):
        return [float(value)] * channels
    return [float(v) for v in value]


def checkpoint_preprocessing(meta: Mapping[str, Any], path: str = "checkpoint") -> Preprocessing:
    """The input a checkpoint's model expects (a :class:`CheckpointError` naming what is missing)."""
    channels = meta.get("in_channels")
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise CheckpointError(
            f"checkpoint '{path}' does not record in_channels (an integer), so its input is unknown",
            hint=f"its .json metadata needs the model's input; e.g. {EXAMPLE}",
        )
    norm = meta.get("normalization")
    if not isinstance(norm, Mapping) or "mean" not in norm or "std" not in norm:
        raise CheckpointError(
            f"checkpoint '{path}' does not record the normalization its model was trained with "
            "(normalization: {mean: [...], std: [...]})",
            hint="calikd never guesses it from the dataset: add it to the .json metadata (mean 0 and std 1 "
            f"for a model fed raw [0, 1] pixels); e.g. {EXAMPLE}",
        )
    size = meta.get("input_size")
    input_size = None
    if size is not None:
        ok = isinstance(size, Sequence) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)
        if not ok:
            raise CheckpointError(f"checkpoint '{path}': input_size must be [H, W], got {size!r}")
        input_size = (int(size[0]), int(size[1]))
    return Preprocessing(
        in_channels=channels,
        input_size=input_size,
        mean=_numbers(norm["mean"], channels, "mean", path),
        std=_numbers(norm["std"], channels, "std", path),
    )


def checkpoint_dataset(meta: Mapping[str, Any], path: str = "checkpoint") -> dict[str, Any]:
    """The ``dataset`` section of a checkpoint's metadata as a dict (a bare name is ``{"name": name}``)."""
    ds = meta.get("dataset")
    if ds is None:
        return {}
    if isinstance(ds, str):
        return {"name": ds}
    if not isinstance(ds, Mapping):
        raise CheckpointError(
            f"checkpoint '{path}': its metadata's dataset must be a name or a mapping, "
            f"got {type(ds).__name__}"
        )
    return dict(ds)
