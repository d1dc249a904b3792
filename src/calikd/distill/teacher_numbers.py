"""The teacher's numbers (val and test, raw and calibrated), computed once and shared by the runs that
distil from it.

:func:`teacher_reports` returns what :func:`calikd.distill.teacher.teacher_report` does, per view. With a
``path`` (``--teacher-numbers``; sweeps give every student of a teacher the same file) each entry is read
from that JSON file when its key matches this run, and the entries computed here are added to it. A key
names everything the numbers depend on: the teacher's weights (checkpoint id), the calibrator's record (for
the calibrated numbers), the dataset and its val/test split, the view (input transform), the precision,
the device type and the number of bins; an entry with another key is never used. The reports round-trip
exactly through JSON, so a run that reads them reports the same numbers as one that computes them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import calikd
from calikd.data import DatasetSplits
from calikd.distill.teacher import DistillTeacher, teacher_report
from calikd.engine.distributed import Distributed
from calikd.metrics import CalibrationReport
from calikd.utils.device import Precision
from calikd.utils.io import atomic_write_json

FORMAT_VERSION = 1
KINDS = ("raw", "calibrated")
Reports = dict[str, dict[str, CalibrationReport]]


def numbers_key(
    teacher: DistillTeacher,
    data: DatasetSplits,
    view: dict[str, Any],
    *,
    kind: str,
    precision: Precision,
    device: torch.device,
    batch_size: int,
    n_bins: int = 15,
) -> dict[str, Any]:
    """The key of one entry: the ``kind`` (``raw`` or ``calibrated``) numbers of ``teacher`` in ``view``."""
    key: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "kind": kind,
        "teacher": teacher.checkpoint_id,
        "calibrator": teacher.calibrator.record if kind == "calibrated" and teacher.calibrator else None,
        "dataset": {
            "name": data.info.name,
            "val_fraction": data.val_fraction,
            "split_seed": data.split_seed,
            "options": dict(data.options),
            "val_size": len(data.val),
            "test_size": len(data.test),
        },
        "view": view,
        "precision": precision.name,
        "device_type": device.type,
        "n_bins": n_bins,
        "versions": {"calikd": calikd.__version__, "torch": torch.__version__},
    }
    if device.type == "cuda":  # GPU kernels may depend on the batch size and the device model
        key.update(device_name=torch.cuda.get_device_name(device), batch_size=batch_size)
    return json.loads(json.dumps(key, default=str))


def _read(path: Path) -> list[dict[str, Any]]:
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        return []  # missing or damaged: computed again (and rewritten)
    return entries if isinstance(entries, list) else []


def teacher_reports(
    teacher: DistillTeacher,
    data: DatasetSplits,
    views: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], dict[str, Any]]],
    *,
    device: torch.device,
    precision: Precision,
    batch_size: int,
    runtime: Distributed | None = None,
    path: str | Path | None = None,
) -> tuple[dict[str, Reports], bool]:
    """``{view: {split: {kind: report}}}`` for ``views`` (name -> (transform, description)), and whether
    every entry was read from ``path`` (see the module docstring)."""
    runtime = runtime or Distributed()
    entries = _read(Path(path)) if path is not None else []
    kinds = KINDS if teacher.calibrator is not None else KINDS[:1]
    out: dict[str, Reports] = {}
    added = False
    for name, (transform, description) in views.items():
        keys = {
            kind: numbers_key(
                teacher,
                data,
                description,
                kind=kind,
                precision=precision,
                device=device,
                batch_size=batch_size,
            )
            for kind in kinds
        }
        found = {
            kind: next((e["reports"] for e in entries if e.get("key") == key), None)
            for kind, key in keys.items()
        }
        if all(v is not None for v in found.values()):
            reports: Reports = {}
            for kind, per_split in found.items():
                for split, values in per_split.items():
                    reports.setdefault(split, {})[kind] = CalibrationReport.from_dict(values)
            out[name] = reports
            continue
        out[name] = teacher_report(
            teacher,
            {"val": data.val, "test": data.test},
            transform,
            device=device,
            precision=precision,
            batch_size=batch_size,
            runtime=runtime,
        )
        for kind, key in keys.items():
            if found[kind] is None:
                entries.append({"key": key, "reports": {s: r[kind].to_dict() for s, r in out[name].items()}})
                added = True
    if path is not None and added and runtime.is_main:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, entries)
    return out, not added
