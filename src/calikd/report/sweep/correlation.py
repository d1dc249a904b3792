"""The sweep document's teacher-vs-student sections: does a teacher's calibration predict how well it
teaches (Pearson r, Spearman rho, R² with bootstrap CI, scatter plots), and would ranking the teachers by
their val ACE before distilling have picked the best ones."""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from pathlib import Path

from calikd.analysis import correlate, rank_agreement
from calikd.errors import ConfigError
from calikd.report.columns import SWEEP_TEACHER
from calikd.report.markdown import MarkdownDoc
from calikd.report.plots import ScatterPoint, scatter_with_fit
from calikd.report.sweep.results import QUIET, SweepResults, config_of, seed_mean


def correlation_section(doc: MarkdownDoc, results: SweepResults, out_dir: Path) -> None:
    """Teacher metric vs mean student accuracy, per setting (student, method, augmentation, ...) with at
    least 3 teachers; for students of calibrated teachers the teacher's metric after calibration."""
    settings: dict[tuple, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for key in results.groups:
        cfg = config_of(key)
        if not cfg["teacher"] or cfg["teacher"] not in results.teachers:
            continue
        setting = tuple(v for k, v in cfg.items() if k not in ("teacher", "teacher_calibration"))
        mean = seed_mean(results.values(key, "accuracy"))
        if not math.isnan(mean):
            settings[setting][cfg["teacher_calibration"]][cfg["teacher"]] = mean
    usable = {s: c for s, c in settings.items() if any(len(t) >= 3 for t in c.values())}
    if not usable:
        return
    doc.heading("Does teacher calibration predict teaching quality?", 2)
    doc.paragraph(
        "Each teacher's test metric against the mean test accuracy of the students it taught (for students "
        "of calibrated teachers, the teacher's metric after calibration); R² with its 95% bootstrap interval."
    )
    rows: list[list[object]] = []
    for n, (setting, by_calibration) in enumerate(usable.items()):
        label = ", ".join(str(v) for v in setting if v not in QUIET)
        for metric in SWEEP_TEACHER:
            points = []
            for calibration, accuracies in by_calibration.items():
                kind = "raw" if calibration == "none" else "cal"
                xs = [results.teachers[p].metrics.get(f"test_{kind}_{metric}") for p in accuracies]
                ys = list(accuracies.values())
                points += [
                    ScatterPoint(
                        x, y, label=results.teacher_name(p), group=f"teacher calibration: {calibration}"
                    )
                    for x, y, p in zip(xs, ys, accuracies, strict=True)
                    if x is not None
                ]
                if len(accuracies) < 3 or any(x is None for x in xs):
                    continue
                rows.append(_correlation_row(label, calibration, metric, xs, ys))
            if metric in ("ace", "accuracy") and len({p.x for p in points}) >= 2:
                png = out_dir / f"teacher_{metric}_vs_student_accuracy_{n}.png"
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    scatter_with_fit(
                        points,
                        png,
                        x_label=f"teacher {metric.upper() if metric == 'ace' else metric} (test)",
                        y_label="student accuracy (test, mean over seeds)",
                        title=f"teacher {metric} vs student accuracy ({label})",
                    )
                doc.image(png, f"teacher {metric} vs student accuracy ({label})")
    if rows:
        doc.table(
            ["setting", "teacher calibration", "predictor", "pearson r", "spearman rho", "R² [95% CI]", "p"],
            rows,
        )


def _correlation_row(label: str, calibration: str, metric: str, xs: list, ys: list) -> list[object]:
    try:
        c = correlate(xs, ys, n_boot=1000)
    except ConfigError as exc:
        return [label, calibration, f"teacher {metric}", exc.message, "", "", ""]
    ci = f" [{c.r2_ci[0]:.2f}, {c.r2_ci[1]:.2f}]" if c.r2_ci else ""
    return [
        label,
        calibration,
        f"teacher {metric}",
        f"{c.pearson_r:.3f}",
        f"{c.spearman_rho:.3f}",
        f"{c.r2:.3f}{ci}",
        f"{c.p_value:.3g}",
    ]


def ranking_section(doc: MarkdownDoc, results: SweepResults) -> None:
    """Would ranking the teachers by their val ACE (before distilling) have picked the best teachers?"""
    rows: list[list[object]] = []
    for key_setting, accuracies in _uncalibrated_settings(results).items():
        paths = [p for p in accuracies if results.teachers[p].metrics.get("val_raw_ace") is not None]
        if len(paths) < 2:
            continue
        predicted = [results.teachers[p].metrics["val_raw_ace"] for p in paths]
        observed = [accuracies[p] for p in paths]
        try:
            agreement = rank_agreement(predicted, observed, predicted_higher_is_better=False)
        except ConfigError as exc:
            rows.append([key_setting, len(paths), exc.message, "", "", ""])
            continue
        best = results.teacher_name(paths[min(range(len(paths)), key=predicted.__getitem__)])
        rows.append(
            [
                key_setting,
                len(paths),
                f"{agreement.spearman_rho:+.3f}",
                f"{agreement.kendall_tau:+.3f}",
                "yes" if agreement.top1_agreement else "no",
                best,
            ]
        )
    if rows:
        doc.heading("Ranking teachers by val ACE before distilling", 2)
        doc.paragraph(
            "What `calikd rank-teachers` predicts (lower val ACE = better teacher) against the students "
            "obtained from uncalibrated teachers; +1 is perfect agreement."
        )
        doc.table(
            ["setting", "teachers", "spearman rho", "kendall tau", "top-1 right", "predicted best"], rows
        )


def _uncalibrated_settings(results: SweepResults) -> dict[str, dict[str, float]]:
    """Per setting (student, method, augmentation, ...): mean student accuracy per uncalibrated teacher."""
    settings: dict[str, dict[str, float]] = defaultdict(dict)
    for key in results.groups:
        cfg = config_of(key)
        if (
            not cfg["teacher"]
            or cfg["teacher"] not in results.teachers
            or cfg["teacher_calibration"] != "none"
        ):
            continue
        label = ", ".join(
            str(v) for k, v in cfg.items() if k not in ("teacher", "teacher_calibration") and v not in QUIET
        )
        mean = seed_mean(results.values(key, "accuracy"))
        if not math.isnan(mean):
            settings[label][cfg["teacher"]] = mean
    return settings
