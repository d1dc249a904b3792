"""Shared by the plots: the fixed style, palette and figure sizes, the lazy matplotlib import, input checks
and the atomic PNG write.

Input rules, the same for every plot:

* empty input (no points, no series, no bars) -> :class:`~calikd.errors.ConfigError`;
* an infinite value, a negative std/error, a non-number -> :class:`~calikd.errors.ConfigError` naming it;
* a NaN *value* (x, y, mean) marks a missing result (e.g. a failed run): that point/bar is skipped with a
  :class:`SkippedPointWarning` naming it; if nothing is left, :class:`~calikd.errors.ConfigError`;
* a NaN or ``None`` *std / error* means "unknown" (e.g. a single seed): no error bar for that point.

All text is drawn literally (:func:`plain`): ``$`` is escaped, so names are never parsed as mathtext.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calikd.errors import ConfigError
from calikd.utils.io import atomic_write

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

DPI = 120
#: Fixed style: readable font sizes, a light grid, no top/right spines.
STYLE: dict[str, Any] = {
    "font.size": 11,
    "axes.titlesize": 13,
    "axes.labelsize": 12,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 9,
    "legend.framealpha": 0.9,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.alpha": 0.35,
    "grid.linestyle": "--",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.8,
    "lines.markersize": 7,
}
#: Colour-blind-friendly palette (Okabe-Ito) and markers; group/series ``i`` gets colour and marker ``i``.
COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
SCATTER_SIZE = (7.5, 5.5)
CURVES_SIZE = (7.5, 5.0)
BARS_HEIGHT = 5.0


class SkippedPointWarning(UserWarning):
    """A point/bar with a NaN value was left out of a plot."""


def mpl() -> tuple[Any, Any]:
    """``(matplotlib, Figure)``, imported on first use; ConfigError if matplotlib is missing."""
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - matplotlib is a declared extra
        raise ConfigError("plots need matplotlib", hint="pip install 'calikd[plot]'") from exc
    return matplotlib, Figure


def plain(text: object) -> str:
    """``text`` as matplotlib draws it literally (no mathtext)."""
    return str(text).replace("$", r"\$")


def number(value: object, what: str, *, allow_nan: bool = True) -> float:
    """``value`` as a float; a non-number, an infinity (or NaN unless ``allow_nan``) -> ConfigError."""
    if isinstance(value, (bool, str, bytes)) or value is None:
        raise ConfigError(f"{what} must be a number, got {value!r}")
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} must be a number, got {value!r}") from exc
    if math.isinf(out) or (math.isnan(out) and not allow_nan):
        raise ConfigError(f"{what} must be finite, got {value!r}")
    return out


def spread(value: object, what: str) -> float:
    """A std / error bar: ``None`` or NaN -> 0 (unknown: no bar); negative or infinite -> ConfigError."""
    if value is None:
        return 0.0
    out = number(value, what)
    if math.isnan(out):
        return 0.0
    if out < 0:
        raise ConfigError(f"{what} must be >= 0, got {value!r}")
    return out


def skip(what: str) -> None:
    """Warn (:class:`SkippedPointWarning`) that ``what`` is NaN and left out of the plot."""
    warnings.warn(f"{what} is NaN (a missing result): left out of the plot", SkippedPointWarning, 5)


def check_text(path: str | Path, **texts: str) -> Path:
    """``path`` as a Path after checking it ends in .png and every text (label, title) is non-empty."""
    for name, text in texts.items():
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"plot {name} must be a non-empty string, got {text!r}")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ConfigError(f"plot path '{path}' must end in .png")
    return path


def save(fig: Figure, path: Path, dpi: int) -> Path:
    """Write ``fig`` as a PNG to ``path`` atomically; return the path."""
    matplotlib, _ = mpl()
    with matplotlib.rc_context(STYLE), atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=dpi)
    return path


def style(i: int) -> tuple[str, str]:
    """Colour and marker of group/series ``i``."""
    return COLORS[i % len(COLORS)], MARKERS[i % len(MARKERS)]
