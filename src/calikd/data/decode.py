"""Decode trees of image files once with Pillow and cache the result as ``.npy`` arrays.

The cache entry of a split lives in ``<cache>/decoded/<name>-<split>-<key>/`` (``images.npy``,
``labels.npy``, ``meta.json`` written last). ``key`` hashes the dataset name, split, the resolved root, the
decoding options and the list of (relative path, digest of the file's bytes, label) of every file, so
adding, removing, relabelling, replacing or editing a file in place decodes again, while a later load with
the same files reads every file once (to hash it, far cheaper than decoding) and the arrays
(``np.load(..., allow_pickle=False)``), without decoding any image. ``meta.json`` records the arrays' SHA-256:
a damaged entry (or any that cannot be read) is decoded again.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tokenize
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from calikd.data.dataset import ArrayDataset
from calikd.data.locate import cache_root
from calikd.errors import ConfigError, DataError
from calikd.utils.hashing import file_sha256
from calikd.utils.io import atomic_write, atomic_write_json

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff")
CACHE_VERSION = 3  # 2: meta.json records the arrays' SHA-256; 3: keyed by the files' content
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


def is_image_file(path: Path) -> bool:
    """Whether ``path`` has an image extension (case-insensitive) and is not hidden."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise DataError(f"cannot list '{folder}': {exc.strerror or exc}") from exc
    return [Path(e.path) for e in entries if e.is_file() and is_image_file(Path(e.name))]


def check_image_size(image_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """``None``, an int or (H, W) -> ``None`` or (H, W) of positive ints."""
    if image_size is None:
        return None
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        pair: Sequence[Any] = (image_size, image_size)
    else:
        pair = image_size
    if (
        isinstance(pair, (str, bytes))
        or len(pair) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pair)
    ):
        raise ConfigError(f"image_size must be a positive int or (H, W), got {image_size!r}")
    return int(pair[0]), int(pair[1])


def check_channels(channels: int | None) -> int | None:
    """``None`` (automatic), 1 or 3."""
    if channels is not None and (isinstance(channels, bool) or channels not in (1, 3)):
        raise ConfigError(f"in_channels must be 1 or 3 (or None for automatic), got {channels!r}")
    return channels


#: What Pillow raises for a damaged file: OSError (and UnidentifiedImageError), but its format plugins'
#: parsers also raise these directly, and DecompressionBombError above 2 x ``Image.MAX_IMAGE_PIXELS`` pixels.
_PIL_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    EOFError,
    Image.DecompressionBombError,
)


def check_pixels(path: Path | str, im: Image.Image) -> None:
    """Refuse an image whose header claims more pixels than Pillow's decompression-bomb limit, before any
    pixel buffer is allocated (Pillow itself only warns up to twice that limit)."""
    limit = Image.MAX_IMAGE_PIXELS
    w, h = im.size
    if limit is not None and w * h > limit:
        raise DataError(
            f"image '{path}' claims {h}x{w} (HxW) = {w * h} pixels, more than Pillow's limit of {limit}: a "
            "damaged file or a decompression bomb",
            hint="if the file is genuine, raise PIL.Image.MAX_IMAGE_PIXELS before loading the dataset",
        )


def _first_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            check_pixels(path, im)
            return im.size[1], im.size[0]
    except _PIL_ERRORS as exc:
        raise DataError(f"cannot read image '{path}': {exc}") from exc


def _decode_one(
    path: Path, size: tuple[int, int], resize: bool, channels: int | None, first: Path
) -> tuple[np.ndarray, bool]:
    """(H, W, 3) or (H, W, 1) uint8 array, and whether the source was grayscale."""
    try:
        with Image.open(path) as im:
            check_pixels(path, im)
            same_size = (im.size[1], im.size[0]) == size
            if not (same_size or resize):  # checked before decoding anything
                raise DataError(
                    f"images have mixed sizes: '{path}' is {im.size[1]}x{im.size[0]} (HxW) but "
                    f"'{first}' is {size[0]}x{size[1]}",
                    hint="pass image_size=N or (H, W) to resize every image to one size",
                )
            gray = im.mode in GRAY_MODES
            target_mode = "L" if channels == 1 or (channels is None and gray) else "RGB"
            im = im.convert(target_mode)
            if not same_size:
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except _PIL_ERRORS as exc:
        raise DataError(f"cannot decode image '{path}': {exc}") from exc
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return arr, gray


def decode_images(
    paths: Sequence[Path],
    *,
    channels: int | None = None,
    image_size: tuple[int, int] | None = None,
    desc: str = "decoding images",
    workers: int | None = None,
) -> np.ndarray:
    """Decode ``paths`` into a uint8 (N, C, H, W) array.

    ``channels`` 1 or 3 converts every image (grayscale <-> RGB, alpha dropped); ``None`` gives 1 channel
    when every image is grayscale, else 3. Without ``image_size`` every image must have the first one's size.
    """
    channels = check_channels(channels)
    if not paths:
        raise DataError("no image files to decode")
    size = image_size if image_size is not None else _first_size(paths[0])
    resize = image_size is not None
    n = len(paths)
    shape = (n, 3 if channels is None else channels, *size)
    try:
        out = np.empty(shape, dtype=np.uint8)
    except MemoryError:
        raise DataError(
            f"{n} images of {size[0]}x{size[1]} (HxW, the size of '{paths[0]}') need "
            f"{np.prod(shape, dtype=float) / 2**30:.1f} GiB, more than this machine can allocate",
            hint="pass image_size=N or (H, W) to resize every image to a smaller size",
        ) from None
    all_gray = True
    workers = workers or min(8, os.cpu_count() or 1)
    chunk = 256

    def run(start: int) -> bool:
        chunk_gray = True
        for i in range(start, min(start + chunk, n)):
            arr, gray = _decode_one(paths[i], size, resize, channels, paths[0])
            out[i] = arr.transpose(2, 0, 1)  # in automatic mode a gray image broadcasts to 3 channels
            chunk_gray &= gray
        return chunk_gray

    starts = range(0, n, chunk)
    with (
        tqdm(total=n, desc=desc, unit="img", disable=None, leave=False) as bar,
        ThreadPoolExecutor(max_workers=workers) as pool,
    ):
        for start, gray in zip(starts, pool.map(run, starts), strict=True):
            all_gray &= gray
            bar.update(min(chunk, n - start))
    if channels is None:
        return np.ascontiguousarray(out[:, :1]) if all_gray else out
    return out


def _cache_key(
    name: str, split: str, root: Path, files: Sequence[Path], labels: Sequence[int], options: dict
) -> str:
    h = hashlib.sha256()
    h.update(
        json.dumps(
            {
                "v": CACHE_VERSION,
                "name": name,
                "split": split,
                "root": str(root.resolve()),
                "options": options,
            },
            sort_keys=True,
        ).encode()
    )
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        digests = pool.map(_content_digest, files)
        for path, label, digest in zip(files, labels, digests, strict=True):
            name = os.fsencode(path.relative_to(root).as_posix())  # the bytes on disk, UTF-8 or not
            h.update(b"\n" + name + f"\t{digest}\t{label}".encode())
    return h.hexdigest()


def _content_digest(path: Path) -> str:
    """A digest of the file's bytes: an image edited in place (same name, same size) is a new entry."""
    digest = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    except OSError as exc:
        raise DataError(f"cannot read '{path}': {exc.strerror or exc}") from exc
    return digest.hexdigest()


_ARRAYS = ("images.npy", "labels.npy")


def _load_cached(folder: Path, key: str, count: int) -> ArrayDataset | None:
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if not isinstance(meta, dict) or meta.get("key") != key or meta.get("count") != count:
            return None
        sha = meta.get("sha256")
        if not isinstance(sha, dict) or any(file_sha256(folder / n) != sha.get(n) for n in _ARRAYS):
            return None  # a damaged (or half-replaced) entry
        # memory-mapped first: numpy checks the header's shape against the file size before anything is
        # allocated (a plain np.load of a damaged header would try to allocate whatever it claims)
        images = np.load(folder / "images.npy", mmap_mode="r", allow_pickle=False)
        labels = np.load(folder / "labels.npy", mmap_mode="r", allow_pickle=False)
        ok = images.dtype == np.uint8 and images.ndim == 4 and images.shape[0] == count
        if not (ok and labels.shape == (count,) and labels.dtype.kind in "iu"):
            return None
        images, labels = np.array(images), np.array(labels, dtype=np.int64)
    except (OSError, ValueError, EOFError, OverflowError, RecursionError, SyntaxError, tokenize.TokenError):
        return None  # damaged cache: decode again
    return ArrayDataset(torch.from_numpy(images), torch.from_numpy(labels))


def decode_cached(
    name: str,
    split: str,
    root: Path,
    files: Sequence[Path],
    labels: Sequence[int],
    *,
    channels: int | None = None,
    image_size: tuple[int, int] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> ArrayDataset:
    """Decoded images of ``files`` (under ``root``) with ``labels``: from the cache, or decoded and cached."""
    if len(files) != len(labels):
        raise DataError(f"{len(files)} files but {len(labels)} labels")
    if not files:
        raise DataError(f"no image files found for the {split} split of {name} under '{root}'")
    options = {"channels": channels, "image_size": list(image_size) if image_size else None}
    key = _cache_key(name, split, root, files, labels, options)
    base = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    folder = base / "decoded" / f"{name}-{split}-{key[:24]}"
    cached = _load_cached(folder, key, len(files))
    if cached is not None:
        return cached
    images = decode_images(files, channels=channels, image_size=image_size, desc=f"decoding {name} {split}")
    label_arr = np.asarray(labels, dtype=np.int64)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_write(folder / "images.npy") as fh:
            np.save(fh, images, allow_pickle=False)
        with atomic_write(folder / "labels.npy") as fh:
            np.save(fh, label_arr, allow_pickle=False)
        atomic_write_json(
            folder / "meta.json",
            {
                "key": key,
                "count": len(files),
                "name": name,
                "split": split,
                "root": str(root.resolve()),
                "shape": list(images.shape),
                "version": CACHE_VERSION,
                "sha256": {n: file_sha256(folder / n) for n in _ARRAYS},
            },
        )
    except OSError as exc:
        raise DataError(
            f"cannot write the decoded cache '{folder}': {exc.strerror or exc}",
            hint="set $XDG_CACHE_HOME or pass cache_dir= to a writable folder",
        ) from exc
    return ArrayDataset(torch.from_numpy(images), torch.from_numpy(label_arr))
