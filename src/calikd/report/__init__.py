"""Reports: the rendering primitives (reliability diagrams, scatter/curve/bar plots as PNG, Markdown tables
and self-contained HTML, metric-column presets) and one module per document: :mod:`~calikd.report.run` (a
distillation run), :mod:`~calikd.report.calibration`, :mod:`~calikd.report.sweep`,
:mod:`~calikd.report.robustness` and :mod:`~calikd.report.ranking`. Documents take plain data (mappings,
rows, dataclasses of :mod:`calikd.metrics` / :mod:`calikd.analysis`), so any layer above can write one.
"""

from calikd.analysis import format_mean_std, mean_std
from calikd.report.html import render_html, write_report
from calikd.report.markdown import MarkdownDoc, format_cell, table
from calikd.report.plots import (
    LineFit,
    ScatterPoint,
    SkippedPointWarning,
    fit_line,
    grouped_bars,
    metric_curves,
    scatter_fits,
    scatter_with_fit,
)
from calikd.report.reliability import ReliabilityPanel, plot_reliability_diagrams

__all__ = [
    "LineFit",
    "MarkdownDoc",
    "ReliabilityPanel",
    "ScatterPoint",
    "SkippedPointWarning",
    "fit_line",
    "format_cell",
    "format_mean_std",
    "grouped_bars",
    "mean_std",
    "metric_curves",
    "plot_reliability_diagrams",
    "render_html",
    "scatter_fits",
    "scatter_with_fit",
    "table",
    "write_report",
]
