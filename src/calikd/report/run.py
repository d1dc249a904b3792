"""The document of one distillation run, from its JSON summary (``DistillResult.to_dict()``, ``report.json``).

One renderer for every place a run is shown: :func:`run_rows` gives the metric table (the ``calikd distill``
console table prints it too), :func:`run_markdown` the run's ``report.md``, :func:`write_run_report` writes
``report.json``, ``report.md`` and ``reliability.png`` into the run folder, and :func:`run_summary` is
``calikd report RUN_DIR``'s ``summary.md``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from calikd.metrics import CalibrationReport
from calikd.report.columns import RUN, STUDENT, MetricColumns
from calikd.report.markdown import MarkdownDoc
from calikd.report.reliability import ReliabilityPanel, plot_reliability_diagrams
from calikd.utils.io import atomic_write_bytes, atomic_write_json

RELIABILITY_IMAGE = "![reliability diagrams on the test split](reliability.png)"
NO_MATPLOTLIB = "(no reliability diagrams: install matplotlib, `pip install 'calikd[plot]'`)"
NOT_DRAWN = (
    "(no reliability diagrams: not drawn for this run, `reliability_plot` off; a sweep draws them for its "
    "first seed)"
)


def run_rows(
    run: Mapping[str, Any],
    columns: MetricColumns,
    *,
    last_label: str = "student, last epoch",
    views: Sequence[str] | None = None,
) -> list[list[Any]]:
    """The test metrics of a run, one row per model: the student at its last and at its best-on-val epoch,
    then the teacher uncalibrated and calibrated for each of its input ``views`` (all by default; a view
    other than ``full`` is named in the label). Cells are the raw values (``None`` where one is missing)."""
    rows = [[last_label, *columns.values(run["student_test_last"])]]
    calibrated = run.get("student_calibrated") or {}
    if calibrated.get("test_last"):
        label = f"{last_label}, temperature-scaled (T = {calibrated['temperature']:.3f}, fitted on val)"
        rows.append([label, *columns.values(calibrated["test_last"])])
    rows.append(
        [f"student, best on val (epoch {run['best_epoch']})", *columns.values(run["student_test_best"])]
    )
    for view, splits in ((run.get("teacher") or {}).get("metrics") or {}).items():
        if views is not None and view not in views:
            continue
        test = splits.get("test", {})
        suffix = "" if view == "full" else f" ({view}-resolution input)"
        for kind, label in (("raw", "uncalibrated"), ("calibrated", "calibrated")):
            if kind in test:
                rows.append([f"teacher, {label}{suffix}", *columns.values(test[kind])])
    return rows


def convergence_text(convergence: Mapping[str, Any]) -> str:
    """One line for logs and reports from a convergence check's dict (``Convergence.to_dict()``)."""
    c = convergence
    if c["converged"]:
        return (
            f"converged (lr annealed to {c['final_lr_ratio']:.3g}x its peak; {c['accuracy_split']} "
            f"accuracy range {c['accuracy_range']:.4f} <= {c['band']} over the last "
            f"{c['last_epochs']} epochs)"
        )
    return f"NOT converged: {c['reason']}"


def _speed_lines(extra: Mapping[str, Any]) -> list[str]:
    """How the precision and the teacher's forward path were chosen, with the img/s measured for each."""
    lines = []
    for key, label, name in (("precision", "precision", "chosen"), ("teacher_path", "teacher path", "path")):
        record = extra.get(key)
        if not record:
            continue
        rates = ", ".join(f"{k} {v:.0f} img/s" for k, v in (record.get("images_per_s") or {}).items())
        source = record.get("source", "")
        lines.append(f"- {label}: {record.get(name)} ({source}{': ' + rates if rates else ''})")
    return lines


def _teacher_line(teacher: Mapping[str, Any]) -> str:
    temperature = teacher.get("temperature")
    return (
        f"- teacher `{teacher['checkpoint']}`; calibration: {teacher['calibration_source']}"
        + (f", T = {temperature:.4f}" if temperature is not None else "")
        + (
            ""
            if teacher.get("calibrator_applied", True)
            else " (used as the distillation temperature, not applied to the logits)"
        )
    )


def run_markdown(run: Mapping[str, Any]) -> str:
    """The run's ``report.md``: its settings, speed, convergence and the :data:`~calikd.report.columns.RUN`
    metrics of student and teacher on test."""
    extra = run["extra"]
    config = extra["config"]
    teacher = run.get("teacher") or {}
    lines = [
        f"# Distillation: {teacher.get('model') or 'no teacher'} -> {config['student']} ({config['method']})",
        "",
        f"- dataset: `{extra['dataset']}`; epochs {config['epochs']}, seed {config['seed']}, "
        f"KD augmentation: {config['kd_augment']}",
        f"- method options: `{extra['method_options']}`",
    ]
    if teacher:
        lines.append(_teacher_line(teacher))
    if config.get("student_resolution"):
        lines.append(
            f"- student resolution {config['student_resolution']}, teacher input: {config['teacher_input']}"
        )
    cache = run.get("cache")
    lines += [
        f"- training: {run['wall_time_s']:.0f} s, {run['train_images_per_s']:.0f} img/s "
        f"({run['precision']} on {run['device']})" + (f"; teacher-logit cache {cache}" if cache else ""),
        *_speed_lines(extra),
        *([f"- convergence: {convergence_text(run['convergence'])}"] if run.get("convergence") else []),
        "",
        "| model (test) | " + " | ".join(RUN.headers) + " |",
        "|" + "---|" * (len(RUN) + 1),
    ]
    for label, *values in run_rows(run, RUN):
        lines.append(f"| {label} | " + " | ".join(f"{v:.4f}" for v in values) + " |")
    lines += ["", RELIABILITY_IMAGE, ""]
    return "\n".join(lines)


def write_run_report(
    run: Mapping[str, Any], panels: Mapping[str, CalibrationReport], out_dir: Path, *, plot: bool = True
) -> list[Path]:
    """Write ``report.json`` (``run`` itself), ``report.md`` and, with ``plot`` and matplotlib,
    ``reliability.png`` (one panel per entry of ``panels``) into ``out_dir``; returns the paths written."""
    written = [out_dir / "report.json", out_dir / "report.md"]
    text = run_markdown(run)
    if not plot:
        text = text.replace(RELIABILITY_IMAGE, NOT_DRAWN)
        (out_dir / "reliability.png").unlink(missing_ok=True)  # an earlier attempt's would not match
    elif importlib.util.find_spec("matplotlib") is None:
        text = text.replace(RELIABILITY_IMAGE, NO_MATPLOTLIB)
    else:
        written.append(
            plot_reliability_diagrams(
                [ReliabilityPanel(title, report.reliability, report.ece) for title, report in panels.items()],
                out_dir / "reliability.png",
            )
        )
    atomic_write_json(written[0], run)
    atomic_write_bytes(written[1], text.encode())
    return written


def run_summary(run: Mapping[str, Any], folder: Path) -> MarkdownDoc:
    """``calikd report RUN_DIR``'s document of a finished run (its ``report.json`` in ``folder``)."""
    doc = MarkdownDoc().heading(f"Distillation run `{folder}`", 1)
    extra = run.get("extra", {})
    doc.paragraph(
        f"method {extra.get('method')}, options `{extra.get('method_options')}`, "
        f"dataset {extra.get('dataset')}"
    )
    doc.table(["model (test)", *STUDENT.headers], run_rows(run, STUDENT, views=("full",)))
    if (folder / "reliability.png").exists():
        doc.image(folder / "reliability.png", "reliability diagrams on the test split")
    return doc
