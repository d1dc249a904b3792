"""Corrupted test sets ("-C" sets): generated on the fly, written to disk, or read from disk.

The on-disk layout is the released CIFAR-10-C / CIFAR-100-C one, so that those folders load as they are:

- ``<corruption>.npy``: uint8 ``(5 N, H, W, C)`` (or ``(5 N, H, W)`` for grayscale), severities 1-5 stacked
  in order, each block of ``N`` images in test-set order;
- ``labels.npy``: integer ``(5 N,)`` (the labels repeated per severity; ``(N,)`` is accepted too).

``calikd corrupt`` also writes ``manifest.json``: the dataset, seed, severity table, chunk size and each
file's SHA-256, checked on reading. Images are corrupted in chunks of :data:`CHUNK` test images, each with
its own seed ``derive_seed(seed, corruption, severity, chunk)``, and rounded to uint8, so generating a set
on the fly (:class:`GeneratedCorruptions`) gives exactly the images ``calikd corrupt`` writes for that seed.
Files are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import os
import tokenize
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from calikd.corruptions import corrupt, list_corruptions, resolve_corruptions, resolve_table
from calikd.corruptions.base import SEVERITIES
from calikd.data.dataset import ArrayDataset
from calikd.errors import DataError
from calikd.utils.hashing import file_sha256
from calikd.utils.io import atomic_write, atomic_write_json
from calikd.utils.run_lock import hold_run_dir, locks_run_dir
from calikd.utils.seed import derive_seed

CHUNK = 1000
MANIFEST = "manifest.json"
FORMAT = "calikd-corrupted-set/1"


class CorruptionSource(Protocol):
    """Anything that yields the corrupted test set of a corruption and severity."""

    corruptions: list[str]

    def load(self, corruption: str, severity: int) -> ArrayDataset: ...

    def describe(self) -> dict[str, Any]: ...


def corrupt_uint8(
    images: torch.Tensor,
    corruption: str,
    severity: int,
    *,
    seed: int = 0,
    table: str = "auto",
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Corrupt uint8 images ``(N, C, H, W)`` chunk by chunk (see the module docstring); uint8 on the CPU."""
    out = torch.empty_like(images, device="cpu")
    for start in range(0, images.shape[0], CHUNK):
        chunk = images[start : start + CHUNK].to(device).float().div_(255.0)
        chunk_seed = derive_seed(seed, corruption, severity, start // CHUNK)
        result = corrupt(chunk, corruption, severity, seed=chunk_seed, table=table)  # type: ignore[arg-type]
        out[start : start + CHUNK] = result.mul_(255.0).round_().to(torch.uint8).cpu()
    return out


class GeneratedCorruptions:
    """The corrupted sets of ``split``, generated when asked for (nothing written to disk)."""

    def __init__(
        self,
        split: ArrayDataset,
        corruptions: Sequence[str],
        *,
        seed: int = 0,
        table: str = "auto",
        device: torch.device | str = "cpu",
    ) -> None:
        self.split = split
        self.corruptions = resolve_corruptions(list(corruptions))
        self.seed = int(seed)
        self.table = resolve_table(table, *split.images.shape[-2:])
        self.device = device

    def load(self, corruption: str, severity: int) -> ArrayDataset:
        images = corrupt_uint8(
            self.split.images, corruption, severity, seed=self.seed, table=self.table, device=self.device
        )
        return ArrayDataset(images, self.split.labels)

    def describe(self) -> dict[str, Any]:
        return {"source": "generated", "seed": self.seed, "table": self.table, "chunk": CHUNK}


def _npy_path(folder: Path, corruption: str) -> Path:
    return folder / f"{corruption}.npy"


_NPY_MAGIC = b"\x93NUMPY"


def _load_npy(path: Path) -> np.ndarray:
    """The array in ``path``, memory-mapped (numpy checks the header's shape against the file size)."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(len(_NPY_MAGIC))
        if magic != _NPY_MAGIC:  # np.load would also open .npz (zip) archives and pickles
            raise ValueError("it does not start with the .npy magic string")
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError, OverflowError, SyntaxError, tokenize.TokenError) as exc:
        # numpy parses the header with ast/tokenize, whose errors a damaged header can leak
        raise DataError(
            f"'{path}' is not a readable .npy array ({exc})",
            hint="the file is truncated or not a NumPy array: re-create it with `calikd corrupt` or "
            "download it again",
        ) from exc


class CorruptedSet:
    """A "-C" folder on disk: calikd's own (with ``manifest.json``) or a released CIFAR-10-C / CIFAR-100-C."""

    def __init__(self, folder: str | os.PathLike[str], *, verify: bool = True) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DataError(f"corrupted-set folder '{self.folder}' does not exist")
        self.manifest: dict[str, Any] | None = None
        manifest = self.folder / MANIFEST
        if manifest.exists():
            try:
                self.manifest = json.loads(manifest.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
                raise DataError(f"'{manifest}' is not valid JSON ({exc})") from exc
            if not isinstance(self.manifest, dict) or self.manifest.get("format") != FORMAT:
                raise DataError(f"'{manifest}' is not a calikd corrupted-set manifest")
        self.verify = verify
        self._verified: set[str] = set()
        labels_path = self.folder / "labels.npy"
        if not labels_path.exists():
            raise DataError(
                f"'{self.folder}' has no labels.npy",
                hint="a -C folder holds <corruption>.npy files and labels.npy (the CIFAR-10-C layout)",
            )
        labels = np.asarray(self._array(labels_path, "labels"))
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise DataError(
                f"'{labels_path}' must hold integer labels of shape (N,), got {labels.dtype} {labels.shape}"
            )
        self._labels = labels
        names = sorted(p.stem for p in self.folder.glob("*.npy") if p.stem != "labels")
        if not names:
            raise DataError(f"'{self.folder}' holds no <corruption>.npy file")
        known = list_corruptions()
        self.corruptions = [n for n in known if n in names] + [n for n in names if n not in known]

    def _array(self, path: Path, key: str) -> np.ndarray:
        if self.verify and self.manifest is not None and key not in self._verified:
            files = self.manifest.get("files")
            if not isinstance(files, dict):
                raise DataError(
                    f"'{self.folder / MANIFEST}' has no \"files\" object mapping names to SHA-256s"
                )
            expected = files.get(path.name)
            if expected is None:
                raise DataError(f"'{path.name}' is not listed in '{self.folder / MANIFEST}'")
            if file_sha256(path) != expected:
                raise DataError(
                    f"'{path}' does not match the SHA-256 recorded in its manifest (changed or truncated)",
                    hint="re-create the set with `calikd corrupt`",
                )
            self._verified.add(key)
        return _load_npy(path)

    def load(self, corruption: str, severity: int) -> ArrayDataset:
        """Severity ``severity`` (1-5) of ``corruption`` as uint8 ``(N, C, H, W)`` images and labels."""
        if severity not in SEVERITIES:
            raise DataError(f"severity must be 1-5, got {severity!r}")
        path = _npy_path(self.folder, corruption)
        if not path.exists():
            raise DataError(
                f"'{self.folder}' has no {path.name}",
                hint=f"corruptions in this folder: {', '.join(self.corruptions)}",
            )
        array = self._array(path, corruption)
        if (
            array.dtype != np.uint8
            or array.ndim not in (3, 4)
            or (array.ndim == 4 and array.shape[3] not in (1, 3))
        ):
            raise DataError(
                f"'{path}' must be uint8 (5N, H, W, C) with C = 1 or 3 or (5N, H, W), "
                f"got {array.dtype} {array.shape}"
            )
        if array.shape[0] % 5:
            raise DataError(f"'{path}' holds {array.shape[0]} images, not 5 severities of equal size")
        n = array.shape[0] // 5
        labels = self._labels
        if len(labels) == 5 * n:
            labels = labels[(severity - 1) * n : severity * n]
        elif len(labels) != n:
            raise DataError(
                f"'{path}' holds 5 x {n} images but labels.npy has {len(labels)} labels",
                hint="labels.npy must have N or 5 N entries",
            )
        block = np.array(array[(severity - 1) * n : severity * n], copy=True)  # off the memory map
        images = torch.from_numpy(block)
        images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2).contiguous()
        return ArrayDataset(images, torch.from_numpy(np.ascontiguousarray(labels).astype(np.int64)))

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": str(self.folder)}
        if self.manifest:
            out.update(
                {k: self.manifest[k] for k in ("dataset", "seed", "table", "chunk") if k in self.manifest}
            )
        return out


@locks_run_dir
def write_corrupted_set(
    split: ArrayDataset,
    out_dir: str | os.PathLike[str],
    corruptions: Sequence[str],
    *,
    seed: int = 0,
    table: str = "auto",
    dataset: str = "",
    device: torch.device | str = "cpu",
    on_progress: Callable[[str, int], None] | None = None,
) -> Path:
    """Write the "-C" set of ``split`` into ``out_dir`` (CIFAR-10-C layout plus ``manifest.json``).

    A corruption whose file is already there with the SHA-256 recorded in the manifest of the same settings
    is kept, so an interrupted run continues. Every file is written atomically; the manifest last. The folder
    is locked meanwhile (one writer at a time, see :mod:`calikd.utils.run_lock`).
    """
    source = GeneratedCorruptions(split, corruptions, seed=seed, table=table, device=device)
    folder = Path(out_dir)
    hold_run_dir(folder)  # creates it
    settings = {
        "format": FORMAT,
        "dataset": dataset,
        "seed": source.seed,
        "table": source.table,
        "chunk": CHUNK,
        "num_images": len(split),
        "image_shape": list(split.images.shape[1:]),
    }
    manifest_path = folder / MANIFEST
    files: dict[str, str] = {}
    if manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            old = {}
        if isinstance(old, dict) and all(old.get(k) == v for k, v in settings.items()):
            done = old.get("files")
            files = {k: v for k, v in done.items() if (folder / k).exists()} if isinstance(done, dict) else {}
    labels = split.labels.numpy().astype(np.int64)
    _save_npy(folder / "labels.npy", np.tile(labels, 5))
    files["labels.npy"] = file_sha256(folder / "labels.npy")
    for name in source.corruptions:
        path = _npy_path(folder, name)
        if path.name in files and file_sha256(path) == files[path.name]:
            if on_progress:
                on_progress(name, len(split) * 5)
            continue
        blocks = []
        for severity in SEVERITIES:
            images = source.load(name, severity).images  # (N, C, H, W)
            blocks.append(images.permute(0, 2, 3, 1).numpy())
            if on_progress:
                on_progress(name, len(split))
        _save_npy(path, np.concatenate(blocks))
        files[path.name] = file_sha256(path)
        _write_manifest(manifest_path, settings, files)
    _write_manifest(manifest_path, settings, files)
    return folder


def _write_manifest(path: Path, settings: dict[str, Any], files: dict[str, str]) -> None:
    names = sorted(Path(f).stem for f in files if f != "labels.npy")
    atomic_write_json(path, {**settings, "corruptions": names, "files": files})


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_write(path, "wb") as fh:
        np.save(fh, array, allow_pickle=False)
