"""Values of the results store: canonical config JSON, run ids, metric values, flattening for CSV."""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
from collections.abc import Mapping
from typing import Any

from calikd.errors import ConfigError

__all__ = [
    "RUN_ID_LENGTH",
    "canonical_json",
    "csv_cell",
    "flatten",
    "metric_value",
    "plain",
    "run_id_for",
]

RUN_ID_LENGTH = 16  # hex digits of SHA-256: 64 bits, no collision in any realistic number of runs


def _scalar(obj: Any) -> Any:
    """numpy scalars and 0-d arrays / tensors as Python numbers (anything else unchanged)."""
    if getattr(obj, "ndim", None) == 0 and callable(getattr(obj, "item", None)):
        return obj.item()
    return obj


def plain(obj: Any, where: str = "config") -> Any:
    """``obj`` as plain JSON values (dict with str keys, list, str, int, finite float, bool, None).

    Tuples become lists, paths strings, numpy / torch scalars Python numbers. Raises ConfigError on
    anything else, on non-string keys and on NaN or infinite floats (they have no canonical JSON form).
    """
    obj = _scalar(obj)
    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ConfigError(f"{where} is {obj}, which is not a finite number", hint="use null for 'unset'")
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise ConfigError(f"{where} has the key {key!r}: keys must be strings")
            out[key] = plain(value, f"{where}.{key}")
        return out
    if isinstance(obj, (list, tuple)):
        return [plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise ConfigError(f"{where} is a {type(obj).__name__}, which cannot be stored as JSON")


def canonical_json(obj: Any, where: str = "config") -> str:
    """The canonical JSON text of ``obj``: sorted keys, no spaces, UTF-8; equal configs give equal text."""
    return json.dumps(
        plain(obj, where), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def run_id_for(config: Mapping[str, Any]) -> str:
    """The run id of ``config``: the first 16 hex digits of the SHA-256 of its canonical JSON.

    Stable across processes, machines and Python versions; key order does not matter, but types do
    (``1`` and ``1.0`` are different configs), so hash the fully resolved config.
    """
    if not isinstance(config, Mapping):
        raise ConfigError(f"a run config must be a mapping, got {type(config).__name__}")
    return hashlib.sha256(canonical_json(config).encode("utf-8")).hexdigest()[:RUN_ID_LENGTH]


def metric_value(name: Any, value: Any) -> float | None:
    """A metric as stored: a float, or None for None / NaN / +-inf (undefined: a diverged run, say).

    Raises ConfigError for a name that is not a non-empty string and for values that are not numbers
    (strings, bools, lists, tensors with more than one element).
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"metric names must be non-empty strings, got {name!r}")
    value = _scalar(value)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"metric '{name}' must be a number or None, got {type(value).__name__} {value!r}")
    value = float(value)
    return value if math.isfinite(value) else None


def flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level with dotted keys: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``.

    Lists stay values; an empty mapping stays ``{}`` so that its key is not lost.
    """
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def csv_cell(value: Any) -> str:
    """A CSV cell: empty for None, JSON for lists and mappings, ``repr`` precision for floats."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple, Mapping)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    if isinstance(value, float):
        return repr(value)
    return str(value)
