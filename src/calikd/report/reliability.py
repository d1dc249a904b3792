"""Reliability diagrams: accuracy vs confidence per bin, the calibration gap shaded, a confidence histogram
underneath, the ECE in each panel's title. Several panels side by side compare before/after calibration."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from calikd.errors import ConfigError
from calikd.metrics import ReliabilityStats
from calikd.utils.io import atomic_write


@dataclass(frozen=True)
class ReliabilityPanel:
    """One diagram: a title, the per-bin statistics and the ECE to show."""

    title: str
    stats: ReliabilityStats
    ece: float


def _matplotlib():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - matplotlib is a declared extra
        raise ConfigError("plots need matplotlib", hint="pip install 'calikd[plot]'") from exc
    return plt


def plot_reliability_diagrams(
    panels: Sequence[ReliabilityPanel], path: str | Path, *, dpi: int = 120
) -> Path:
    """Draw ``panels`` side by side into a PNG at ``path`` (written atomically) and return the path."""
    if not panels:
        raise ConfigError("no reliability panels to plot")
    plt = _matplotlib()
    n = len(panels)
    fig, axes = plt.subplots(
        2, n, figsize=(3.6 * n, 4.8), sharex=True, gridspec_kw={"height_ratios": [3, 1]}, squeeze=False
    )
    for col, panel in enumerate(panels):
        top, bottom = axes[0][col], axes[1][col]
        stats = panel.stats
        centers = [(lo + hi) / 2 for lo, hi in zip(stats.lo, stats.hi, strict=True)]
        widths = [hi - lo for lo, hi in zip(stats.lo, stats.hi, strict=True)]
        filled = [i for i, c in enumerate(stats.count) if c > 0]
        acc = [stats.accuracy[i] for i in filled]
        conf = [stats.mean_confidence[i] for i in filled]
        x = [centers[i] for i in filled]
        w = [widths[i] for i in filled]
        top.bar(x, acc, width=w, color="#4c72b0", edgecolor="black", linewidth=0.5, label="accuracy")
        gap_base = [min(a, c) for a, c in zip(acc, conf, strict=True)]
        gap_height = [abs(c - a) for a, c in zip(acc, conf, strict=True)]
        top.bar(
            x,
            gap_height,
            bottom=gap_base,
            width=w,
            fill=False,
            edgecolor="#c44e52",
            hatch="///",
            linewidth=0.8,
            label="gap: mean confidence vs accuracy",
        )
        top.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1, label="perfect calibration")
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        ece = f"{100 * panel.ece:.2f}%" if math.isfinite(panel.ece) else "n/a"
        top.set_title(f"{panel.title}\nECE {ece}", fontsize=10)
        if col == 0:
            top.set_ylabel("accuracy")
            top.legend(loc="lower right", fontsize=7)
        counts = list(stats.count)
        total = max(sum(counts), 1)
        bottom.bar(
            centers, [c / total for c in counts], width=widths, color="#55a868", edgecolor="black", lw=0.5
        )
        bottom.set_xlabel("confidence (max softmax probability)")
        if col == 0:
            bottom.set_ylabel("fraction of samples")
    fig.tight_layout()
    path = Path(path)
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=dpi)
    plt.close(fig)
    return path
