"""The robustness report of ``calikd evaluate --corruptions``: tables per corruption and severity, mCE, and
severity curves (error and ECE vs severity, clean = severity 0)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from calikd.metrics.robustness import per_severity
from calikd.report.html import write_report
from calikd.report.markdown import MarkdownDoc
from calikd.report.plots import metric_curves
from calikd.utils.io import atomic_write_json, ensure_writable_dir


def _pct(value: float) -> str:
    return f"{100 * value:.2f}"


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
    head = ["", "error %", "NLL", "ECE %", "ACE %", "Brier"]
    rows = [
        [
            label,
            _pct(1 - m["accuracy"]),
            f"{m['nll']:.3f}",
            _pct(m["ece"]),
            _pct(m["ace"]),
            f"{m['brier']:.4f}",
        ]
        for label, m in (("clean", result["clean"]), ("corrupted (mean)", mean))
    ]
    doc.table(head, rows)
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
    head = ["corruption", "error %", "NLL", "ECE %", "ACE %"] + (["CE %", "rel. CE %"] if with_ce else [])
    table = []
    for name, m in per.items():
        row = [name, _pct(1 - m["accuracy"]), f"{m['nll']:.3f}", _pct(m["ece"]), _pct(m["ace"])]
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
