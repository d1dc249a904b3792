"""Saving and loading calibrators: JSON (+ safetensors for tensor parameters), atomic, never pickled.

Files of a calibrator saved with stem ``S`` (``save("S")`` or ``save("S.json")``)::

    S.json          {"format": "calikd-calibrator", "format_version": 1, "calikd_version": ...,
                     "method": "temperature", "hyperparams": {...}, "num_classes": 10, "from_probs": false,
                     "params": {"temperature": 1.83},              # scalar parameters (exact float64 repr)
                     "tensors": null | {"file": "S.safetensors", "sha256": "...",
                                        "shapes": {"weight": [10, 10], ...}, "dtypes": {...}},
                     "record": {...}}                              # what was fitted and how well
    S.safetensors   tensor parameters (float64), only for methods that have them

The tensor file is written first and the JSON last, each atomically, so the JSON commits the save. Loading
checks the format, version and method (an unknown method lists the valid ones), the SHA-256 and shapes of the
tensors; a pickle or ``torch.save`` file is recognised by its first bytes and refused without being read
further.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, TypeVar

from calikd import __version__
from calikd.calibration.base import Calibrator
from calikd.calibration.registry import calibrator_class, list_calibrators
from calikd.errors import CheckpointError, ConfigError, did_you_mean
from calikd.utils.io import atomic_write_bytes, atomic_write_json
from calikd.utils.tensor_files import deserialize_tensors, looks_like_pickle, read_verified, serialize_tensors

__all__ = ["FORMAT", "FORMAT_VERSION", "calibrator_paths", "load_calibrator", "save_calibrator"]

FORMAT = "calikd-calibrator"
FORMAT_VERSION = 1
_C = TypeVar("_C", bound=Calibrator)
_PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")


def calibrator_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(S.json, S.safetensors)`` for a stem ``S``, ``S.json`` or ``S.safetensors``."""
    p = Path(path)
    if p.suffix in (".json", ".safetensors"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".json"), p.with_name(p.name + ".safetensors")


def _pickle_error(path: Path) -> CheckpointError:
    return CheckpointError(
        f"'{path}' is a pickle/torch.save file; calikd never unpickles files because unpickling runs "
        "arbitrary code, so it was not loaded",
        hint="refit the calibrator on the val split and save it with calibrator.save(stem) "
        "(JSON + safetensors)",
    )


def _refuse_pickle(path: Path) -> None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return
    if looks_like_pickle(head):
        raise _pickle_error(path)


def save_calibrator(calibrator: Calibrator, path: str | os.PathLike[str]) -> list[Path]:
    """Write a fitted ``calibrator`` to ``S.json`` (+ ``S.safetensors``); return the paths written."""
    calibrator._require_fitted("be saved")
    json_path, tensor_path = calibrator_paths(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in calibrator._tensors().items()}
    written: list[Path] = []
    doc: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "calikd_version": _version(),
        "method": calibrator.method,
        "hyperparams": calibrator.hyperparams(),
        "num_classes": calibrator.num_classes,
        "from_probs": calibrator.from_probs,
        "params": calibrator._params(),
        "tensors": None,
        "record": calibrator.record,
    }
    if tensors:
        data = serialize_tensors(tensors)
        atomic_write_bytes(tensor_path, data)
        written.append(tensor_path)
        doc["tensors"] = {
            "file": tensor_path.name,
            "sha256": hashlib.sha256(data).hexdigest(),
            "shapes": {k: list(v.shape) for k, v in tensors.items()},
            "dtypes": {k: str(v.dtype).removeprefix("torch.") for k, v in tensors.items()},
        }
    atomic_write_json(json_path, doc)
    return [json_path, *written]


def _version() -> str:
    return __version__


def _read_json(path: Path, json_path: Path) -> dict[str, Any]:
    """The calibrator JSON at ``json_path`` (``path`` is what the caller named), refusing pickles."""
    if not json_path.is_file():
        if Path(path).is_file():  # e.g. "cal.pt" was given and "cal.pt.json" does not exist
            _refuse_pickle(Path(path))
        stem = json_path.with_suffix("")
        for suffix in _PICKLE_SUFFIXES:
            _refuse_pickle(stem.with_name(stem.name + suffix))
        raise CheckpointError(
            f"no calibrator at '{json_path}'",
            hint="pass the stem or the .json path given to calibrator.save()",
        )
    data = json_path.read_bytes()
    if looks_like_pickle(data):
        raise _pickle_error(json_path)
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise CheckpointError(f"'{json_path}' is not valid JSON ({exc}); is it a calibrator file?") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise CheckpointError(
            f"'{json_path}' is not a calikd calibrator file (format {found!r}, expected {FORMAT!r})"
        )
    version = doc.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(
            f"'{json_path}' has format_version {version!r}; this calikd reads versions 1..{FORMAT_VERSION}",
            hint="upgrade calikd to read files written by a newer version",
        )
    return doc


def _check_numbers(obj: Any, where: str, json_path: Path) -> None:
    if not isinstance(obj, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in obj.values()
    ):
        raise CheckpointError(f"'{json_path}': '{where}' must map names to finite numbers; got {obj!r}")


def load_calibrator(path: str | os.PathLike[str], *, expected: type[_C] | None = None) -> _C:
    """Load a calibrator saved by :meth:`Calibrator.save`; dispatches on the file's ``"method"``.

    ``expected`` (a subclass) additionally requires the file to hold that method.
    """
    json_path, _ = calibrator_paths(path)
    doc = _read_json(Path(path), json_path)
    method = doc.get("method")
    valid = list_calibrators()
    try:
        cls = calibrator_class(str(method))
    except ConfigError:
        raise CheckpointError(
            f"'{json_path}' holds an unknown calibrator method {method!r}{did_you_mean(str(method), valid)}; "
            f"valid methods: {', '.join(valid)}"
        ) from None
    if expected is not None and expected is not Calibrator and not issubclass(cls, expected):
        raise CheckpointError(
            f"'{json_path}' holds a '{cls.method}' calibrator ({cls.__name__}), not a {expected.__name__}",
            hint="use calikd.calibration.load_calibrator(path) to load whatever it holds",
        )
    hyper = doc.get("hyperparams")
    if not isinstance(hyper, dict):
        raise CheckpointError(f"'{json_path}': 'hyperparams' must be an object; got {hyper!r}")
    try:
        calibrator = cls(**hyper)
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(
            f"'{json_path}' has invalid hyper-parameters for '{cls.method}': {exc}"
        ) from exc
    num_classes = doc.get("num_classes")
    if not (isinstance(num_classes, int) and not isinstance(num_classes, bool) and num_classes >= 2):
        raise CheckpointError(f"'{json_path}': 'num_classes' must be an integer >= 2; got {num_classes!r}")
    params = doc.get("params")
    _check_numbers(params, "params", json_path)
    tensors = _load_tensors(doc.get("tensors"), calibrator, num_classes, json_path)
    try:
        calibrator._set_params(params)
        calibrator._set_tensors(tensors)
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"'{json_path}' has invalid '{cls.method}' parameters: {exc}") from exc
    calibrator.num_classes = num_classes
    calibrator.source = json_path
    calibrator.from_probs = bool(doc.get("from_probs", False))
    record = doc.get("record")
    calibrator.record = record if isinstance(record, dict) else {}
    calibrator._fitted = True
    return calibrator  # type: ignore[return-value]


def _load_tensors(entry: Any, calibrator: Calibrator, num_classes: int, json_path: Path) -> dict[str, Any]:
    expected = calibrator._expected_shapes(num_classes)
    if not expected:
        if entry is not None:
            raise CheckpointError(
                f"'{json_path}': a '{calibrator.method}' calibrator has no tensor parameters"
            )
        return {}
    if not (
        isinstance(entry, dict)
        and isinstance(entry.get("file"), str)
        and isinstance(entry.get("sha256"), str)
    ):
        raise CheckpointError(f"'{json_path}' does not name its tensor file and its sha256 ('tensors' entry)")
    name = Path(entry["file"])
    if name.name != entry["file"] or name.suffix != ".safetensors":
        raise CheckpointError(
            f"'{json_path}': tensor file {entry['file']!r} must be a .safetensors file beside it"
        )
    tensor_path = json_path.with_name(entry["file"])
    _refuse_pickle(tensor_path)
    data = read_verified(tensor_path, entry["sha256"], json_path, safetensors=True)
    tensors = deserialize_tensors(data, tensor_path)
    if sorted(tensors) != sorted(expected):
        raise CheckpointError(
            f"'{tensor_path}' holds tensors {sorted(tensors)}; a '{calibrator.method}' calibrator needs "
            f"{sorted(expected)}"
        )
    for key, shape in expected.items():
        got = tuple(tensors[key].shape)
        if shape is not None and got != shape:
            raise CheckpointError(
                f"'{tensor_path}': tensor '{key}' has shape {list(got)}, expected {list(shape)} for "
                f"{num_classes} classes"
            )
        t = tensors[key]
        if t.dtype.is_floating_point and not bool(t.isfinite().all()):
            raise CheckpointError(f"'{tensor_path}': tensor '{key}' contains NaN or inf")
    return tensors
