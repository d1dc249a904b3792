"""The sweep document's student sections: every configuration as mean ± std over seeds, the same under
corruption, and reliability diagrams of some students."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from calikd.report.columns import STUDENT
from calikd.report.markdown import MarkdownDoc
from calikd.report.sweep.curves import augment_section
from calikd.report.sweep.results import SweepResults, cell

ROBUSTNESS_METRICS = ("clean_accuracy", "corrupt_accuracy", "clean_ece", "corrupt_ece", "corrupt_nll")


def _converged_cell(runs: list[Any]) -> str:
    flags = [r.metrics.get("converged") for r in runs]
    known = [f for f in flags if f is not None]
    if not known:
        return "—"
    done = sum(1 for f in known if f)
    return f"{done}/{len(known)}" if done == len(known) else f"**{done}/{len(known)}**"


def students_section(doc: MarkdownDoc, results: SweepResults) -> None:
    doc.heading("Students", 2)
    doc.paragraph(
        "Test metrics at the last epoch, mean ± std over seeds (n = number of seeds); converged: how many of "
        "the n runs passed the convergence check (learning rate annealed, val accuracy settled above "
        "chance)."
    )
    rows = [
        [
            results.label(key),
            len(runs),
            _converged_cell(runs),
            *(cell(results.values(key, m)) for m in STUDENT),
        ]
        for key, runs in results.sorted_groups()
    ]
    doc.table(["configuration", "n", "converged", *STUDENT.headers], rows)
    unconverged = [r for r in results.students if r.metrics.get("converged") == 0]
    if unconverged:
        doc.paragraph(
            f"**{len(unconverged)} of {len(results.students)} students did not converge**: more epochs, or a "
            "schedule that anneals, before drawing conclusions from them."
        )


def robustness_section(doc: MarkdownDoc, results: SweepResults, out_dir: Path) -> None:
    """Teachers and students on the corrupted test sets (sweeps with ``robustness``)."""
    if not results.robustness_runs:
        return
    doc.heading("Under corruption", 2)
    corrupt = next((r for r in results.runs if r.kind == "corrupt"), None)
    if corrupt is not None:
        cfg = corrupt.config
        subset = f"a stratified subset of {cfg['test_subset']}" if cfg.get("test_subset") else "all"
        doc.paragraph(
            f"Mean over {len(cfg['corruptions'])} corruptions x 5 severities of {subset} test images "
            f"(seed {cfg['seed']}, {cfg['table']} severity table); clean = the full test split. Raw logits "
            "(no calibrator). Mean ± std over seeds."
        )
    head = [
        "model",
        "n",
        "clean accuracy",
        "corrupted accuracy",
        "clean ece",
        "corrupted ece",
        "corrupted nll",
    ]
    rows = []
    for path, m in results.teacher_robustness.items():
        rows.append(
            [f"teacher {results.teacher_name(path)}", 1, *(cell([m.get(k)]) for k in ROBUSTNESS_METRICS)]
        )
    for key, _ in results.sorted_groups():
        values = [results.values(key, k) for k in ROBUSTNESS_METRICS]
        n = sum(v is not None for v in values[1])
        if n:
            rows.append([results.label(key), n, *(cell(v) for v in values)])
    doc.table(head, rows)
    augment_section(doc, results, out_dir, ("corrupt_accuracy", "corrupt_ece"), heading=None)


def student_reliability(doc: MarkdownDoc, results: SweepResults, limit: int = 6) -> None:
    """The reliability diagrams of the first seed of up to ``limit`` configurations (the first of its runs
    that drew them: a sweep draws them for its first seed only)."""
    shown = 0
    for key, runs in results.sorted_groups():
        drawn = [Path(r.out_dir) / "reliability.png" for r in runs if r.out_dir]
        png = next((p for p in drawn if p.exists()), None)
        if png is not None and shown < limit:
            if shown == 0:
                doc.heading("Reliability diagrams", 2)
                doc.paragraph(
                    "Teacher (uncalibrated, calibrated) and student on test, first seed of each "
                    "configuration."
                )
            doc.paragraph(f"**{results.label(key)}**")
            doc.image(png, results.label(key))
            shown += 1
