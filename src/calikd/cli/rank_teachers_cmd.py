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

from calikd.cli.arguments import add_checkpoint_run_arguments, checkpoint_run_kwargs
from calikd.experiments.ranking import (
    CALIBRATIONS,
    CRITERIA,
    check_against_students,
    check_criterion,
    rank_teachers,
)
from calikd.report.ranking import ranking_text, students_text
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
    print(ranking_text(result["ranking"]))
    if students is not None:
        print()
        print(students_text(students))
    if args.json:
        atomic_write_json(Path(args.json), result)
        print(f"wrote {args.json}")
    return 0
