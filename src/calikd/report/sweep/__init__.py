"""The sweep document (``calikd report``): a sweep's results as Markdown and self-contained HTML.

Sections: the teachers' calibration before and after temperature scaling (:mod:`.teachers`); every student
configuration as mean ± std over seeds, under corruption too, and reliability diagrams (:mod:`.students`);
the correlation of each teacher metric with student accuracy and the val-ACE ranking of the teachers
(:mod:`.correlation`); calibrated vs uncalibrated teachers as paired differences over seeds
(:mod:`.paired`); student accuracy/ECE vs the distillation temperature and the student's resolution, and
augmentations side by side (:mod:`.curves`). The runs are joined in :mod:`.results`;
:mod:`calikd.experiments.report` reads them from the results store and writes the files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from calikd.report.markdown import MarkdownDoc
from calikd.report.sweep.correlation import correlation_section, ranking_section
from calikd.report.sweep.curves import DefaultTau, augment_section, curves_section, effective_tau
from calikd.report.sweep.paired import paired_section
from calikd.report.sweep.results import GROUP_KEYS, SweepResults, SweepRun, cell, config_of, freeze
from calikd.report.sweep.students import robustness_section, student_reliability, students_section
from calikd.report.sweep.teachers import TeacherCheck, teacher_section

Preface = Callable[[MarkdownDoc, SweepResults], None]


def sweep_document(
    results: SweepResults,
    out_dir: Path,
    *,
    sweep: str,
    source: str,
    counts: Mapping[str, int],
    teacher_checks: Mapping[str, TeacherCheck],
    default_tau: DefaultTau,
    timing: str | None = None,
    preface: Preface | None = None,
) -> MarkdownDoc:
    """The document of ``sweep`` (plots written into ``out_dir``). ``source``: where the runs were read
    (the results database); ``counts``: runs per status; ``teacher_checks``: per teacher checkpoint, its
    protocol check; ``default_tau(method)``: a method's default distillation temperature; ``timing``: a
    paragraph on the sweep's time; ``preface(doc, results)`` adds sections first (a reproduction's claim
    and numbers)."""
    doc = MarkdownDoc().heading(f"Sweep `{sweep}`", 1)
    doc.paragraph(
        f"{len(results.runs)} runs in `{source}`: "
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if n)
    )
    if timing:
        doc.paragraph(timing)
    if preface is not None:
        preface(doc, results)
    teacher_section(doc, results, teacher_checks)
    if results.students:
        students_section(doc, results)
        correlation_section(doc, results, out_dir)
        ranking_section(doc, results)
        paired_section(doc, results)
        curves_section(doc, results, out_dir, "tau", "distillation temperature", default_tau)
        curves_section(
            doc, results, out_dir, "student_resolution", "student resolution (px or factor)", default_tau
        )
        augment_section(doc, results, out_dir)
        robustness_section(doc, results, out_dir)
        student_reliability(doc, results)
    return doc


__all__ = [
    "GROUP_KEYS",
    "DefaultTau",
    "Preface",
    "SweepResults",
    "SweepRun",
    "TeacherCheck",
    "cell",
    "config_of",
    "effective_tau",
    "freeze",
    "sweep_document",
]
