"""Report plots: scatter with least-squares fit (:mod:`.scatter`), metric curves (mean ± std,
:mod:`.curves`), grouped bars (:mod:`.bars`); the shared style and input rules are in :mod:`.style`.

Each writer (:func:`scatter_with_fit`, :func:`metric_curves`, :func:`grouped_bars`) draws one figure and
writes it as a PNG atomically (:func:`calikd.utils.io.atomic_write`), returning the path. Each has a
``*_figure`` sibling that builds and returns the
:class:`matplotlib.figure.Figure` without saving (for inspection and tests); figures are built with
``matplotlib.figure.Figure`` directly, so no pyplot state is touched and nothing needs closing.
matplotlib is imported lazily (``pip install 'calikd[plot]'``).
"""

from calikd.report.plots.bars import bars_figsize, grouped_bars, grouped_bars_figure
from calikd.report.plots.curves import metric_curves, metric_curves_figure
from calikd.report.plots.scatter import (
    LineFit,
    ScatterPoint,
    fit_line,
    scatter_figure,
    scatter_fits,
    scatter_with_fit,
)
from calikd.report.plots.style import CURVES_SIZE, DPI, SCATTER_SIZE, SkippedPointWarning

__all__ = [
    "CURVES_SIZE",
    "DPI",
    "SCATTER_SIZE",
    "LineFit",
    "ScatterPoint",
    "SkippedPointWarning",
    "bars_figsize",
    "fit_line",
    "grouped_bars",
    "grouped_bars_figure",
    "metric_curves",
    "metric_curves_figure",
    "scatter_figure",
    "scatter_fits",
    "scatter_with_fit",
]
