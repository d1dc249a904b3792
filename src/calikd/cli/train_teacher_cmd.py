"""``calikd train-teacher``: train a teacher on a dataset split, with val metrics every epoch."""

from __future__ import annotations

import argparse

from calikd.cli.training import add_config_command, train_in_session
from calikd.report.columns import TEACHER_CONSOLE
from calikd.report.text import format_table
from calikd.teacher import TeacherConfig, TeacherResult, train_teacher


def register(sub: argparse._SubParsersAction) -> None:
    add_config_command(
        sub,
        "train-teacher",
        TeacherConfig,
        run,
        help="train a teacher model",
        description="Train a teacher. Every flag is also a key of the YAML file given with --config "
        "(flags win). Checkpoints (safetensors + JSON) are written to --out after every epoch.",
    )


def run(args: argparse.Namespace) -> int:
    config, result = train_in_session(train_teacher, TeacherConfig, args)
    if result is not None:  # rank 0 alone prints
        _print_result(config, result)
    return 0


def _print_result(config: TeacherConfig, result: TeacherResult) -> None:
    rows = [
        [f"last (epoch {config.epochs})", *TEACHER_CONSOLE.values(result.test_last)],
        [f"best on val (epoch {result.best_epoch})", *TEACHER_CONSOLE.values(result.test_best)],
    ]
    print(format_table(["test metrics", *TEACHER_CONSOLE.headers], rows))
    print(
        f"trained in {result.wall_time_s:.1f} s at {result.train_images_per_s:.0f} img/s ({result.precision})"
    )
    print(f"checkpoint: {result.checkpoint}")
    print(f"best-on-val checkpoint: {result.best_checkpoint}")
