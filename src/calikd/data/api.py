"""Entry points :func:`dataset_info` and :func:`load_dataset` (conventions: see :mod:`calikd.data`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from calikd.data.dataset import DatasetSplits
from calikd.data.info import DatasetInfo
from calikd.data.registry import BuildContext, check_options, get_spec
from calikd.data.splits import check_seed, check_val_fraction, split_train_val, subsample_train
from calikd.errors import ConfigError

# options every dataset takes, handled here rather than by the dataset's builder
GENERIC_OPTIONS = ("train_subset",)


def dataset_info(name: str, **options: Any) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name`` without loading its files.

    For ``synthetic`` the info depends on the options (and its mean/std on the generated data), so it is
    generated here. ``imagefolder``'s info depends on the folder: use ``load_dataset(...).info``.
    """
    spec = get_spec(name)
    check_options(spec, options)
    if spec.info is not None:
        return spec.info
    if spec.needs_files:
        raise ConfigError(
            f"the info of dataset '{spec.name}' depends on its files",
            hint=f"use load_dataset('{spec.name}', data_dir=...).info",
        )
    return spec.builder(BuildContext(spec=spec, data_dir=None, download=False), **options).info


def load_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    download: bool = False,
    **options: Any,
) -> DatasetSplits:
    """Load dataset ``name`` into memory as train/val/test :class:`DatasetSplits`.

    Files are looked for in ``data_dir``, ``$CALIKD_DATA``, the cache and system folders (see
    :mod:`calikd.data.locate`); when absent, ``download=True`` fetches them into the cache, otherwise a
    :class:`DataError` says where it looked and how to get them. ``val_fraction`` of the official training
    split is held out as val, stratified by class, with ``split_seed`` (see :mod:`calikd.data.splits`).
    ``options`` are dataset-specific (unknown ones are a :class:`ConfigError` listing the valid ones),
    plus ``train_subset=N`` for any dataset: a class-stratified subset of N training samples, drawn after
    val is held out (quick experiments; val and test stay whole).
    """
    spec = get_spec(name)
    val_fraction = check_val_fraction(val_fraction)
    split_seed = check_seed(split_seed)
    options = dict(options)
    generic = {k: options.pop(k) for k in GENERIC_OPTIONS if k in options}
    check_options(spec, options)
    ctx = BuildContext(
        spec=spec,
        data_dir=Path(data_dir).expanduser() if data_dir is not None else None,
        download=bool(download),
        split_seed=split_seed,
    )
    raw = spec.builder(ctx, **options)
    info = raw.info
    if raw.val is not None:
        train, val = raw.train, raw.val
        total = len(train) + len(val)
        val_fraction = len(val) / total if total else 0.0
    else:
        train, val = split_train_val(raw.train, val_fraction, split_seed, spec.name)
    if generic.get("train_subset") is not None:
        train = subsample_train(train, generic["train_subset"], split_seed, spec.name)
    for split_name, split in (("train", train), ("val", val), ("test", raw.test)):
        if len(split) and tuple(split.images.shape[1:]) != (info.in_channels, *info.image_size):
            raise ConfigError(  # pragma: no cover - a builder bug
                f"{spec.name}: {split_name} images have shape {tuple(split.images.shape[1:])}, info says "
                f"{(info.in_channels, *info.image_size)}"
            )
    return DatasetSplits(
        info=info,
        train=train,
        val=val,
        test=raw.test,
        val_fraction=val_fraction,
        split_seed=split_seed,
        options={**options, **generic},
    )
