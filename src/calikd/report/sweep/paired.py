"""The sweep document's paired section: students of a calibrated teacher minus those of the same teacher
uncalibrated, same everything else and same seed (mean difference, t-interval, p, MDE, wins/losses/ties)."""

from __future__ import annotations

from collections import defaultdict

from calikd.analysis import paired_difference
from calikd.report.markdown import MarkdownDoc
from calikd.report.sweep.results import GROUP_KEYS, SweepResults, freeze

Pair = tuple[float, float, float, float]  # accuracy uncalibrated, calibrated; ece uncalibrated, calibrated


def _pairs(results: SweepResults) -> dict[str, list[Pair]]:
    """Per teacher calibration: the (uncalibrated, calibrated) student metrics of every matching pair."""
    pairs: dict[str, list[Pair]] = defaultdict(list)
    index = {}
    for run in results.students:
        cfg = run.config
        if not cfg.get("teacher"):
            continue
        key = (*(freeze(cfg.get(k)) for k in GROUP_KEYS if k != "teacher_calibration"), cfg.get("seed"))
        index[(key, cfg.get("teacher_calibration"))] = run
    for (key, calibration), run in index.items():
        if calibration == "none":
            continue
        base = index.get((key, "none"))
        if base is None:
            continue
        m0, m1 = base.metrics, run.metrics
        pairs[calibration].append(
            (
                m0.get("student_test_accuracy"),
                m1.get("student_test_accuracy"),
                m0.get("student_test_ece"),
                m1.get("student_test_ece"),
            )
        )
    return pairs


def paired_section(doc: MarkdownDoc, results: SweepResults) -> None:
    """Calibrated minus uncalibrated teacher, same everything else and same seed."""
    pairs = _pairs(results)
    if not pairs:
        return
    doc.heading("Calibrated vs uncalibrated teacher", 2)
    doc.paragraph(
        "Paired over every (teacher, student, method, augmentation, seed): calibrated minus uncalibrated; "
        "95% t-interval; MDE: the smallest true difference these pairs detect with 80% power (a "
        "non-significant difference smaller than the MDE means too few runs to tell, not no effect)."
    )
    rows: list[list[object]] = []
    for calibration, values in pairs.items():
        for i, metric in ((0, "accuracy"), (2, "ece")):
            a = [v[i] for v in values]
            b = [v[i + 1] for v in values]
            if len(a) < 2:
                rows.append([calibration, metric, len(a), f"{b[0] - a[0]:+.4f}", "", "", "", ""])
                continue
            d = paired_difference(a, b, higher_is_better=metric == "accuracy")
            rows.append(
                [
                    calibration,
                    metric,
                    d.n,
                    f"{d.mean:+.4f}",
                    f"[{d.ci[0]:+.4f}, {d.ci[1]:+.4f}]",
                    f"{d.p_value:.3g}",
                    f"{d.mde:.4f}",
                    f"{d.wins}/{d.losses}/{d.ties}",
                ]
            )
    doc.table(
        [
            "teacher calibration",
            "student metric",
            "pairs",
            "mean difference",
            "95% CI",
            "p",
            "MDE (80% power)",
            "wins/losses/ties",
        ],
        rows,
    )
