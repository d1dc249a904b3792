"""Teacher-logit cache: the teacher's raw logits, computed once and reused when its input is reproducible.

The teacher's input for a sample is reproducible when it is a function of the sample index alone (no random
augmentation: the *static* layout, one ``(N, C)`` table indexed by sample, filled during the first epoch)
or of ``(seed, epoch, batch size, augmentation settings)`` (the *per-epoch* layout: every epoch's logits in
visiting order, reused by any later run with the same key, e.g. other students or calibrators of the same
teacher).

The cache holds *raw* logits in the dtype the teacher produced them (bf16 under bf16 autocast), so cached and
on-the-fly training see bit-identical numbers, and one cache serves every calibrator: calibration is applied
after reading (it costs microseconds per batch). The key names everything that determines the logits: the
teacher's weights (checkpoint id), the dataset and its split, the input transform, the teacher's autocast
dtype, forward path and memory layout, the device type, and for the per-epoch layout the seed, the batch size
and the augmentation. On disk a cache is a folder
``<cache_dir>/<sha256(key)[:20]>/`` holding ``key.json`` and ``.npy`` files written atomically; a folder whose
key or files do not match is refused with a message, never silently used.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from calikd.engine.distributed import Distributed
from calikd.errors import ConfigError
from calikd.utils.io import atomic_write_json

CACHE_MODES = ("off", "auto", "memory", "disk")
FORMAT_VERSION = 1
_NUMPY_STORAGE = {torch.bfloat16: np.int16, torch.float16: np.float16, torch.float32: np.float32}


def cache_key_hash(key: dict[str, Any]) -> str:
    """Stable short hash of a cache key (canonical JSON)."""
    text = json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy()
    return t.numpy()


def _from_numpy(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    t = torch.from_numpy(np.array(a))  # a copy: memory-mapped arrays are read-only
    return t.view(torch.bfloat16) if dtype == torch.bfloat16 else t


class TeacherLogitCache:
    """Raw teacher logits keyed by ``key``; ``static`` picks the layout (see the module docstring).

    ``folder=None`` keeps everything in memory for this run only; otherwise logits are also read from and
    written to ``folder`` (use :meth:`open` to derive it from a cache root). ``rows_per_epoch`` is the number
    of logit rows an epoch produces in the per-epoch layout (steps x rows per step).
    """

    def __init__(
        self,
        key: dict[str, Any],
        *,
        static: bool,
        num_samples: int,
        num_classes: int,
        rows_per_epoch: int,
        folder: Path | None = None,
        runtime: Distributed | None = None,
    ) -> None:
        self.key = {"format": FORMAT_VERSION, "layout": "static" if static else "per-epoch", **key}
        self.static = static
        self.num_samples = num_samples
        self.num_classes = num_classes
        self.rows_per_epoch = rows_per_epoch
        self.folder = folder
        self.runtime = runtime or Distributed()
        self._stored_rows: list[torch.Tensor] = []  # static: indices filled since the last merge
        self.hits = 0
        self.misses = 0
        self._table: torch.Tensor | None = None  # static: (N, C); per-epoch: (rows, C) of the current epoch
        self._filled: torch.Tensor | None = None  # static: which rows hold logits
        self._epoch: int | None = None
        self._epoch_complete = False
        self._cursor = 0
        self._fingerprint: str | None = None
        if folder is not None:
            try:
                self._check_folder()
            except OSError as exc:
                raise ConfigError(
                    f"cannot use teacher-logit cache folder '{folder}': {exc.strerror or exc}",
                    hint="choose a writable --cache-dir, or --teacher-cache off",
                ) from exc

    @classmethod
    def open(cls, root: str | os.PathLike[str], key: dict[str, Any], **kwargs: Any) -> TeacherLogitCache:
        """The on-disk cache for ``key`` under ``root`` (created if new)."""
        full = {"format": FORMAT_VERSION, "layout": "static" if kwargs["static"] else "per-epoch", **key}
        return cls(key, folder=Path(root) / cache_key_hash(full), **kwargs)

    # ------------------------------------------------------------------ files
    def _check_folder(self) -> None:
        assert self.folder is not None
        key_file = self.folder / "key.json"
        if key_file.exists():
            try:
                stored = json.loads(key_file.read_text())
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    f"teacher-logit cache '{self.folder}' has an unreadable key.json ({exc})",
                    hint="delete the folder; it is rebuilt on the next run",
                ) from exc
            expected = json.loads(json.dumps(self.key, default=str))
            if stored != expected:
                diffs = sorted(k for k in set(stored) | set(expected) if stored.get(k) != expected.get(k))
                raise ConfigError(
                    f"teacher-logit cache '{self.folder}' was made for other settings (differs in: "
                    f"{', '.join(diffs)}); refusing to use stale teacher logits",
                    hint="delete the folder, or point --cache-dir elsewhere",
                )
            self._check_files()
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_json(key_file, self.key)

    def _check_files(self) -> None:
        """Every stored table has the expected shape and, per epoch, its input fingerprint."""
        assert self.folder is not None
        if self.static:
            self._read(None, self.num_samples)
            return
        for path in sorted(self.folder.glob("epoch-*.npy")):
            epoch = int(path.stem.split("-")[1])
            self._read(epoch, self.rows_per_epoch)
            if not path.with_suffix(".json").exists():
                raise ConfigError(
                    f"teacher-logit cache file '{path}' has no fingerprint file next to it",
                    hint=f"delete '{path}'; it is recomputed on the next run",
                )

    def _file(self, epoch: int | None) -> Path:
        assert self.folder is not None
        return self.folder / ("static.npy" if epoch is None else f"epoch-{epoch:04d}.npy")

    def _read(self, epoch: int | None, rows: int) -> np.ndarray | None:
        if self.folder is None:
            return None
        path = self._file(epoch)
        if not path.exists():
            return None
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"teacher-logit cache file '{path}' is unreadable or truncated ({exc})",
                hint=f"delete '{path}'; it is recomputed on the next run",
            ) from exc
        if array.shape != (rows, self.num_classes):
            raise ConfigError(
                f"teacher-logit cache file '{path}' holds shape {array.shape}, expected "
                f"{(rows, self.num_classes)}",
                hint=f"delete '{path}'; it is recomputed on the next run",
            )
        return array

    def _write(self, epoch: int | None, table: torch.Tensor) -> None:
        if self.folder is None:
            return
        path = self._file(epoch)
        if epoch is not None:  # the fingerprint first: a table without one is treated as damaged
            atomic_write_json(path.with_suffix(".json"), {"first_batch": self._fingerprint})
        pending = path.with_name(f".{path.name}.{os.getpid()}.pending")
        with open(pending, "wb") as fh:
            np.save(fh, _to_numpy(table), allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(pending, path)

    def _dtype_of(self, array: np.ndarray) -> torch.dtype:
        stored = self.key.get("logits_dtype", "float32")
        return {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(stored, torch.float32)

    # ------------------------------------------------------------------ API
    def start_epoch(self, epoch: int) -> None:
        """Prepare for epoch ``epoch`` (per-epoch layout: load its logits if they were cached)."""
        self._epoch, self._cursor = epoch, 0
        if self.static:
            if self._table is None:
                array = self._read(None, self.num_samples)
                if array is not None:
                    self._table = _from_numpy(array, self._dtype_of(array))
                    self._filled = torch.ones(self.num_samples, dtype=torch.bool)
            return
        array = self._read(epoch, self.rows_per_epoch)
        self._epoch_complete = array is not None
        self._table = _from_numpy(array, self._dtype_of(array)) if array is not None else None

    def check_first_batch(self, index: torch.Tensor, teacher_input: torch.Tensor) -> None:
        """Per-epoch layout: compare the epoch's first batch (indices and teacher input) with the one the
        stored logits were computed from, so logits of other inputs (changed code or library) are refused."""
        if self.static:
            return
        digest = hashlib.sha256(index.detach().cpu().numpy().tobytes())
        digest.update(teacher_input.detach().float().cpu().contiguous().numpy().tobytes())
        self._fingerprint = digest.hexdigest()
        if not self._epoch_complete or self.folder is None:
            return
        record_path = self._file(self._epoch).with_suffix(".json")
        try:
            stored = json.loads(record_path.read_text()).get("first_batch")
        except (OSError, ValueError, AttributeError) as exc:
            raise ConfigError(
                f"teacher-logit cache fingerprint '{record_path}' is unreadable ({exc})"
            ) from exc
        if stored != self._fingerprint:
            raise ConfigError(
                f"teacher-logit cache '{self.folder}' holds logits of epoch {self._epoch} computed from "
                "other inputs than this run's (a different calikd or torch version, or changed data); "
                "refusing to use stale teacher logits",
                hint="delete the folder; it is rebuilt on the next run",
            )

    def lookup(self, index: torch.Tensor, rows: int) -> torch.Tensor | None:
        """Cached logits for the next batch (``index``: dataset indices; ``rows``: logit rows it needs)."""
        if self.static:
            if self._table is None or self._filled is None:
                return None
            idx = index.cpu()
            if not bool(self._filled[idx].all()):
                return None
            self.hits += 1
            return self._table[idx]
        if not self._epoch_complete or self._table is None:
            return None
        out = self._table[self._cursor : self._cursor + rows]
        self._cursor += rows
        self.hits += 1
        return out

    def store(self, index: torch.Tensor, logits: torch.Tensor) -> None:
        """Record the teacher's raw logits for the batch just computed."""
        self.misses += 1
        logits = logits.detach().to("cpu")
        if self.static:
            if self._table is None:
                self._table = torch.zeros(self.num_samples, self.num_classes, dtype=logits.dtype)
                self._filled = torch.zeros(self.num_samples, dtype=torch.bool)
            assert self._filled is not None
            idx = index.cpu()
            self._table[idx] = logits.to(self._table.dtype)
            self._filled[idx] = True
            if self.runtime.enabled:
                self._stored_rows.append(idx)
            return
        if self._table is None:
            self._table = torch.zeros(self.rows_per_epoch, self.num_classes, dtype=logits.dtype)
        self._table[self._cursor : self._cursor + len(logits)] = logits
        self._cursor += len(logits)

    def _merge_ranks(self) -> None:
        """Static layout under DDP: give every rank the rows the others computed this epoch (each rank
        computes the logits of its own share of the batches, so together they fill the table once)."""
        mine = torch.cat(self._stored_rows) if self._stored_rows else torch.zeros(0, dtype=torch.int64)
        self._stored_rows = []
        rows = torch.zeros(0, self.num_classes) if self._table is None else self._table[mine].float()
        index = self.runtime.gather_rows(mine)
        logits = self.runtime.gather_rows(rows)
        if len(index) == 0:
            return
        if self._table is None:
            self._table = torch.zeros(self.num_samples, self.num_classes, dtype=logits.dtype)
            self._filled = torch.zeros(self.num_samples, dtype=torch.bool)
        assert self._filled is not None
        self._table[index] = logits.to(self._table.dtype)
        self._filled[index] = True

    def end_epoch(self) -> None:
        """Persist what the epoch computed (per-epoch layout: only complete epochs; static: a full table).

        Under DDP every rank calls this at the same point: the static layout's table is merged across
        ranks and written by rank 0; the per-epoch layout is per rank (its key names the rank)."""
        if self.static and self.runtime.enabled:
            self._merge_ranks()
        if self._table is None:
            return
        if self.static:
            assert self._filled is not None
            writes = self.folder is not None and self.runtime.is_main  # under DDP rank 0 writes the table
            if writes and bool(self._filled.all()) and not self._file(None).exists():
                self._write(None, self._table)
            return
        if not self._epoch_complete and self._cursor == self.rows_per_epoch:
            self._write(self._epoch, self._table)
        if self.folder is None and not self._epoch_complete:
            self._table = None  # per-epoch logits are not reused within a run
        self._epoch_complete = False

    def stats(self) -> dict[str, Any]:
        """Hits, misses and where the cache lives."""
        return {
            "layout": self.key["layout"],
            "hits": self.hits,
            "misses": self.misses,
            "folder": str(self.folder) if self.folder is not None else None,
        }
