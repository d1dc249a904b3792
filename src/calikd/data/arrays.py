"""Your own arrays as a dataset: in memory (:func:`from_arrays`) or from a ``.npz`` / ``.safetensors`` file
(the dataset ``arrays``, ``--dataset arrays --data-dir FILE``).

Images are NumPy arrays or torch tensors of shape (N, H, W), (N, C, H, W) or (N, H, W, C) with C 1 or 3, and
are kept as uint8 like every calikd dataset: integer images must lie in [0, 255]; float images must lie in
[0, 1] and are quantised to 1/255 steps (say so, scale, or pass uint8 otherwise). Labels are integers in
[0, num_classes). ``test`` is the split numbers are reported on; ``val`` (what calibration is fitted on)
is yours when given, else held out of train as for any dataset (``val_fraction``, ``split_seed``).
Normalisation statistics are computed from train unless ``mean``/``std`` are given.

A file holds the arrays under the keys ``train_images``, ``train_labels``, ``test_images``, ``test_labels``
and optionally ``val_images``, ``val_labels`` and ``classes`` (a string array in ``.npz``; a JSON list in
the ``.safetensors`` metadata). :func:`save_arrays` writes one. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from calikd.data.dataset import ArrayDataset
from calikd.data.info import DatasetInfo, channel_stats, default_crop_padding
from calikd.data.registry import BuildContext, DatasetSpec, RawDataset, add_spec, get_spec, register_dataset
from calikd.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")
FILE_SUFFIXES = (".npz", ".safetensors")
REQUIRED_KEYS = ("train_images", "train_labels", "test_images", "test_labels")
MEMORY_DESCRIPTION = "arrays registered in memory by calikd.data.from_arrays (this process only)"

Pair = tuple[Any, Any]


def _tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, (list, tuple)):
        try:
            value = np.asarray(value)
        except ValueError as exc:
            raise ConfigError(f"{what} is a ragged list: {exc}") from exc
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise ConfigError(f"{what} is a NumPy array of Python objects; pass numbers")
        return torch.from_numpy(np.ascontiguousarray(value))
    raise ConfigError(f"{what} must be a NumPy array, a torch tensor or a list, got {type(value).__name__}")


def _channels_first(x: torch.Tensor, what: str) -> torch.Tensor:
    if x.ndim == 3:
        return x.unsqueeze(1)
    if x.ndim == 4 and x.shape[1] in (1, 3):
        return x
    if x.ndim == 4 and x.shape[3] in (1, 3):
        return x.permute(0, 3, 1, 2)
    raise ConfigError(
        f"{what} has shape {tuple(x.shape)}; expected (N, H, W), (N, C, H, W) or (N, H, W, C) with C 1 or 3"
    )


def as_uint8_images(images: Any, what: str = "images") -> torch.Tensor:
    """``images`` as uint8 (N, C, H, W), per the module's conventions (clear errors otherwise)."""
    x = _channels_first(_tensor(images, what), what)
    if x.shape[0] == 0:
        raise ConfigError(f"{what} is empty")
    if x.dtype == torch.uint8:
        return x.contiguous()
    if x.dtype == torch.bool:
        raise ConfigError(f"{what} is boolean; pass uint8 (0-255) or float (0-1) images")
    if x.is_floating_point():
        if not bool(torch.isfinite(x).all()):
            raise ConfigError(f"{what} holds NaN or infinite values")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            raise ConfigError(
                f"{what} are floats in [{lo:.4g}, {hi:.4g}]; float images must lie in [0, 1]",
                hint="divide by their maximum (e.g. 255), or pass integer images in [0, 255]",
            )
        return (x.double() * 255.0).round_().to(torch.uint8).contiguous()
    lo, hi = int(x.min()), int(x.max())
    if lo < 0 or hi > 255:
        raise ConfigError(f"{what} are integers in [{lo}, {hi}]; integer images must lie in [0, 255]")
    return x.to(torch.uint8).contiguous()


def _labels(labels: Any, n: int, what: str) -> torch.Tensor:
    y = _tensor(labels, what)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
        raise ConfigError(
            f"{what} must be integer class indices of shape (N,), got {y.dtype} {tuple(y.shape)}"
        )
    if len(y) != n:
        raise ConfigError(f"{what} has {len(y)} labels for {n} images")
    if len(y) and int(y.min()) < 0:
        raise ConfigError(f"{what} holds negative labels ({int(y.min())}); labels are class indices from 0")
    return y.to(torch.int64)


def _split(pair: Any, name: str) -> ArrayDataset:
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise ConfigError(f"{name} must be a pair (images, labels), got {type(pair).__name__}")
    images = as_uint8_images(pair[0], f"{name} images")
    return ArrayDataset(images, _labels(pair[1], images.shape[0], f"{name} labels"))


def _stats(
    values: Sequence[float] | None, channels: int, what: str, default: tuple[float, ...]
) -> tuple[float, ...]:
    if values is None:
        return default
    if isinstance(values, (int, float)):
        values = [values]
    out = tuple(float(v) for v in values)
    if len(out) != channels or not all(math.isfinite(v) for v in out):
        raise ConfigError(f"{what} needs {channels} finite value(s) (one per channel), got {list(values)}")
    if what == "std" and min(out) <= 0:
        raise ConfigError(f"std must be positive, got {list(out)}")
    return out


def arrays_dataset(
    train: Pair,
    test: Pair,
    *,
    val: Pair | None = None,
    classes: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    hflip: bool = False,
    crop_padding: int | None = None,
    name: str = "arrays",
) -> RawDataset:
    """Check and convert arrays into the splits of a dataset called ``name``."""
    splits = {"train": _split(train, "train"), "test": _split(test, "test")}
    if val is not None:
        splits["val"] = _split(val, "val")
    shape = tuple(splits["train"].images.shape[1:])
    for split, data in splits.items():
        if tuple(data.images.shape[1:]) != shape:
            raise ConfigError(
                f"{split} images are {tuple(data.images.shape[1:])} (C, H, W) but train images are {shape}",
                hint="every split needs images of one size and channel count",
            )
    top = max(int(d.labels.max()) for d in splits.values()) + 1
    if classes is not None:
        classes = [str(c) for c in classes]
        if len(set(classes)) != len(classes):
            raise ConfigError(f"class names repeat: {classes}")
        if top > len(classes):
            raise ConfigError(f"labels go up to {top - 1} but {len(classes)} class names were given")
    else:
        classes = [str(i) for i in range(top)]
    if len(classes) < 2:
        raise ConfigError("a classifier needs at least two classes; the labels hold one")
    missing = (splits["train"].labels.bincount(minlength=len(classes)) == 0).nonzero().flatten().tolist()
    if missing:
        raise ConfigError(
            f"class(es) {[classes[i] for i in missing[:5]]} have no training images",
            hint="every class needs training images (pass classes=... only for the classes you have)",
        )
    train_mean, train_std = channel_stats(splits["train"].images)
    channels, h, w = shape
    info = DatasetInfo(
        name=name,
        num_classes=len(classes),
        in_channels=channels,
        image_size=(h, w),
        mean=_stats(mean, channels, "mean", train_mean),
        std=_stats(std, channels, "std", train_std),
        hflip=bool(hflip),
        crop_padding=default_crop_padding((h, w)) if crop_padding is None else int(crop_padding),
        classes=tuple(classes),
    )
    return RawDataset(info=info, train=splits["train"], test=splits["test"], val=splits.get("val"))


def from_arrays(
    train: Pair,
    test: Pair,
    *,
    val: Pair | None = None,
    classes: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    hflip: bool = False,
    crop_padding: int | None = None,
    name: str = "memory",
) -> str:
    """Register in-memory arrays as the dataset ``name`` for this process and return the name.

    ``train``, ``test`` and ``val`` are ``(images, labels)`` pairs (see the module docstring). Use the name
    wherever a dataset name goes: ``load_dataset(name)``, ``TeacherConfig(dataset=name)``,
    ``DistillConfig(dataset=name)``. Calling it again with the same name replaces the arrays; a built-in
    dataset's name is refused. Other processes (the CLI) do not see it: :func:`save_arrays` writes a file
    for ``--dataset arrays --data-dir FILE``.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("from_arrays needs a non-empty dataset name")
    try:
        existing = get_spec(name)
    except ConfigError:
        existing = None
    if existing is not None and existing.description != MEMORY_DESCRIPTION:
        raise ConfigError(
            f"'{name}' is the name of a registered dataset ({existing.name}); pick another name",
            hint="e.g. from_arrays(..., name='my-data')",
        )
    canonical = existing.name if existing is not None else name.strip()
    raw = arrays_dataset(
        train, test, val=val, classes=classes, mean=mean, std=std, hflip=hflip,
        crop_padding=crop_padding, name=canonical,
    )  # fmt: skip

    def build(ctx: BuildContext) -> RawDataset:
        return raw

    spec = DatasetSpec(
        name=canonical, builder=build, info=raw.info, needs_files=False, description=MEMORY_DESCRIPTION
    )
    add_spec(spec, replace=existing is not None)
    return canonical


def _as_numpy_images(pair: Pair, what: str) -> tuple[np.ndarray, np.ndarray]:
    data = _split(pair, what)
    return data.images.numpy(), data.labels.numpy()


def save_arrays(
    path: str | os.PathLike[str],
    train: Pair,
    test: Pair,
    *,
    val: Pair | None = None,
    classes: Sequence[str] | None = None,
) -> Path:
    """Write splits to ``path`` (``.npz`` or ``.safetensors``) for ``--dataset arrays --data-dir PATH``."""
    path = Path(path)
    if path.suffix not in FILE_SUFFIXES:
        raise ConfigError(f"'{path}': the file must end in .npz or .safetensors")
    arrays: dict[str, np.ndarray] = {}
    for split, pair in (("train", train), ("val", val), ("test", test)):
        if pair is not None:
            arrays[f"{split}_images"], arrays[f"{split}_labels"] = _as_numpy_images(pair, split)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")
    if path.suffix == ".npz":
        if classes is not None:
            arrays["classes"] = np.asarray([str(c) for c in classes], dtype=np.str_)
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    else:
        from safetensors.numpy import save_file

        meta = {"classes": json.dumps([str(c) for c in classes])} if classes is not None else None
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


def load_array_file(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The arrays of a ``.npz`` or ``.safetensors`` file and the latter's string metadata (never unpickled:
    ``.npz`` is read with ``allow_pickle=False``)."""
    if not path.is_file():
        raise DataError(
            f"'{path}' is not a file", hint="--data-dir takes the .npz or .safetensors file itself"
        )
    if path.suffix not in FILE_SUFFIXES:
        raise DataError(f"'{path}': the arrays file must end in .npz or .safetensors")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}, {}
        from safetensors import safe_open

        with safe_open(str(path), framework="np") as fh:
            arrays = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open has no iterator)
            return arrays, dict(fh.metadata() or {})
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"cannot read '{path}': {exc}") from exc


def read_arrays_file(path: Path) -> tuple[dict[str, np.ndarray], list[str] | None]:
    """The arrays and class names in a ``.npz`` or ``.safetensors`` file of splits (no pickle)."""
    arrays, meta = load_array_file(path)
    classes = arrays.pop("classes", None)
    names = None if classes is None else [str(c) for c in classes.tolist()]
    if "classes" in meta:
        try:
            names = json.loads(meta["classes"])
        except ValueError as exc:
            raise DataError(f"cannot read the class names in '{path}': {exc}") from exc
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise DataError(
            f"'{path}' lacks the array(s) {missing}; it has {sorted(arrays)}",
            hint="keys: train_images, train_labels, test_images, test_labels "
            "[, val_images, val_labels, classes]",
        )
    return arrays, names


@register_dataset(
    "arrays",
    aliases=("npz",),
    needs_files=True,
    description="your own arrays in a .npz or .safetensors file (train/test[/val]_images/_labels); "
    "pass the file as data_dir",
)
def build_arrays(
    ctx: BuildContext,
    *,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    hflip: bool = False,
    crop_padding: int | None = None,
) -> RawDataset:
    """Load the splits of ``data_dir`` (a ``.npz`` or ``.safetensors`` file)."""
    if ctx.data_dir is None:
        raise ConfigError(
            "dataset 'arrays' needs data_dir: the .npz or .safetensors file holding the arrays",
            hint="pass --data-dir FILE (data_dir=FILE); calikd.data.save_arrays writes one",
        )
    arrays, classes = read_arrays_file(Path(ctx.data_dir).expanduser())
    val = None
    if "val_images" in arrays or "val_labels" in arrays:
        if not ("val_images" in arrays and "val_labels" in arrays):
            raise DataError(f"'{ctx.data_dir}' has only one of val_images / val_labels")
        val = (arrays["val_images"], arrays["val_labels"])
    return arrays_dataset(
        (arrays["train_images"], arrays["train_labels"]),
        (arrays["test_images"], arrays["test_labels"]),
        val=val, classes=classes, mean=mean, std=std, hflip=hflip, crop_padding=crop_padding,
    )  # fmt: skip
