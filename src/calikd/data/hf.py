"""``hf``: a dataset saved by Hugging Face ``datasets`` (``save_to_disk``) or its parquet files, with
``data_dir`` the saved folder, a folder of ``<split>-*.parquet`` files (the Hub's layout, also under
``data/``) or one ``.parquet`` file per split given as ``train_files``/``test_files``.

Images and labels are read by column name (``image_column``, default ``image``; ``label_column``, default
``label``): an ``Image`` feature (encoded bytes, decoded here with Pillow's size checks) or arrays of pixels.
Class names come from a ``ClassLabel`` feature when there is one. The splits are ``train_split`` and
``test_split``; ``val_split`` (default: ``validation`` or ``val`` when present) becomes our val split, so
calibration is fitted on the split you chose. Needs the optional extra ``calikd[hf]`` (``datasets``).
Loading reads Arrow/parquet data and JSON only: nothing is unpickled and no code from the folder runs.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from calikd.data.arrays import arrays_dataset
from calikd.data.decode import GRAY_MODES, check_channels, check_image_size, check_pixels
from calikd.data.registry import BuildContext, RawDataset, register_dataset
from calikd.errors import ConfigError, DataError

VAL_NAMES = ("validation", "val", "valid")


def _datasets() -> Any:
    try:
        import datasets
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise ConfigError(
            "dataset 'hf' needs the Hugging Face 'datasets' package",
            hint="pip install 'calikd[hf]'",
        ) from None
    return datasets


def _parquet_splits(root: Path) -> dict[str, list[str]]:
    folder = root / "data" if (root / "data").is_dir() else root
    files = sorted(folder.glob("*.parquet"))
    splits: dict[str, list[str]] = {}
    for f in files:
        splits.setdefault(f.name.split("-")[0].split(".")[0], []).append(str(f))
    return splits


def _open(root: Path) -> dict[str, Any]:
    """Split name -> a ``datasets.Dataset``."""
    datasets = _datasets()
    if not root.exists():
        raise DataError(
            f"'{root}' does not exist", hint="pass the folder written by save_to_disk as data_dir"
        )
    if root.is_dir() and ((root / "dataset_dict.json").is_file() or (root / "state.json").is_file()):
        try:
            loaded = datasets.load_from_disk(str(root))
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"cannot read the saved dataset '{root}': {exc}") from exc
        if isinstance(loaded, datasets.Dataset):
            raise DataError(
                f"'{root}' holds a single split; calikd needs named splits (train and test)",
                hint="save a DatasetDict({'train': ..., 'test': ...}) with save_to_disk",
            )
        return dict(loaded)
    files = {root.stem.split("-")[0]: [str(root)]} if root.suffix == ".parquet" else _parquet_splits(root)
    if not files:
        raise DataError(
            f"'{root}' is neither a folder written by save_to_disk nor a folder of <split>-*.parquet files"
        )
    try:
        return dict(datasets.load_dataset("parquet", data_files=files))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the parquet files under '{root}': {exc}") from exc


def _pick_split(splits: dict[str, Any], name: str | None, role: str, root: Path) -> str | None:
    if name is not None:
        if name not in splits:
            raise DataError(f"'{root}' has no split '{name}' (its splits: {sorted(splits)})")
        return name
    if role == "val":
        return next((n for n in VAL_NAMES if n in splits), None)
    return None


def _decode(value: Any, channels: int | None, size: tuple[int, int] | None, where: str) -> np.ndarray:
    if isinstance(value, dict):  # an Image feature read without decoding: {"bytes": ..., "path": ...}
        data = value.get("bytes")
        if data is None:
            raise DataError(f"{where}: the image has no embedded bytes (only a path: {value.get('path')!r})")
        value = Image.open(io.BytesIO(data))
    if isinstance(value, Image.Image):
        check_pixels(where, value)  # before any pixel buffer is allocated, as for image files
        w, h = value.size
        mode = "L" if channels == 1 or (channels is None and value.mode in GRAY_MODES) else "RGB"
        value = value.convert(mode)
        if size is not None and (h, w) != size:
            value = value.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        return np.asarray(value, dtype=np.uint8)
    arr = np.asarray(value)
    if arr.dtype == object:
        raise DataError(f"{where}: cannot read pixels from a {type(value).__name__}")
    return arr


def _split_arrays(
    ds: Any,
    image_column: str,
    label_column: str,
    channels: int | None,
    size: tuple[int, int] | None,
    where: str,
) -> tuple[np.ndarray, np.ndarray]:
    datasets = _datasets()
    for column in (image_column, label_column):
        if column not in ds.column_names:
            raise DataError(
                f"{where} has no column '{column}' (its columns: {ds.column_names})",
                hint="pass image_column=... / label_column=...",
            )
    if isinstance(ds.features[image_column], datasets.Image):
        ds = ds.cast_column(image_column, datasets.Image(decode=False))
    images = [_decode(v, channels, size, f"{where} row {i}") for i, v in enumerate(ds[image_column])]
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise DataError(
            f"{where}: images have mixed shapes {sorted(shapes)[:3]}",
            hint="pass image_size=N or (H, W) to resize every image to one size",
        )
    stacked = np.stack(images)
    if stacked.ndim == 4 and channels == 1 and stacked.shape[3] == 3:
        stacked = stacked.mean(axis=3).round().astype(stacked.dtype)
    return stacked, np.asarray(ds[label_column])


@register_dataset(
    "hf",
    aliases=("huggingface", "parquet"),
    needs_files=True,
    description="a Hugging Face dataset saved with save_to_disk, or its parquet files; pass the folder as "
    "data_dir (needs calikd[hf])",
)
def build_hf(
    ctx: BuildContext,
    *,
    image_column: str = "image",
    label_column: str = "label",
    train_split: str = "train",
    test_split: str = "test",
    val_split: str | None = None,
    image_size: int | tuple[int, int] | None = None,
    in_channels: int | None = None,
    hflip: bool = False,
    crop_padding: int | None = None,
) -> RawDataset:
    """Read train/test (and val) splits from a Hugging Face dataset on disk."""
    if ctx.data_dir is None:
        raise ConfigError(
            "dataset 'hf' needs data_dir: the folder written by save_to_disk (or of parquet files)",
            hint="pass --data-dir FOLDER (data_dir=FOLDER)",
        )
    root = Path(ctx.data_dir).expanduser()
    size, channels = check_image_size(image_size), check_channels(in_channels)
    splits = _open(root)
    train = _pick_split(splits, train_split, "train", root)
    test = _pick_split(splits, test_split, "test", root)
    val = _pick_split(splits, val_split, "val", root)
    feature = splits[train].features.get(label_column)
    classes = list(feature.names) if hasattr(feature, "names") else None
    read = {
        name: _split_arrays(splits[name], image_column, label_column, channels, size, f"split '{name}'")
        for name in (train, val, test)
        if name is not None
    }
    return arrays_dataset(
        read[train], read[test], val=read.get(val) if val else None, classes=classes, hflip=hflip,
        crop_padding=crop_padding, name="hf",
    )  # fmt: skip
