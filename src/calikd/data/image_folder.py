"""``imagefolder``: a tree ``root/<split>/<class>/<image>`` (PNG, JPEG, ...) or a flat tree
``root/<class>/<image>``, with ``root`` as ``data_dir``.

Split tree: ``train`` and ``test`` are required; ``val`` (or ``valid``) is optional and handled by the option
``valid``: ``"use"`` (default) makes it our val split (``val_fraction`` is then ignored), ``"merge"`` adds it
to train before val is held out, ``"ignore"`` skips it. Classes are the sorted folder names under ``train``.
Flat tree (no ``train``/``test`` folders, one folder per class): ``test_fraction`` (default 0.2) of every
class becomes the test split, stratified and seeded by ``split_seed`` (a stream of its own, so val, held out
of the rest by ``val_fraction`` as for any dataset, never overlaps it).
Images are decoded once and cached (see :mod:`calikd.data.decode`); mean/std come from the train split.

Options: ``image_size`` (int or (H, W): resize everything; required when sizes differ), ``in_channels``
(1 or 3; default: 1 when every image is grayscale), ``valid``, ``test_fraction`` (flat trees only),
``hflip`` (default True), ``crop_padding`` (default scales with the image size), ``cache_dir`` (where
decoded arrays go).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import replace
from pathlib import Path

from calikd.data.dataset import ArrayDataset
from calikd.data.decode import check_channels, check_image_size, decode_cached, list_images
from calikd.data.info import DatasetInfo, channel_stats, default_crop_padding
from calikd.data.registry import BuildContext, RawDataset, register_dataset
from calikd.data.splits import stratified_split_indices
from calikd.errors import ConfigError, DataError, did_you_mean

VALID_CHOICES = ("use", "merge", "ignore")
SPLIT_NAMES = ("train", "test", "val", "valid")
FLAT_TEST_FRACTION = 0.2


class DataWarning(UserWarning):
    """A dataset that loads but is probably not what was meant (e.g. a class without training images)."""


def check_valid_choice(valid: str) -> str:
    """One of ``use``, ``merge``, ``ignore``."""
    if valid not in VALID_CHOICES:
        raise ConfigError(
            f"unknown value valid='{valid}'{did_you_mean(str(valid), VALID_CHOICES)}",
            hint="use: the folder's own val split is ours; merge: add it to train; ignore: skip it",
        )
    return valid


def class_folders(split_dir: Path) -> list[str]:
    """Sorted names of the non-hidden sub-folders of ``split_dir``."""
    try:
        return sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
    except OSError as exc:
        raise DataError(f"cannot list '{split_dir}': {exc.strerror or exc}") from exc


def scan_split(split_dir: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    """Files and labels of ``split_dir/<class>/*``; an unknown class folder is a :class:`DataError`."""
    present = class_folders(split_dir)
    unknown = [c for c in present if c not in classes]
    if unknown:
        raise DataError(
            f"'{split_dir}' has class folder(s) {unknown[:5]} that the train split does not have",
            hint="every class of val/test must also be a class folder under train/",
        )
    files: list[Path] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        if cls in present:
            images = list_images(split_dir / cls)
            files += images
            labels += [label] * len(images)
    return files, labels


def decode_class_split(
    name: str,
    split: str,
    split_dir: Path,
    classes: list[str],
    *,
    channels: int | None,
    image_size: tuple[int, int] | None,
    cache_dir: str | os.PathLike[str] | None,
) -> ArrayDataset:
    """Scan ``split_dir/<class>/*`` and decode it through the cache."""
    files, labels = scan_split(split_dir, classes)
    if not files:
        raise DataError(f"no image files under '{split_dir}/<class>/'")
    return decode_cached(
        name, split, split_dir, files, labels, channels=channels, image_size=image_size, cache_dir=cache_dir
    )


def check_classes_trained(
    train_dir: Path, classes: list[str], train: ArrayDataset, test: ArrayDataset
) -> None:
    """Every class needs training images: an empty class folder is an error, or a warning when the test
    split has images of that class (the model can then be scored on it, and will miss every one)."""
    counts = train.labels.bincount(minlength=len(classes)).tolist()
    tested = test.labels.bincount(minlength=len(classes)).tolist()
    empty = [c for c, n in zip(classes, counts, strict=True) if n == 0]
    if not empty:
        return
    folders = ", ".join(f"'{train_dir / c}'" for c in empty[:5]) + (" ..." if len(empty) > 5 else "")
    untested = [c for c in empty if tested[classes.index(c)] == 0]
    if untested:
        raise DataError(
            f"class folder(s) {folders} hold no images: a class without training or test images cannot be "
            "learnt or scored",
            hint="add images to it, or remove the empty folder",
        )
    warnings.warn(
        f"class folder(s) {folders} hold no training images; the model cannot learn these classes, but the "
        "test split has images of them",
        DataWarning,
        stacklevel=3,
    )


def check_same_size(train: ArrayDataset, other: ArrayDataset, split: str) -> None:
    """A :class:`DataError` unless ``other``'s images have train's size."""
    if other.images.shape[2:] != train.images.shape[2:]:
        th, tw = train.images.shape[2:]
        oh, ow = other.images.shape[2:]
        raise DataError(
            f"the {split} images are {oh}x{ow} (HxW) but the train images are {th}x{tw}",
            hint="pass image_size=N or (H, W) to resize every image to one size",
        )


def find_split_dir(root: Path, names: tuple[str, ...]) -> Path | None:
    """The first of ``root/<name>`` that is a folder."""
    for n in names:
        if (root / n).is_dir():
            return root / n
    return None


@register_dataset(
    "imagefolder",
    aliases=("image-folder", "image_folder", "folder"),
    needs_files=True,
    description="your own tree root/{train,test[,val]}/<class>/<image> or root/<class>/<image>; "
    "pass the root as data_dir",
)
def build_imagefolder(
    ctx: BuildContext,
    *,
    image_size: int | tuple[int, int] | None = None,
    in_channels: int | None = None,
    valid: str = "use",
    hflip: bool = True,
    crop_padding: int | None = None,
    cache_dir: str | None = None,
    test_fraction: float | None = None,
) -> RawDataset:
    """Load ``data_dir/{train,test[,val|valid]}/<class>/<image>`` or a flat ``data_dir/<class>/<image>``."""
    if ctx.data_dir is None:
        raise ConfigError(
            "dataset 'imagefolder' needs data_dir: the folder holding train/ and test/ (each with one "
            "sub-folder per class)",
            hint="pass --data-dir ROOT (data_dir=ROOT)",
        )
    root = Path(ctx.data_dir).expanduser()
    size = check_image_size(image_size)
    channels = check_channels(in_channels)
    valid = check_valid_choice(valid)
    train_dir, test_dir = find_split_dir(root, ("train",)), find_split_dir(root, ("test",))
    kwargs = {"channels": channels, "image_size": size, "cache_dir": cache_dir}
    if train_dir is None and test_dir is None and root.is_dir():
        raw = _flat_tree(root, test_fraction, ctx.split_seed, kwargs)
        return _raw(raw[0], raw[1], None, raw[2], hflip, crop_padding)
    if not root.is_dir():
        raise DataError(f"'{root}' is not a folder", hint="pass the root of the image tree as data_dir")
    if train_dir is None or test_dir is None:
        raise DataError(
            f"'{root}' is not an image-folder tree: it has {'train' if test_dir is None else 'test'}/ but "
            f"no {'test' if test_dir is None else 'train'}/ (a split tree needs both, each with one folder "
            "per class, and optionally val/)",
            hint="or use a flat root/<class>/<image> tree: it is split by test_fraction and val_fraction",
        )
    if test_fraction is not None:
        raise ConfigError(
            f"test_fraction applies to a flat root/<class>/ tree; '{root}' has its own test/ split",
            hint="drop test_fraction (the test/ folder is the test split)",
        )
    classes = class_folders(train_dir)
    if not classes:
        raise DataError(f"'{train_dir}' has no class folders")
    if len(classes) == 1:
        raise DataError(
            f"'{train_dir}' has a single class folder ('{classes[0]}'): a classifier needs at least two "
            "classes (with one, every prediction is right and every metric is trivially perfect)",
            hint="put one sub-folder per class under train/ (and test/)",
        )
    ds_name = "imagefolder"
    train = decode_class_split(ds_name, "train", train_dir, classes, **kwargs)
    kwargs["channels"] = train.images.shape[1]  # the other splits follow train's channel count
    test = decode_class_split(ds_name, "test", test_dir, classes, **kwargs)
    check_same_size(train, test, "test")
    check_classes_trained(train_dir, classes, train, test)
    val_dir = find_split_dir(root, ("val", "valid"))
    val = None
    if val_dir is not None and valid != "ignore":
        extra = decode_class_split(ds_name, "val", val_dir, classes, **kwargs)
        check_same_size(train, extra, "val")
        if valid == "merge":
            train = ArrayDataset.concat([train, extra])
        else:
            val = extra
    return _raw(train, test, val, classes, hflip, crop_padding)


def _raw(
    train: ArrayDataset,
    test: ArrayDataset,
    val: ArrayDataset | None,
    classes: list[str],
    hflip: bool,
    crop_padding: int | None,
) -> RawDataset:
    mean, std = channel_stats(train.images)
    h, w = train.images.shape[2:]
    info = DatasetInfo(
        name="imagefolder",
        num_classes=len(classes),
        in_channels=train.images.shape[1],
        image_size=(h, w),
        mean=mean,
        std=std,
        hflip=bool(hflip),
        crop_padding=default_crop_padding((h, w)) if crop_padding is None else crop_padding,
        classes=tuple(classes),
    )
    return RawDataset(info=info, train=train, test=test, val=val)


def _flat_tree(
    root: Path, test_fraction: float | None, split_seed: int, kwargs: dict
) -> tuple[ArrayDataset, ArrayDataset, list[str]]:
    """A flat ``root/<class>/<image>`` tree, split into (train, test) by class and seed."""
    fraction = FLAT_TEST_FRACTION if test_fraction is None else test_fraction
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
        raise ConfigError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")
    classes = class_folders(root)
    named = [c for c in classes if c.lower() in SPLIT_NAMES]
    if named:
        raise DataError(
            f"'{root}' mixes split folders {named} with other folders: it is neither a split tree "
            "(train/, test/[, val/]) nor a flat tree of class folders",
            hint="put every split under train/ and test/, or use one folder per class only",
        )
    if len(classes) < 2:
        raise DataError(
            f"'{root}' is not an image-folder tree: it needs train/ and test/ sub-folders (each with one "
            f"folder per class, optionally val/) or, flat, one folder per class (at least two; it has "
            f"{len(classes)})"
        )
    data = decode_class_split("imagefolder", "all", root, classes, **kwargs)
    counts = data.labels.bincount(minlength=len(classes)).tolist()
    empty = [c for c, n in zip(classes, counts, strict=True) if n < 2]
    if empty:
        raise DataError(
            f"class folder(s) {empty[:5]} under '{root}' hold fewer than 2 images: a class needs images "
            "in both train and test"
        )
    train_idx, test_idx = stratified_split_indices(
        data.labels, float(fraction), split_seed, "imagefolder-test"
    )
    return data.subset(train_idx), data.subset(test_idx), classes


def with_classes(info: DatasetInfo, classes: list[str]) -> DatasetInfo:
    """``info`` with its class list replaced (and ``num_classes`` to match)."""
    return replace(info, num_classes=len(classes), classes=tuple(classes))
