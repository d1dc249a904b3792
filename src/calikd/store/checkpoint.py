"""Checkpoints as safetensors + JSON: save atomically, read with SHA-256 verification, never unpickle.

A checkpoint with stem ``S`` is

* ``S.safetensors`` -- the model's ``state_dict()``;
* ``S.json`` -- its metadata (``format``, ``format_version``, ``calikd_version``, ``weights_sha256``,
  ``train_state_sha256`` and whatever the caller put in ``meta``: ``model``, ``num_classes``, ...);
* optionally ``S.state.safetensors`` + ``S.state.json`` -- the training state (optimizer, scheduler, RNG, ...)
  packed with :func:`calikd.store.pack_tree`; ``S.state.json`` records the SHA-256 of ``S.state.safetensors``.

How a save stays atomic: the data files are first written completely as ``<file>.pending`` (each one
temp + fsync + rename), then ``S.json`` is written (temp + rename): that rename *commits* the save, since
``S.json`` records the SHA-256 of the weights and of ``S.state.json``. Last, the pending files are renamed
into place. A crash before the commit leaves the previous checkpoint untouched; a crash after it leaves the
new one readable, because readers fall back to ``<file>.pending`` when the SHA-256 does not match.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from calikd import __version__
from calikd.errors import CheckpointError
from calikd.store.tensor_tree import pack_tree, unpack_tree
from calikd.utils.io import atomic_write_bytes, atomic_write_json, json_text
from calikd.utils.tensor_files import (
    deserialize_tensors,
    file_is_pickle,
    looks_like_pickle,
    pending_path,
    pickle_error,
    read_verified,
    safetensors_problem,
    serialize_tensors,
)

__all__ = [
    "BEST",
    "FORMAT",
    "FORMAT_VERSION",
    "LAST",
    "Checkpoint",
    "CheckpointPaths",
    "checkpoint_id",
    "read_checkpoint",
    "resolve_paths",
    "save_checkpoint",
]

FORMAT = "calikd-checkpoint"
FORMAT_VERSION = 1
STATE_FORMAT = "calikd-train-state"
#: Stems in a run folder: ``last`` = end of the latest finished epoch + train state; ``best`` = best on val.
LAST, BEST = "last", "best"
ID_LENGTH = 16
_RESERVED = ("format", "format_version", "calikd_version", "weights_sha256", "train_state_sha256")
_SUFFIXES = (".state.safetensors", ".state.json", ".safetensors", ".json")
_PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle", ".tar")

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class CheckpointPaths:
    """The files of the checkpoint with stem ``stem``."""

    stem: Path
    weights: Path
    meta: Path
    state_weights: Path
    state_meta: Path

    @classmethod
    def for_stem(cls, stem: PathLike) -> CheckpointPaths:
        s = os.fspath(stem)
        suffixes = (".safetensors", ".json", ".state.safetensors", ".state.json")
        return cls(Path(s), *(Path(s + suffix) for suffix in suffixes))


@dataclass
class Checkpoint:
    """A checkpoint read by :func:`read_checkpoint` (weights verified against ``meta["weights_sha256"]``)."""

    meta: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    paths: CheckpointPaths

    @property
    def id(self) -> str:
        """Short SHA-256 of the weights file: a key for caches of results computed from this checkpoint."""
        return str(self.meta["weights_sha256"])[:ID_LENGTH]

    def load_train_state(self, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
        """The training state saved with these weights, or ``None`` when there is none.

        Tensors are loaded on CPU by default (``torch.set_rng_state`` needs CPU tensors; optimizers move
        their state to the parameters' device in ``load_state_dict``).
        """
        sha = self.meta.get("train_state_sha256")
        if sha is None:
            return None
        p = self.paths
        data = read_verified(p.state_meta, sha, p.meta, safetensors=False)
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise CheckpointError(f"'{p.state_meta}' is corrupt: invalid JSON ({exc})") from exc
        if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT or "tree" not in doc:
            raise CheckpointError(f"'{p.state_meta}' is not a calikd train-state file")
        data = read_verified(p.state_weights, str(doc.get("tensors_sha256")), p.state_meta, safetensors=True)
        tensors = deserialize_tensors(data, p.state_weights, map_location)
        try:
            return unpack_tree(tensors, doc["tree"])
        except ValueError as exc:
            raise CheckpointError(f"'{p.state_meta}' is corrupt: {exc}") from exc


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _stem(path: PathLike) -> Path:
    s = os.fspath(path)
    for suffix in _SUFFIXES:
        if s.endswith(suffix):
            return Path(s[: -len(suffix)])
    return Path(s)


def _state_dict_of(model_or_state_dict: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    sd = model_or_state_dict
    if isinstance(sd, nn.Module):
        sd = sd.state_dict()
    for key, value in sd.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"cannot save state_dict entry {key!r}: a {type(value).__name__}, not a tensor")
    return dict(sd)


def save_checkpoint(
    path: PathLike,
    model_or_state_dict: nn.Module | Mapping[str, torch.Tensor],
    meta: Mapping[str, Any],
    *,
    train_state: Mapping[str, Any] | None = None,
) -> CheckpointPaths:
    """Save weights, metadata and (optionally) training state atomically; return the paths written.

    ``path`` is the stem (``run/last``) or the ``.safetensors`` path. ``meta`` must be JSON-serialisable;
    the reserved keys (format, format_version, calikd_version, weights_sha256, train_state_sha256) are
    filled in here. ``train_state`` is any tree :func:`pack_tree` accepts (optimizer and scheduler state
    dicts, RNG states, epoch, step ...). Saving without ``train_state`` removes an older one of that stem.
    """
    if Path(path).is_dir():
        raise CheckpointError(f"'{path}' is a folder; save to a stem inside it, e.g. '{Path(path) / LAST}'")
    if os.fspath(path).endswith(_PICKLE_SUFFIXES):
        raise CheckpointError(f"'{path}': calikd writes safetensors; give a stem or a .safetensors path")
    if isinstance(model_or_state_dict, nn.Module):
        _check_model_meta(meta)
    paths = CheckpointPaths.for_stem(_stem(path))
    weights = serialize_tensors(_state_dict_of(model_or_state_dict))
    files: dict[Path, bytes] = {paths.weights: weights}
    meta_out = {k: v for k, v in meta.items() if k not in _RESERVED}
    meta_out.update(format=FORMAT, format_version=FORMAT_VERSION, calikd_version=__version__)
    meta_out.update(weights_sha256=_sha(weights), train_state_sha256=None)
    if train_state is not None:
        tensors, tree = pack_tree(train_state)
        state_weights = serialize_tensors(tensors)
        doc = {"format": STATE_FORMAT, "format_version": 1, "tensors_sha256": _sha(state_weights)}
        doc["tree"] = tree
        state_meta = (json_text(doc) + "\n").encode()
        files.update({paths.state_weights: state_weights, paths.state_meta: state_meta})
        meta_out["train_state_sha256"] = _sha(state_meta)
    try:
        json_text(meta_out)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"checkpoint meta is not JSON-serialisable: {exc}") from exc

    committed = False
    try:
        for target, data in files.items():
            atomic_write_bytes(pending_path(target), data)
        atomic_write_json(paths.meta, meta_out)  # the commit point
        committed = True
        for target in files:
            os.replace(pending_path(target), target)
    except BaseException:
        if not committed:
            for target in files:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(pending_path(target))
        raise
    if train_state is None:
        for stale in (paths.state_weights, paths.state_meta):
            for f in (stale, pending_path(stale)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f)
    return paths


def _check_model_meta(meta: Mapping[str, Any]) -> None:
    """A saved model must say what it is, or it could never be loaded: refuse it now rather than later."""
    model = meta.get("model")
    missing = [] if isinstance(model, Mapping) and isinstance(model.get("name"), str) else ["model.name"]
    missing += [k for k in ("num_classes", "in_channels") if not isinstance(meta.get(k), int)]
    if missing:
        raise CheckpointError(
            f"the metadata of a saved model needs {', '.join(missing)} (and its normalization, input_size "
            "and dataset, so that it is always fed as it was trained)",
            hint='e.g. {"model": {"name": "cnn", "kwargs": {}}, "num_classes": 10, "in_channels": 1, '
            '"input_size": [28, 28], "normalization": {"mean": [0.286], "std": [0.353]}, '
            '"dataset": {"name": "fashion-mnist"}}; for a model class of your own use '
            "`calikd import-teacher` (calikd.teacher.imported.import_teacher)",
        )


def _refuse_foreign(path: Path) -> None:
    """``path`` is an existing file that is not part of a calikd checkpoint: explain why it cannot be read."""
    if file_is_pickle(path) or (path.suffix in _PICKLE_SUFFIXES and safetensors_problem(path.read_bytes())):
        raise pickle_error(path)
    raise CheckpointError(
        f"'{path}' is not a calikd checkpoint: expected a .safetensors weights file and its .json metadata",
        hint="convert a plain safetensors file with calikd.store.save_checkpoint(stem, state_dict, meta)",
    )


def resolve_paths(path: PathLike) -> CheckpointPaths:
    """Paths of the checkpoint that ``path`` names: a stem, its ``.safetensors``/``.json``/``.state.*`` file,
    or a run folder (its ``last`` checkpoint). Refuses pickles; raises if neither weights nor metadata exist.
    """
    p = Path(path)
    if p.is_dir():
        paths = CheckpointPaths.for_stem(p / LAST)
        if not (paths.meta.exists() or paths.weights.exists()):
            best = CheckpointPaths.for_stem(p / BEST)
            hint = f"load '{best.stem}' for the best-on-validation weights" if best.meta.exists() else None
            raise CheckpointError(
                f"run folder '{p}' has no {LAST!r} checkpoint ({paths.weights.name})", hint=hint
            )
    elif not os.fspath(p).endswith(_SUFFIXES) and p.is_file():
        _refuse_foreign(p)
        raise AssertionError("unreachable")
    else:
        paths = CheckpointPaths.for_stem(_stem(p))
    if paths.weights.is_file() and file_is_pickle(paths.weights):
        raise pickle_error(paths.weights)
    if paths.meta.exists():
        return paths
    if paths.weights.exists():
        raise CheckpointError(
            f"the metadata file '{paths.meta}' of checkpoint '{paths.weights}' is missing",
            hint="a calikd checkpoint is a .safetensors + .json pair written by calikd.store.save_checkpoint",
        )
    for suffix in _PICKLE_SUFFIXES:
        legacy = Path(os.fspath(paths.stem) + suffix)
        if legacy.is_file():
            _refuse_foreign(legacy)
    raise CheckpointError(f"no checkpoint at '{path}': neither '{paths.weights}' nor '{paths.meta}' exists")


def _parse_meta(data: bytes, path: Path) -> dict[str, Any]:
    if looks_like_pickle(data):
        raise pickle_error(path)
    try:
        meta = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(
            f"metadata file '{path}' is corrupt or truncated: invalid JSON ({exc})"
        ) from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f'\'{path}\' is not calikd checkpoint metadata (no "format": "{FORMAT}")')
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"'{path}' has format_version {version!r}; this calikd reads up to {FORMAT_VERSION}",
            hint="upgrade calikd to read checkpoints written by newer versions",
        )
    if not isinstance(meta.get("weights_sha256"), str):
        raise CheckpointError(f"metadata file '{path}' is corrupt: it has no weights_sha256")
    return meta


def _read_meta(paths: CheckpointPaths) -> tuple[bytes, dict[str, Any]]:
    try:
        data = paths.meta.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(
            f"the metadata file '{paths.meta}' of checkpoint {paths.stem} is missing"
        ) from None
    return data, _parse_meta(data, paths.meta)


def read_checkpoint(path: PathLike, *, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read and verify a checkpoint: ``path`` is a stem, one of its files, or a run folder (its ``last``).

    Raises :class:`CheckpointError` for pickles (never unpickled), missing metadata, and weights that are
    truncated or do not match the SHA-256 in the metadata.
    """
    paths = resolve_paths(path)
    for attempt in range(3):
        raw, meta = _read_meta(paths)
        try:
            data = read_verified(paths.weights, meta["weights_sha256"], paths.meta, safetensors=True)
            break
        except CheckpointError:
            # A concurrent save may have replaced the files between our reads: retry if the metadata changed.
            if attempt == 2 or not paths.meta.exists() or paths.meta.read_bytes() == raw:
                raise
    return Checkpoint(meta, deserialize_tensors(data, paths.weights, map_location), paths)


def read_meta(path: PathLike) -> dict[str, Any]:
    """A checkpoint's metadata only (the weights are neither read nor verified)."""
    return _read_meta(resolve_paths(path))[1]


def checkpoint_id(path: PathLike) -> str:
    """Short SHA-256 of the checkpoint's weights (from its metadata; :func:`read_checkpoint` verifies it)."""
    return str(_read_meta(resolve_paths(path))[1]["weights_sha256"])[:ID_LENGTH]
