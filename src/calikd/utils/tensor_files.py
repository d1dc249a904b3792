"""Safetensors files without pickle: pickle refusal, SHA-verified reads, deterministic (de)serialisation.

Used by the checkpoint store and by calibrator files.

Nothing here unpickles: files are only ever parsed as safetensors (a JSON header plus raw bytes) or as JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save

from calikd.errors import CheckpointError

__all__ = [
    "PENDING_SUFFIX",
    "deserialize_tensors",
    "file_is_pickle",
    "looks_like_pickle",
    "pending_path",
    "pickle_error",
    "read_verified",
    "safetensors_problem",
    "serialize_tensors",
]

#: Suffix of a file that a save has fully written but not yet moved to its final name (see ``checkpoint.py``).
PENDING_SUFFIX = ".pending"
_MAX_HEADER = 100_000_000  # the limit safetensors itself enforces
_ORDER_KEY = "calikd_order"


def pending_path(path: Path) -> Path:
    """Where a save stages ``path`` before its metadata commits it."""
    return path.with_name(path.name + PENDING_SUFFIX)


def looks_like_pickle(head: bytes) -> bool:
    """True for a pickle (protocol >= 2 starts with ``0x80``) or a zip archive (as ``torch.save`` writes)."""
    return head[:1] == b"\x80" or head[:4] == b"PK\x03\x04"


def file_is_pickle(path: Path) -> bool:
    """True when the file at ``path`` starts like a pickle or zip and not like a safetensors file."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    size = int.from_bytes(head[:8], "little") if len(head) >= 8 else -1
    if 0 <= size <= path.stat().st_size - 8 and head[8:9] == b"{":
        return False
    return looks_like_pickle(head)


def pickle_error(path: str | os.PathLike[str]) -> CheckpointError:
    """The error for a pickle / ``torch.save`` file: name it and say how to convert it."""
    return CheckpointError(
        f"'{path}' is a pickle/torch.save file; calikd never unpickles files because unpickling runs "
        "arbitrary code. Convert it with a trusted script: in an environment you trust, load the state dict "
        "with torch yourself and write it with calikd.store.save_checkpoint(stem, state_dict, meta)",
        hint="see 'Converting torch.save files' in the calikd.store documentation (help(calikd.store))",
    )


def safetensors_problem(data: bytes) -> str | None:
    """Why ``data`` is not a complete safetensors file, or ``None`` when its header and size agree."""
    if len(data) < 8:
        return f"{len(data)} bytes is shorter than a safetensors header"
    size = int.from_bytes(data[:8], "little")
    if size > min(len(data) - 8, _MAX_HEADER) or data[8:9] != b"{":
        return "it does not start with a safetensors header"
    try:
        header = json.loads(data[8 : 8 + size])
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "its safetensors header is not valid JSON"
    if not isinstance(header, dict):
        return "its safetensors header is not a JSON object"
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            return f"its safetensors header entry {name!r} is malformed"
        end = max(end, offsets[1])
    if 8 + size + end != len(data):
        return f"its header describes {8 + size + end} bytes but the file has {len(data)}"
    return None


def _check_safetensors(path: Path, data: bytes) -> None:
    problem = safetensors_problem(data)
    if problem is None:
        return
    if looks_like_pickle(data):
        raise pickle_error(path)
    raise CheckpointError(f"'{path}' is corrupt or truncated, or not a safetensors file: {problem}")


def read_verified(path: Path, sha256: str, recorded_in: Path, *, safetensors: bool) -> bytes:
    """Read ``path`` and check that its SHA-256 is ``sha256`` (as recorded in ``recorded_in``).

    Refuses pickles before anything else. When ``path`` does not match, its pending copy (a save that
    committed its metadata but had not yet renamed the file) is tried, then ``path`` once more (the rename may
    just have happened).
    """
    found = False
    for candidate in (path, pending_path(path), path):
        try:
            data = candidate.read_bytes()
        except FileNotFoundError:
            continue
        found = True
        if safetensors:
            _check_safetensors(candidate, data)
        elif looks_like_pickle(data):
            raise pickle_error(candidate)
        if hashlib.sha256(data).hexdigest() == sha256:
            return data
    if not found:
        raise CheckpointError(f"'{path}' is missing, but '{recorded_in}' refers to it")
    raise CheckpointError(
        f"'{path}' is corrupt or truncated: its SHA-256 does not match the one recorded in '{recorded_in}' "
        "(or it was changed after it was saved)"
    )


def _storage_key(t: torch.Tensor) -> tuple[str, int]:
    return (str(t.device), t.untyped_storage().data_ptr())


def serialize_tensors(tensors: Mapping[str, torch.Tensor]) -> bytes:
    """Safetensors bytes of ``tensors``: moved to CPU, made contiguous, shared memory copied apart."""
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[str, int]] = set()
    for name, tensor in tensors.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise TypeError(f"cannot save {name!r}: expected str -> Tensor, got {type(tensor).__name__}")
        t = tensor.detach().to("cpu").contiguous()
        key = _storage_key(t)
        if t.numel() == 0 or key in seen or t.untyped_storage().nbytes() != t.numel() * t.element_size():
            t = t.clone()  # shared with another tensor, or a view of a larger buffer
            key = _storage_key(t)
        seen.add(key)
        out[name] = t
    # safetensors sorts its header; the metadata keeps the caller's key order (state_dict order).
    return _sorted_metadata(_st_save(out, metadata={"format": "pt", _ORDER_KEY: json.dumps(list(out))}))


def _sorted_metadata(data: bytes) -> bytes:
    """Rewrite the header with its ``__metadata__`` keys sorted: safetensors writes them in random order,
    and equal tensors must give equal bytes (the SHA-256 identifies a checkpoint)."""
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)  # safetensors pads the header to 8 bytes with spaces
    return len(text).to_bytes(8, "little") + text + data[8 + size :]


def deserialize_tensors(
    data: bytes, path: Path, map_location: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """Tensors from safetensors ``data`` (read from ``path``), in saved order, moved to ``map_location``."""
    try:
        tensors = _st_load(data)
        header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    except (SafetensorError, ValueError) as exc:
        raise CheckpointError(f"'{path}' is corrupt or truncated: {exc}") from exc
    try:
        order = json.loads((header.get("__metadata__") or {})[_ORDER_KEY])
    except (KeyError, TypeError, ValueError):
        order = None
    if not (isinstance(order, list) and sorted(order) == sorted(tensors)):
        order = sorted(tensors)
    tensors = {name: tensors[name] for name in order}
    if torch.device(map_location).type != "cpu":
        tensors = {k: v.to(map_location) for k, v in tensors.items()}
    return tensors
