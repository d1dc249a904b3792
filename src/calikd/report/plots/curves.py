"""Metric curves: one line per series through ``(x, mean, std)`` points, ±std shaded or as error bars."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from calikd.errors import ConfigError
from calikd.report.plots.style import (
    CURVES_SIZE,
    DPI,
    STYLE,
    check_text,
    mpl,
    number,
    plain,
    save,
    skip,
    spread,
    style,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure


def _clean_series(
    series: Mapping[str, Sequence[tuple[float, float, float]]], log_x: bool
) -> dict[str, list[tuple[float, float, float]]]:
    if not series:
        raise ConfigError("no series to plot")
    out = {}
    for name, pts in series.items():
        clean = []
        for j, item in enumerate(pts):
            what = f"series {name!r} point {j}"
            if len(item) != 3:
                raise ConfigError(f"{what} must be (x, mean, std), got {item!r}")
            x, mean = number(item[0], f"{what} x"), number(item[1], f"{what} mean")
            std = spread(item[2], f"{what} std")
            if math.isnan(x) or math.isnan(mean):
                skip(what)
                continue
            if log_x and x <= 0:
                raise ConfigError(f"{what} x must be > 0 on a log x axis, got {x!r}")
            clean.append((x, mean, std))
        if clean:
            out[str(name)] = sorted(clean)
    if not out:
        raise ConfigError("no points to plot: every series is empty or NaN")
    return out


def metric_curves_figure(
    series: Mapping[str, Sequence[tuple[float, float, float]]],
    *,
    x_label: str,
    y_label: str,
    title: str,
    log_x: bool = False,
    band: Literal["shade", "bars"] = "shade",
    reference_lines: Mapping[str, float] | None = None,
) -> Figure:
    """Build the :func:`metric_curves` figure without saving it."""
    check_text("x.png", x_label=x_label, y_label=y_label, title=title)
    if band not in ("shade", "bars"):
        raise ConfigError(f"band must be 'shade' or 'bars', got {band!r}")
    clean = _clean_series(series, log_x)
    refs = {
        str(k): number(v, f"reference line {k!r}", allow_nan=False)
        for k, v in (reference_lines or {}).items()
    }
    matplotlib, Figure = mpl()
    from matplotlib.ticker import NullLocator, ScalarFormatter

    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=CURVES_SIZE, dpi=DPI)
        ax = fig.add_subplot()
        if log_x:
            ax.set_xscale("log")
        for i, (name, pts) in enumerate(clean.items()):
            color, marker = style(i)
            xs, means, stds = zip(*pts, strict=True)
            if band == "bars":
                ax.errorbar(
                    xs,
                    means,
                    yerr=stds if any(stds) else None,
                    fmt=f"-{marker}",
                    color=color,
                    capsize=3,
                    label=plain(name),
                )
            else:
                ax.plot(xs, means, f"-{marker}", color=color, label=plain(name))
                if any(stds):
                    lo = [m - s for m, s in zip(means, stds, strict=True)]
                    hi = [m + s for m, s in zip(means, stds, strict=True)]
                    ax.fill_between(xs, lo, hi, color=color, alpha=0.18, linewidth=0)
        for k, (name, value) in enumerate(refs.items()):
            ax.axhline(value, color="#555555", linestyle=(0, (4, 2 + k)), linewidth=1.2, label=plain(name))
        ticks = sorted({x for pts in clean.values() for x, _, _ in pts})
        if len(ticks) <= 12:
            ax.set_xticks(ticks)
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel(plain(x_label))
        ax.set_ylabel(plain(y_label))
        ax.set_title(plain(title))
        ax.legend(loc="best")
        fig.tight_layout()
    return fig


def metric_curves(
    series: Mapping[str, Sequence[tuple[float, float, float]]],
    path: str | Path,
    *,
    x_label: str,
    y_label: str,
    title: str,
    log_x: bool = False,
    band: Literal["shade", "bars"] = "shade",
    reference_lines: Mapping[str, float] | None = None,
    dpi: int = DPI,
) -> Path:
    """One line per series (e.g. per teacher-input variant) through points ``(x, mean, std)`` sorted by x,
    with ±std shaded (``band="shade"``) or as error bars (``"bars"``); e.g. student accuracy or ECE vs the
    distillation temperature or vs the student's resolution. The x ticks are the x values themselves (up to
    12), also on a log axis (``log_x``). ``reference_lines`` (name -> y) adds dashed horizontal lines, e.g.
    the teacher's accuracy. Written as a PNG to ``path`` atomically; returns the path."""
    path = check_text(path, x_label=x_label, y_label=y_label, title=title)
    fig = metric_curves_figure(
        series,
        x_label=x_label,
        y_label=y_label,
        title=title,
        log_x=log_x,
        band=band,
        reference_lines=reference_lines,
    )
    return save(fig, path, dpi)
