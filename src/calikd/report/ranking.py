"""The document of ``calikd rank-teachers``: candidate teachers ranked by a criterion on their val split
(``TeacherRanking.to_dict()``) and, when asked, the students a sweep actually obtained from them
(``check_against_students``), as console text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from calikd.report.columns import RANKING
from calikd.report.text import format_table


def _cell(value: Any) -> Any:
    return "-" if value is None else value


def ranking_table(ranking: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Headers and rows of the ranking table; the criterion column is marked with ``*``.

    Columns: rank, teacher, model, checkpoint id, [temperature], the :data:`~calikd.report.columns.RANKING`
    metrics, and with a calibrator the raw (uncalibrated) criterion value.
    """
    teachers = ranking["teachers"]
    criterion = ranking["criterion"]
    temperature = any(r["calibrator"] and "temperature" in r["calibrator"] for r in teachers)
    calibrated = any(r["uncalibrated"] is not None for r in teachers)
    headers = ["rank", "teacher", "model", "id"]
    headers += ["T"] if temperature else []
    headers += [f"{h}*" if m == criterion else h for m, h in zip(RANKING.keys, RANKING.headers, strict=True)]
    headers += [f"raw {criterion}"] if calibrated else []
    rows = []
    for r in teachers:
        row: list[Any] = [r["rank"], r["name"], r["model"], r["checkpoint_id"]]
        if temperature:
            row.append((r["calibrator"] or {}).get("temperature", "-"))
        row += [_cell(v) for v in RANKING.values(r["metrics"])]
        if calibrated:
            row.append(_cell((r["uncalibrated"] or {}).get(criterion)))
        rows.append(row)
    return headers, rows


def ranking_legend(ranking: Mapping[str, Any]) -> str:
    """One line saying what the marked column is and which way is better."""
    better = "higher" if ranking["higher_is_better"] else "lower"
    cal = "" if ranking["calibration"] == "none" else f", after {ranking['calibration']} calibration"
    return (
        f"* ranking criterion: {ranking['criterion']} on each teacher's own {ranking['split']} split{cal} "
        f"({better} predicts a better student); {ranking['n_bins']} bins"
    )


def ranking_text(ranking: Mapping[str, Any]) -> str:
    """The ranking as console text: a title line, the table, the legend and the notes."""
    lines = [
        f"{len(ranking['teachers'])} teachers on {ranking['dataset']} [{ranking['split']}], "
        f"ranked by {ranking['criterion']}",
        format_table(*ranking_table(ranking)),
        ranking_legend(ranking),
    ]
    lines += [f"note: {note}" for note in ranking["notes"]]
    return "\n".join(lines)


def students_text(students: Mapping[str, Any]) -> str:
    """The observed students per teacher and the agreement with the predicted ranking."""
    filters = ", ".join(f"{k}={v}" for k, v in students["filters"].items() if v is not None)
    lines = [
        f"students actually obtained ({students['n_runs']} finished distill runs matched"
        f"{'; ' + filters if filters else ''}):"
    ]
    headers = ["predicted", "teacher", students["criterion"], "student acc", "std", "runs", "observed"]
    rows = [
        [
            t["predicted_rank"],
            t["name"],
            t["score"],
            _cell(t["student_accuracy"]),
            _cell(t["student_accuracy_std"]),
            t["n_runs"],
            _cell(t["observed_rank"]),
        ]
        for t in students["teachers"]
    ]
    lines.append(format_table(headers, rows))
    if len(students["pooled"]) > 1:
        shown = "; ".join(
            f"{p['student']}/{p['method']}/{p['teacher_calibration']}" for p in students["pooled"]
        )
        lines.append(
            f"note: averaged over {len(students['pooled'])} student/method/calibration settings ({shown}); "
            "pass --student / --method / --student-calibration to compare like with like"
        )
    if students["message"]:
        lines.append(students["message"])
        return "\n".join(lines)
    top = "yes" if students["top1_agreement"] else "no"
    lines.append(
        f"agreement over {students['teachers_matched']} teachers (+1: the predicted order is the observed "
        "one): "
        f"Spearman rho {students['spearman_rho']:.3f}, Kendall tau {students['kendall_tau']:.3f}, "
        f"top-1 {top} (predicted {', '.join(students['predicted_top'])}; "
        f"observed {', '.join(students['observed_top'])})"
    )
    corr = students.get("correlation")
    if corr:
        lines.append(
            f"student accuracy vs teacher {students['criterion']}: Pearson r {corr['pearson_r']:.3f}, "
            f"R^2 {corr['r2']:.3f}, p {corr['p_value']:.3g} (n = {corr['n']})"
        )
    elif students.get("correlation_message"):
        lines.append(f"no correlation: {students['correlation_message']}")
    return "\n".join(lines)
