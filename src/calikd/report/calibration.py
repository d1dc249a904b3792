"""The document of a teacher's calibration (``calikd calibrate``): test metrics before and after each fitted
calibrator (``<stem>.calibration.md``), their reliability diagrams (``.png``) and the console table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from calikd.metrics import CalibrationReport
from calikd.report.columns import CALIBRATION, MetricColumns
from calikd.report.reliability import ReliabilityPanel, plot_reliability_diagrams


def calibration_rows(
    before: CalibrationReport,
    after: Mapping[str, CalibrationReport],
    columns: MetricColumns = CALIBRATION,
) -> list[list[Any]]:
    """One row per model: ``uncalibrated`` (``before``), then each calibrator of ``after`` (same split)."""
    rows = [["uncalibrated", *(getattr(before, k) for k in columns)]]
    rows += [[method, *(getattr(report, k) for k in columns)] for method, report in after.items()]
    return rows


def calibration_markdown(
    *,
    checkpoint: str,
    dataset: str,
    fit_split: str,
    objective: str,
    before: CalibrationReport,
    after: Mapping[str, CalibrationReport],
    params: Mapping[str, Mapping[str, Any]],
    plot: str | None = None,
) -> str:
    """The Markdown table of test metrics (``before`` and ``after`` each calibrator, in order) with the
    parameters each calibrator fitted (``params``: method -> its record's ``params``) and the plot."""
    columns = CALIBRATION
    lines = [
        f"# Calibration of `{checkpoint}`",
        "",
        f"Calibrators fitted on the **{fit_split}** split of `{dataset}`"
        f" (temperature objective: {objective}); metrics on the **test** split,"
        f" {before.n_samples} samples, {before.n_bins} bins.",
        "",
        "| calibrator | " + " | ".join(columns.headers) + " | fitted |",
        "|" + "---|" * (len(columns) + 2),
    ]
    for name, *values in calibration_rows(before, after, columns):
        fitted = params.get(name, {})
        shown = ", ".join(f"{k}={v:.4g}" for k, v in fitted.items() if isinstance(v, float))
        lines.append(f"| {name} | " + " | ".join(f"{v:.4f}" for v in values) + f" | {shown} |")
    if plot:
        lines += ["", f"![reliability diagrams before and after calibration]({Path(plot).name})"]
    return "\n".join(lines) + "\n"


def write_calibration_plot(
    before: CalibrationReport, after: Mapping[str, CalibrationReport], methods: Sequence[str], path: Path
) -> Path:
    """Reliability diagrams of the uncalibrated model and of each of ``methods`` (test split) as a PNG."""
    panels = [ReliabilityPanel("uncalibrated (test)", before.reliability, before.ece)]
    panels += [ReliabilityPanel(f"{m} (test)", after[m].reliability, after[m].ece) for m in methods]
    return plot_reliability_diagrams(panels, path)
