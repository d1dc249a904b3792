"""Scatter plots with least-squares fits: :class:`ScatterPoint`, :func:`fit_line`, :func:`scatter_fits`,
:func:`scatter_figure` and :func:`scatter_with_fit` (the PNG writer)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from calikd.errors import ConfigError
from calikd.report.plots.style import (
    DPI,
    SCATTER_SIZE,
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

FitMode = Literal["group", "overall", "both", "none"]
OVERALL = "all points"


@dataclass(frozen=True)
class ScatterPoint:
    """One point of :func:`scatter_with_fit`: ``label`` is annotated next to it (e.g. the teacher's name),
    ``group`` picks its colour, marker and fit line (e.g. "uncalibrated" / "calibrated"); ``x_err`` /
    ``y_err`` draw error bars (e.g. the std over seeds), ``None``/NaN for none."""

    x: float
    y: float
    label: str = ""
    group: str = ""
    x_err: float | None = None
    y_err: float | None = None


@dataclass(frozen=True)
class LineFit:
    """Ordinary least squares ``y = slope * x + intercept`` over ``n`` points.

    ``r2`` is the coefficient of determination ``1 - SS_res / SS_tot`` and ``pearson_r`` the correlation
    coefficient (``r2 == pearson_r ** 2`` for this fit); both are NaN when all ``y`` are equal.
    """

    slope: float
    intercept: float
    r2: float
    pearson_r: float
    n: int

    def predict(self, x: float) -> float:
        return self.slope * x + self.intercept


# ----------------------------------------------------------------------------------------------- fits
def fit_line(xs: Sequence[float], ys: Sequence[float]) -> LineFit:
    """Least-squares line through ``(xs, ys)`` with R² and Pearson r.

    Raises :class:`ConfigError` for fewer than 2 points, unequal lengths, non-finite values or all-equal x.
    """
    import numpy as np

    if len(xs) != len(ys):
        raise ConfigError(f"fit_line: {len(xs)} x values but {len(ys)} y values")
    x = np.array([number(v, "fit_line x", allow_nan=False) for v in xs], dtype=np.float64)
    y = np.array([number(v, "fit_line y", allow_nan=False) for v in ys], dtype=np.float64)
    if x.size < 2:
        raise ConfigError(f"fit_line needs at least 2 points, got {x.size}")
    dx, dy = x - x.mean(), y - y.mean()
    sxx, syy, sxy = float(dx @ dx), float(dy @ dy), float(dx @ dy)
    if sxx == 0.0:
        raise ConfigError("fit_line: all x values are equal, the slope is undefined")
    slope = sxy / sxx
    intercept = float(y.mean()) - slope * float(x.mean())
    if syy == 0.0:
        r = r2 = math.nan
    else:
        residual = y - (slope * x + intercept)
        r2 = 1.0 - float(residual @ residual) / syy
        r = max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))
    return LineFit(slope=slope, intercept=intercept, r2=r2, pearson_r=r, n=int(x.size))


def _clean_points(points: Sequence[ScatterPoint]) -> list[ScatterPoint]:
    if not points:
        raise ConfigError("no points to plot")
    kept = []
    for i, p in enumerate(points):
        if not isinstance(p, ScatterPoint):
            raise ConfigError(f"point {i} must be a ScatterPoint, got {type(p).__name__}")
        name = f"point {i}" + (f" ({p.label!r})" if p.label else "")
        x, y = number(p.x, f"{name} x"), number(p.y, f"{name} y")
        x_err, y_err = spread(p.x_err, f"{name} x_err"), spread(p.y_err, f"{name} y_err")
        if math.isnan(x) or math.isnan(y):
            skip(name)
            continue
        kept.append(ScatterPoint(x, y, str(p.label), str(p.group), x_err, y_err))
    if not kept:
        raise ConfigError("no points to plot: every point has a NaN value")
    return kept


def _groups(points: Sequence[ScatterPoint]) -> dict[str, list[ScatterPoint]]:
    groups: dict[str, list[ScatterPoint]] = {}
    for p in points:
        groups.setdefault(p.group, []).append(p)
    return groups


def _fits(points: list[ScatterPoint], fit: FitMode) -> dict[str, LineFit]:
    if fit not in ("group", "overall", "both", "none"):
        raise ConfigError(f"fit must be 'group', 'overall', 'both' or 'none', got {fit!r}")
    sets: dict[str, list[ScatterPoint]] = {}
    if fit == "both" and any(p.group == OVERALL for p in points):
        raise ConfigError(f"group name {OVERALL!r} is reserved for the overall fit with fit='both'")
    if fit in ("group", "both"):
        sets.update(_groups(points))
    if fit in ("overall", "both"):
        sets[OVERALL] = points
    out = {}
    for name, members in sets.items():
        xs = [p.x for p in members]
        if len(members) >= 2 and max(xs) > min(xs):  # too few points / one x value: no line for this set
            out[name] = fit_line(xs, [p.y for p in members])
    return out


def scatter_fits(points: Sequence[ScatterPoint], *, fit: FitMode = "group") -> dict[str, LineFit]:
    """The fits :func:`scatter_with_fit` draws: one per group (``fit="group"``), one over all points keyed
    ``"all points"`` (``"overall"``), both, or none. NaN points are skipped (with a warning); a set with
    fewer than 2 points or a single x value gets no fit. Use it to put the same numbers in a table."""
    return _fits(_clean_points(points), fit)


def _fmt(v: float, digits: int = 3) -> str:
    return "n/a" if math.isnan(v) else f"{v:.{digits}f}"


def _fit_label(name: str, f: LineFit) -> str:
    sign = "+" if f.intercept >= 0 else "−"
    return (
        f"{plain(name or 'points')} fit: y = {f.slope:.3g}·x {sign} {abs(f.intercept):.3g}\n"
        f"R² = {_fmt(f.r2)}, r = {_fmt(f.pearson_r)}, n = {f.n}"
    )


# -------------------------------------------------------------------------------------------- scatter
def scatter_figure(
    points: Sequence[ScatterPoint],
    *,
    x_label: str,
    y_label: str,
    title: str,
    annotate: bool = True,
    fit: FitMode = "group",
) -> tuple[Figure, dict[str, LineFit]]:
    """Build the :func:`scatter_with_fit` figure; return it with the fits drawn (see :func:`scatter_fits`)."""
    check_text("x.png", x_label=x_label, y_label=y_label, title=title)
    kept = _clean_points(points)
    fits = _fits(kept, fit)
    matplotlib, Figure = mpl()
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=SCATTER_SIZE, dpi=DPI)
        ax = fig.add_subplot()
        groups = _groups(kept)
        colors: dict[str, str] = {}
        for i, (group, members) in enumerate(groups.items()):
            color, marker = style(i)
            colors[group] = color
            xs, ys = [p.x for p in members], [p.y for p in members]
            x_err = [p.x_err or 0.0 for p in members]
            y_err = [p.y_err or 0.0 for p in members]
            ax.errorbar(
                xs,
                ys,
                xerr=x_err if any(x_err) else None,
                yerr=y_err if any(y_err) else None,
                fmt=marker,
                color=color,
                ecolor=color,
                elinewidth=1,
                capsize=3,
                markeredgecolor="black",
                markeredgewidth=0.6,
                label=plain(group or "points"),
                zorder=3,
            )
            if annotate:
                for p in members:
                    if p.label:
                        ax.annotate(
                            plain(p.label),
                            (p.x, p.y),
                            xytext=(5, 4),
                            textcoords="offset points",
                            fontsize=8,
                            color="#333333",
                        )
        for name, f in fits.items():
            members = kept if name == OVERALL and fit != "group" else groups[name]
            lo, hi = min(p.x for p in members), max(p.x for p in members)
            color = "#444444" if name == OVERALL and fit != "group" else colors[name]
            ax.plot(
                [lo, hi],
                [f.predict(lo), f.predict(hi)],
                linestyle="--" if name != OVERALL or fit == "group" else ":",
                color=color,
                label=_fit_label(name, f),
                zorder=2,
            )
        ax.set_xlabel(plain(x_label))
        ax.set_ylabel(plain(y_label))
        ax.set_title(plain(title))
        ax.margins(0.08)
        ax.legend(loc="best")
        fig.tight_layout()
    return fig, fits


def scatter_with_fit(
    points: Sequence[ScatterPoint],
    path: str | Path,
    *,
    x_label: str,
    y_label: str,
    title: str,
    annotate: bool = True,
    fit: FitMode = "group",
    dpi: int = DPI,
) -> Path:
    """Scatter ``points`` (one colour + marker per group, with a legend), each annotated with its label
    when ``annotate``; a dashed least-squares line per group (``fit="group"``), one dotted line over all
    points (``"overall"``), both, or none, each with slope, R², Pearson r and n in the legend; error bars
    from ``x_err``/``y_err``. Written as a PNG to ``path`` atomically; returns the path."""
    path = check_text(path, x_label=x_label, y_label=y_label, title=title)
    fig, _ = scatter_figure(points, x_label=x_label, y_label=y_label, title=title, annotate=annotate, fit=fit)
    return save(fig, path, dpi)
