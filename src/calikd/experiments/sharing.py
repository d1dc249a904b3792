"""What the students of a sweep share instead of recomputing: their teachers' logits and numbers.

Inside a sweep the teacher-logit cache is on disk by default (``<sweep out>/cache``), also for seeded
augmentation: the cache is keyed by the teacher's weights, data, input transform, precision and (with
augmentation) seed, batch size and augmentation, never by the calibrator, so every student of the same
teacher, seed and augmentation, raw or calibrated, reads the same raw logits. ``teacher_cache`` or
``cache_dir`` set in the sweep file's ``distill`` options win.

The teacher's val/test numbers (raw and calibrated) go to ``<sweep out>/teacher-numbers/<teacher>.json``
(see :mod:`calikd.distill.teacher_numbers`): the first student of a teacher computes them, every later one
reads them (entries are keyed by the teacher's weights, calibrator, split and view, so none is stale).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def distill_settings(sweep_out: str, teacher: str) -> dict[str, Any]:
    """The sweep's defaults for a student of the sweep's teacher named ``teacher`` (not part of the run's
    id)."""
    out = Path(sweep_out)
    return {
        "teacher_cache": "disk",
        "cache_dir": str(out / "cache"),
        "teacher_numbers": str(out / "teacher-numbers" / f"{teacher}.json"),
    }
