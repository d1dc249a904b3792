"""The robustness report of ``calikd evaluate --corruptions``: tables per corruption and severity, mCE, and
severity curves (error and ECE vs severity, clean = severity 0)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from calikd.metrics.robustness import per_severity
from calikd.report.columns import ROBUSTNESS, MetricColumns
from calikd.report.html import write_report
from calikd.report.markdown import MarkdownDoc
from calikd.report.plots import metric_curves
from calikd.report.text import format_table
from calikd.utils.io import atomic_write_json, ensure_writable_dir


def _pct(value: float) -> str:
    return f"{100 * value:.2f}"


_SHOWN: dict[str, Callable[[Mapping[str, Any]], str]] = {  # a ROBUSTNESS column from a metrics dict
    "error": lambda m: _pct(1 - m["accuracy"]),
    "nll": lambda m: f"{m['nll']:.3f}",
    "ece": lambda m: _pct(m["ece"]),
    "ace": lambda m: _pct(m["ace"]),
    "brier": lambda m: f"{m['brier']:.4f}",
}


def _cells(m: Mapping[str, Any], columns: MetricColumns = ROBUSTNESS) -> list[str]:
    return [_SHOWN[k](m) for k in columns]


def _curve(result: dict[str, Any], metric: str) -> dict[str, list[tuple[float, float, float]]]:
    series = {}
    runs = [(result["model"], result["clean"], result["rows"])]
    if result.get("baseline"):
        b = result["baseline"]
        runs.append((f"baseline {b['model']}", b["clean"], b["rows"]))
    for label, clean, rows in runs:
        key = "accuracy" if metric == "error" else metric
        flip = (lambda v: 1.0 - v) if metric == "error" else (lambda v: v)
        points = [(0.0, flip(clean[key]), 0.0)]
        for severity, (mean, std) in per_severity(rows, key).items():
            points.append((float(severity), flip(mean), std))
        series[label] = points
    return series


def robustness_markdown(result: dict[str, Any], out_dir: Path, plots: dict[str, Path]) -> MarkdownDoc:
    """The report as a :class:`MarkdownDoc` (plots already written to ``plots``)."""
    summary = result["summary"]
    doc = MarkdownDoc()
    doc.heading(f"Robustness under corruption: {result['model']} on {result['dataset']}", 1)
    source = result["source"]
    where = (
        f"generated on the fly (seed {source['seed']}, {source['table']} severity table)"
        if source.get("source") == "generated"
        else f"read from `{source['source']}`"
    )
    items = [
        f"checkpoint: `{result['checkpoint']}`",
        f"corrupted test sets: {where}",
        f"calibrator: `{result['calibrator']}` (fitted on the clean val split)"
        if result["calibrator"]
        else "calibrator: none (raw logits)",
        f"means over: {summary['scope']}",
    ]
    if result.get("baseline"):
        items.append(f"mCE baseline: `{result['baseline']['checkpoint']}`")
    doc.bullet_list(items)
    mean = summary["mean"]
    rows = [[label, *_cells(m)] for label, m in (("clean", result["clean"]), ("corrupted (mean)", mean))]
    doc.table(["", *ROBUSTNESS.headers], rows)
    if "mce" in summary:
        doc.paragraph(
            f"**mCE {summary['mce']:.1f}%**, relative mCE {summary['relative_mce']:.1f}% "
            "(100% = as robust as the baseline; lower is better)."
        )
    for name, path in plots.items():
        doc.image(path, name)
    doc.heading("Per corruption (mean over severities 1-5)", 2)
    per = summary["per_corruption"]
    with_ce = "ce" in next(iter(per.values()))
    columns = MetricColumns(ROBUSTNESS.keys[:4], ROBUSTNESS.headers[:4])
    head = ["corruption", *columns.headers] + (["CE %", "rel. CE %"] if with_ce else [])
    table = []
    for name, m in per.items():
        row = [name, *_cells(m, columns)]
        if with_ce:
            row += [f"{100 * m['ce']:.1f}", f"{100 * m['relative_ce']:.1f}"]
        table.append(row)
    doc.table(head, table)
    doc.heading("Per corruption and severity (error % / ECE %)", 2)
    severities = sorted({r["severity"] for r in result["rows"]})
    cells: dict[str, dict[int, str]] = {}
    for r in result["rows"]:
        cells.setdefault(r["corruption"], {})[r["severity"]] = f"{_pct(1 - r['accuracy'])} / {_pct(r['ece'])}"
    doc.table(
        ["corruption", *[f"s{s}" for s in severities]],
        [[name, *[row.get(s, "") for s in severities]] for name, row in cells.items()],
    )
    return doc


def write_robustness_report(result: dict[str, Any], out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``robustness.json``, ``robustness.md`` / ``.html`` and the severity plots into ``out_dir``."""
    out = ensure_writable_dir(out_dir)
    plots: dict[str, Path] = {}
    if importlib.util.find_spec("matplotlib") is not None:
        for metric, label in (("error", "test error"), ("ece", "ECE (15 bins)")):
            plots[f"{label} vs severity"] = metric_curves(
                _curve(result, metric),
                out / f"severity_{metric}.png",
                x_label="corruption severity (0 = clean)",
                y_label=f"{label} (mean over corruptions, ±std)",
                title=f"{label.split(' (')[0]} vs corruption severity",
            )
    json_path = out / "robustness.json"
    atomic_write_json(json_path, result)
    md, html = write_report(robustness_markdown(result, out, plots), out, "robustness")
    return {"json": json_path, "markdown": md, "html": html, **{f"plot {k}": v for k, v in plots.items()}}


def robustness_text(result: Mapping[str, Any], baseline: str | None = None) -> str:
    """The console summary of ``calikd evaluate --corruptions``: error, NLL, ECE (and CE against the
    ``baseline`` checkpoint) per corruption, clean and on average, then the mCE line."""
    summary, clean = result["summary"], result["clean"]
    with_ce = "mce" in summary
    rows: list[list[Any]] = [
        [name, 1 - m["accuracy"], m["nll"], m["ece"], *([m["ce"]] if "ce" in m else [])]
        for name, m in summary["per_corruption"].items()
    ]
    rows.append(["clean", 1 - clean["accuracy"], clean["nll"], clean["ece"], *([""] if with_ce else [])])
    rows.append(
        ["mean", summary["mean"]["error"], summary["mean"]["nll"], summary["mean"]["ece"]]
        + ([summary["mce"] / 100] if with_ce else [])
    )
    head = ["corruption", "error", "nll", "ece", *(["CE"] if with_ce else [])]
    lines = [
        f"{result['model']} on {result['dataset']} under corruption (means over {summary['scope']})",
        format_table(head, rows),
    ]
    if with_ce:
        lines.append(f"mCE {summary['mce']:.1f}%, relative mCE {summary['relative_mce']:.1f}% vs {baseline}")
    return "\n".join(lines)
