"""The sweep document's teacher section: calibration before and after temperature scaling, convergence and
the accuracy floor of every teacher, and their reliability diagrams."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from calikd.report.columns import SWEEP_TEACHER
from calikd.report.markdown import MarkdownDoc
from calikd.report.sweep.results import SweepResults


class TeacherCheck(Protocol):
    """A teacher's protocol check (``calikd.experiments.protocol.TeacherCheck``)."""

    name: str
    converged: float | None  # 1 / 0, None when unknown
    floor: float | None
    below: bool


def yes_no(flag: float | None) -> str:
    return "—" if flag is None else "yes" if flag else "**no**"


def teacher_section(doc: MarkdownDoc, results: SweepResults, checks: Mapping[str, TeacherCheck]) -> None:
    """``checks``: per teacher checkpoint, its convergence and floor check, in table order."""
    if not results.calibrations:
        return
    doc.heading("Teachers", 2)
    doc.paragraph(
        "Each teacher on its held-out val split and on test, raw and after temperature scaling fitted on "
        "val. Converged: its learning rate annealed and its val accuracy settled above chance over the last "
        "epochs (see `calikd.engine.convergence`). Floor: the least test accuracy the sweep asks of it "
        "(`teacher_floors`); a teacher below it is flagged."
    )
    rows, flagged = [], []
    for path, check in checks.items():
        m = results.teachers[path].metrics
        if check.below or check.converged == 0:
            flagged.append(check.name)
        rows.append(
            [
                check.name,
                *(m.get(f"test_raw_{k}") for k in SWEEP_TEACHER),
                m.get("val_raw_ace"),
                m.get("temperature"),
                m.get("test_cal_ece"),
                m.get("test_cal_ace"),
                yes_no(check.converged),
                "—"
                if check.floor is None
                else f"{check.floor:.3g}" + (" **below**" if check.below else " met"),
            ]
        )
    doc.table(
        [
            "teacher",
            *(f"test {k}" for k in SWEEP_TEACHER.headers),
            "val ace",
            "T",
            "test ece (cal)",
            "test ace (cal)",
            "converged",
            "floor",
        ],
        rows,
    )
    if flagged:
        doc.paragraph(
            f"**Flagged teachers** (below their floor or not converged): {', '.join(flagged)}. "
            "Claims that rest on them are weaker than the numbers suggest."
        )
    for run in results.calibrations:
        if "reliability" in run.artifacts and Path(run.artifacts["reliability"]).exists():
            doc.image(
                run.artifacts["reliability"],
                f"reliability of teacher {results.teacher_name(run.config['checkpoint'])}",
            )
