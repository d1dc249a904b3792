"""What the students of a sweep share instead of recomputing: their teachers' logits.

Inside a sweep the teacher-logit cache is on disk by default (``<sweep out>/cache``), also for seeded
augmentation: the cache is keyed by the teacher's weights, data, input transform, precision and (with
augmentation) seed, batch size and augmentation, never by the calibrator, so every student of the same
teacher, seed and augmentation, raw or calibrated, reads the same raw logits. ``teacher_cache`` or
``cache_dir`` set in the sweep file's ``distill`` options win.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def distill_settings(sweep_out: str) -> dict[str, Any]:
    """The sweep's defaults for a student with a teacher (not part of the run's id)."""
    return {"teacher_cache": "disk", "cache_dir": str(Path(sweep_out) / "cache")}
