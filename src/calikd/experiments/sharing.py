"""What the students of a sweep share instead of recomputing: their teachers' logits and numbers.

Inside a sweep the teacher-logit cache is on disk by default (``<sweep out>/cache``), also for seeded
augmentation: the cache is keyed by the teacher's weights, data, input transform, precision and (with
augmentation) seed, batch size and augmentation, never by the calibrator, so every student of the same
teacher, seed and augmentation, raw or calibrated, reads the same raw logits. ``teacher_cache`` or
``cache_dir`` set in the sweep file's ``distill`` options win.

The teacher's val/test numbers (raw and calibrated) go to ``<sweep out>/teacher-numbers/<teacher>.json``
(see :mod:`calikd.distill.teacher_numbers`): the first student of a teacher computes them, every later one
reads them (entries are keyed by the teacher's weights, calibrator, split and view, so none is stale).

Reliability diagrams (``reliability.png``, about 1 s a run) are drawn for the sweep's first seed only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def distill_settings(sweep_out: str, teacher: str | None, *, first_seed: bool) -> dict[str, Any]:
    """The sweep's defaults for a student of the sweep's teacher named ``teacher`` (None: a student
    trained alone), not part of the run's id: the shared cache and numbers, and reliability diagrams drawn
    for the first seed only (the sweep report shows that seed's; about 1 s a run saved on the others)."""
    settings: dict[str, Any] = {} if first_seed else {"reliability_plot": False}
    if teacher is not None:
        out = Path(sweep_out)
        settings.update(
            teacher_cache="disk",
            cache_dir=str(out / "cache"),
            teacher_numbers=str(out / "teacher-numbers" / f"{teacher}.json"),
        )
    return settings
