"""The report of a distillation run: ``report.json``, ``report.md`` and ``reliability.png`` in its folder."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from calikd.engine.convergence import Convergence
from calikd.metrics import CalibrationReport
from calikd.report import ReliabilityPanel, plot_reliability_diagrams
from calikd.utils.io import atomic_write_bytes, atomic_write_json

COLUMNS = ("accuracy", "nll", "ece", "ace", "entropy", "brier", "oe")


def _row(name: str, metrics: Mapping[str, Any]) -> str:
    return f"| {name} | " + " | ".join(f"{metrics[k]:.4f}" for k in COLUMNS) + " |"


def markdown(result: Any) -> str:
    """A Markdown summary of a :class:`~calikd.distill.train.DistillResult`."""
    config = result.extra["config"]
    teacher = result.teacher or {}
    lines = [
        f"# Distillation: {teacher.get('model') or 'no teacher'} -> {config['student']} ({config['method']})",
        "",
        f"- dataset: `{result.extra['dataset']}`; epochs {config['epochs']}, seed {config['seed']}, "
        f"KD augmentation: {config['kd_augment']}",
        f"- method options: `{result.extra['method_options']}`",
    ]
    if teacher:
        temperature = teacher.get("temperature")
        lines.append(
            f"- teacher `{teacher['checkpoint']}`; calibration: {teacher['calibration_source']}"
            + (f", T = {temperature:.4f}" if temperature is not None else "")
            + (
                ""
                if teacher.get("calibrator_applied", True)
                else " (used as the distillation temperature, not applied to the logits)"
            )
        )
    if config.get("student_resolution"):
        lines.append(
            f"- student resolution {config['student_resolution']}, teacher input: {config['teacher_input']}"
        )
    lines += [
        f"- training: {result.wall_time_s:.0f} s, {result.train_images_per_s:.0f} img/s "
        f"({result.precision} on {result.device})"
        + (f"; teacher-logit cache {result.cache}" if result.cache else ""),
        *_speed_lines(result.extra),
        *(
            [f"- convergence: {Convergence(**result.convergence).describe()}"]
            if getattr(result, "convergence", None)
            else []
        ),
        "",
        "| model (test) | " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * (len(COLUMNS) + 1),
        _row("student, last epoch", result.student_test_last),
        _row(f"student, best on val (epoch {result.best_epoch})", result.student_test_best),
    ]
    for view, splits in (teacher.get("metrics") or {}).items():
        test = splits.get("test", {})
        suffix = "" if view == "full" else f" ({view}-resolution input)"
        if "raw" in test:
            lines.append(_row(f"teacher, uncalibrated{suffix}", test["raw"]))
        if "calibrated" in test:
            lines.append(_row(f"teacher, calibrated{suffix}", test["calibrated"]))
    lines += ["", "![reliability diagrams on the test split](reliability.png)", ""]
    return "\n".join(lines)


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


def write_report(result: Any, panels: Mapping[str, CalibrationReport], out_dir: Path) -> list[Path]:
    """Write the JSON summary, the Markdown report and (with matplotlib) the reliability diagrams."""
    written = [out_dir / "report.json", out_dir / "report.md"]
    text = markdown(result)
    if importlib.util.find_spec("matplotlib") is None:
        text = text.replace(
            "![reliability diagrams on the test split](reliability.png)",
            "(no reliability diagrams: install matplotlib, `pip install 'calikd[plot]'`)",
        )
    else:
        written.append(
            plot_reliability_diagrams(
                [ReliabilityPanel(title, report.reliability, report.ece) for title, report in panels.items()],
                out_dir / "reliability.png",
            )
        )
    atomic_write_json(written[0], result.to_dict())
    atomic_write_bytes(written[1], text.encode())
    return written
