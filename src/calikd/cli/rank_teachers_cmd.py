"""``calikd rank-teachers``: rank candidate teachers by predicted teaching quality, before distilling.

Each teacher is measured on its own held-out val split (never test): accuracy, NLL, ECE, ACE, OE and
entropy, and ranked by one of them (ACE by default: a teacher's adaptive calibration error predicts the
accuracy of its student better than its own accuracy does, Kim et al. 2025). With ``--db`` (or ``--sweep``)
the predicted ranking is checked against the students a sweep actually obtained from those teachers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from calikd.cli.arguments import add_checkpoint_run_arguments, checkpoint_run_kwargs
from calikd.cli.output import format_table
from calikd.experiments.ranking import (
    CALIBRATIONS,
    CRITERIA,
    check_against_students,
    check_criterion,
    rank_teachers,
)
from calikd.results import DEFAULT_DB_PATH, ResultsStore
from calikd.utils.io import atomic_write_json


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "rank-teachers",
        help="rank candidate teachers by their calibration on val (predicted teaching quality)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "checkpoints",
        nargs="+",
        metavar="CKPT",
        help="teacher checkpoints (.safetensors, stem or run folder)",
    )
    parser.add_argument("--dataset", help="dataset to evaluate on (default: each checkpoint's own)")
    parser.add_argument(
        "--criterion",
        default="ace",
        metavar="|".join(CRITERIA),
        help="rank by this val metric (lower is better, except accuracy); default ace",
    )
    parser.add_argument(
        "--calibration",
        choices=CALIBRATIONS,
        default="none",
        help="temperature = fit temperature scaling on val and score on val (optimistic); "
        "auto = the calibrator `calikd calibrate` stored next to each checkpoint",
    )
    parser.add_argument(
        "--db", metavar="PATH", help="results store of a sweep: check the ranking against its students"
    )
    parser.add_argument(
        "--sweep", help="only students of this sweep (implies --db runs/calikd.db if not given)"
    )
    parser.add_argument("--student", help="only students of this model")
    parser.add_argument("--method", help="only students distilled with this method")
    parser.add_argument(
        "--student-calibration",
        metavar="none|temperature|auto|any",
        help="only students whose teacher was distilled with this teacher_calibration (default: the value "
        "of --calibration; 'any' takes all)",
    )
    add_checkpoint_run_arguments(parser)
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON here ('-' for stdout)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    criterion = check_criterion(args.criterion)  # before any model runs
    ranking = rank_teachers(
        args.checkpoints,
        dataset=args.dataset,
        criterion=criterion,
        calibration=args.calibration,
        **checkpoint_run_kwargs(args),
    )
    students = None
    if args.db or args.sweep:
        calibration = args.student_calibration or args.calibration
        with ResultsStore(args.db or DEFAULT_DB_PATH, create=False) as store:
            students = check_against_students(
                ranking,
                store,
                sweep=args.sweep,
                student=args.student,
                method=args.method,
                calibration=None if calibration == "any" else calibration,
            )
    result = {"ranking": ranking.to_dict(), "students": students}
    if args.json == "-":
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"{len(ranking.rows)} teachers on {ranking.dataset} [{ranking.split}], ranked by {ranking.criterion}"
    )
    headers, rows = ranking.table()
    print(format_table(headers, rows))
    print(ranking.legend())
    for note in ranking.notes:
        print(f"note: {note}")
    if students is not None:
        print()
        print(_students_text(students))
    if args.json:
        atomic_write_json(Path(args.json), result)
        print(f"wrote {args.json}")
    return 0


def _students_text(students: dict[str, Any]) -> str:
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
            "-" if t["student_accuracy"] is None else t["student_accuracy"],
            "-" if t["student_accuracy_std"] is None else t["student_accuracy_std"],
            t["n_runs"],
            "-" if t["observed_rank"] is None else t["observed_rank"],
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
