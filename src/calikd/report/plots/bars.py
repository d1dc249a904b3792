"""Grouped bars: one colour per series, bar height = mean, error bar = std, one group per x category."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from calikd.errors import ConfigError
from calikd.report.plots.style import (
    BARS_HEIGHT,
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


def _clean_bars(
    groups: Mapping[str, Mapping[str, tuple[float, float]]],
) -> tuple[dict[str, dict[str, tuple[float, float]]], list[str]]:
    if not groups:
        raise ConfigError("no bar groups to plot")
    out: dict[str, dict[str, tuple[float, float]]] = {}
    names: list[str] = []
    for group, bars in groups.items():
        out[str(group)] = {}
        for name, item in bars.items():
            what = f"bar {group!r}/{name!r}"
            if len(item) != 2:
                raise ConfigError(f"{what} must be (mean, std), got {item!r}")
            mean, std = number(item[0], f"{what} mean"), spread(item[1], f"{what} std")
            if math.isnan(mean):
                skip(what)
                continue
            out[str(group)][str(name)] = (mean, std)
            if str(name) not in names:
                names.append(str(name))
    if not names:
        raise ConfigError("no bars to plot: every group is empty or NaN")
    return out, names


def bars_figsize(n_groups: int, n_series: int) -> tuple[float, float]:
    """The figure size (inches) of :func:`grouped_bars`: wider with more bars, 6.5-16 in wide."""
    width = 2.5 + n_groups * (0.45 * n_series + 0.5)  # + room for the legend on the right
    width = math.ceil(min(16.0, max(6.5, width)) * 4) / 4  # whole pixels at any integer dpi
    return width, BARS_HEIGHT


def grouped_bars_figure(
    groups: Mapping[str, Mapping[str, tuple[float, float]]],
    *,
    y_label: str,
    title: str,
    x_label: str = "",
    y_lim: tuple[float, float] | None = None,
) -> Figure:
    """Build the :func:`grouped_bars` figure without saving it."""
    check_text("x.png", y_label=y_label, title=title)
    clean, names = _clean_bars(groups)
    if y_lim is not None:
        if len(y_lim) != 2:
            raise ConfigError(f"y_lim must be (low, high), got {y_lim!r}")
        lo, hi = (number(v, "y_lim", allow_nan=False) for v in y_lim)
        if not lo < hi:
            raise ConfigError(f"y_lim must have low < high, got {y_lim!r}")
    matplotlib, Figure = mpl()
    with matplotlib.rc_context({**STYLE, "axes.grid.axis": "y"}):
        fig = Figure(figsize=bars_figsize(len(clean), len(names)), dpi=DPI)
        ax = fig.add_subplot()
        width = 0.8 / len(names)
        for i, name in enumerate(names):
            color, _ = style(i)
            xs, means, stds = [], [], []
            for g, bars in enumerate(clean.values()):
                if name in bars:
                    xs.append(g - 0.4 + width * (i + 0.5))
                    means.append(bars[name][0])
                    stds.append(bars[name][1])
            ax.bar(
                xs,
                means,
                width=width * 0.95,
                color=color,
                edgecolor="black",
                linewidth=0.5,
                yerr=stds if any(stds) else None,
                capsize=3,
                error_kw={"elinewidth": 1},
                label=plain(name),
            )
        ax.set_xticks(range(len(clean)))
        ax.set_xticklabels([plain(g) for g in clean])
        if x_label:
            ax.set_xlabel(plain(x_label))
        if y_lim is not None:
            ax.set_ylim(lo, hi)
        ax.set_ylabel(plain(y_label))
        ax.set_title(plain(title))
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
        fig.tight_layout()
    return fig


def grouped_bars(
    groups: Mapping[str, Mapping[str, tuple[float, float]]],
    path: str | Path,
    *,
    y_label: str,
    title: str,
    x_label: str = "",
    y_lim: tuple[float, float] | None = None,
    dpi: int = DPI,
) -> Path:
    """Grouped bars: ``groups`` maps an x category (e.g. the augmentation: none/cutout/mixup/CutMix/AugMix)
    to ``{series: (mean, std)}`` (e.g. per method: KD/RKD/CRD); one colour per series with a legend, bar
    height = mean, error bar = std. A series missing from a group leaves a gap; the legend sits to the right.
    ``y_lim`` (low, high) zooms the y axis (bars then do not start at 0: say so in the caption). Written as
    a PNG to ``path`` atomically (size :func:`bars_figsize` × dpi); returns the path."""
    path = check_text(path, y_label=y_label, title=title)
    fig = grouped_bars_figure(groups, y_label=y_label, title=title, x_label=x_label, y_lim=y_lim)
    return save(fig, path, dpi)
