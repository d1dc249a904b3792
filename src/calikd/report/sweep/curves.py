"""The sweep document's plots along one setting: student accuracy/ECE vs the distillation temperature or
the student's resolution (curves), and the augmentations side by side (grouped bars)."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from calikd.analysis import mean_std
from calikd.report.markdown import MarkdownDoc
from calikd.report.plots import grouped_bars, metric_curves
from calikd.report.sweep.results import SweepResults, config_of

DefaultTau = Callable[[str], "float | None"]  # method -> its default distillation temperature


def effective_tau(cfg: dict[str, Any], default_tau: DefaultTau) -> float | None:
    """The distillation temperature a run used: its tau, else its method's option or default."""
    if cfg.get("tau") is not None:
        return float(cfg["tau"])
    options = json.loads(cfg["method_options"]) if isinstance(cfg.get("method_options"), str) else {}
    for key in ("tau", "temperature"):  # 'temperature': the old spelling of the method option 'tau'
        if key in options:
            return float(options[key])
    default = default_tau(cfg["method"])
    return None if default is None else float(default)


def _mean_and_bar(values: list[float | None]) -> tuple[float, float]:
    """Mean over seeds and its error bar (the std; none, 0, for one seed)."""
    mean, std = mean_std(values, skip_missing=True)
    return mean, 0.0 if math.isnan(std) else std


def curves_section(
    doc: MarkdownDoc,
    results: SweepResults,
    out_dir: Path,
    along: str,
    label: str,
    default_tau: DefaultTau,
) -> None:
    """Student accuracy and ECE against ``along`` (``tau`` or a configuration key), one curve per setting."""

    def x_of(cfg: dict[str, Any]) -> float | None:
        if along == "tau":
            return effective_tau(cfg, default_tau) if cfg["teacher"] else None
        return None if cfg[along] is None else float(cfg[along])

    configs = [config_of(k) for k in results.groups]
    if len({x_of(c) for c in configs} - {None}) < 2:
        return
    doc.heading(f"Students vs {label}", 2)
    for metric in ("accuracy", "ece"):
        series: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
        for key in results.groups:
            cfg = config_of(key)
            x = x_of(cfg)
            if x is None:
                continue
            name = ", ".join(
                str(v)
                for k, v in cfg.items()
                if k not in (along, "student", "teacher") and v not in (None, "none")
            )
            name = f"{results.teacher_name(cfg['teacher'])}: {name}" if cfg["teacher"] else name
            series[name].append((x, *_mean_and_bar(results.values(key, metric))))
        png = out_dir / f"student_{metric}_vs_{along}.png"
        metric_curves(
            series,
            png,
            x_label=label,
            y_label=f"student {metric} (test)",
            title=f"student {metric} vs {label}",
        )
        doc.image(png, f"student {metric} vs {label}")


def augment_section(
    doc: MarkdownDoc,
    results: SweepResults,
    out_dir: Path,
    metrics: tuple[str, ...] = ("accuracy", "ece"),
    heading: str | None = "Augmentation inside KD",
) -> None:
    """Student ``metrics`` per KD augmentation, one bar per method (and teacher calibration)."""
    augments = {config_of(k)["kd_augment"] for k in results.groups}
    if len(augments) < 2:
        return
    if heading:
        doc.heading(heading, 2)
    for metric in metrics:
        groups: dict[str, dict[str, tuple[float, float]]] = defaultdict(dict)
        for key in results.groups:
            cfg = config_of(key)
            series = (
                f"{cfg['method']} (cal={cfg['teacher_calibration']})" if cfg["teacher"] else cfg["method"]
            )
            groups[cfg["kd_augment"]][series] = _mean_and_bar(results.values(key, metric))
        png = out_dir / f"augment_{metric}.png"
        shown = metric.replace("corrupt_", "") + (
            " under corruption" if metric.startswith("corrupt_") else ""
        )
        grouped_bars(
            groups,
            png,
            y_label=f"student {shown} (test)",
            title=f"student {shown} by augmentation",
            x_label="augmentation",
        )
        doc.image(png, f"student {shown} by augmentation")
