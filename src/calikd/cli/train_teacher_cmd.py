"""``calikd train-teacher``: train a teacher on a dataset split, with val metrics every epoch."""

from __future__ import annotations

import argparse

from calikd.engine.distributed import distributed_session
from calikd.report.columns import TEACHER_CONSOLE
from calikd.report.text import format_table
from calikd.teacher import TeacherConfig, train_teacher
from calikd.utils.config import add_config_arguments, config_from_args


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train-teacher",
        help="train a teacher model",
        description="Train a teacher. Every flag is also a key of the YAML file given with --config "
        "(flags win). Checkpoints (safetensors + JSON) are written to --out after every epoch.",
    )
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML file with the same keys as the flags")
    add_config_arguments(parser, TeacherConfig)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(TeacherConfig, args, config_file=args.config)
    with distributed_session(config.device) as runtime:  # torchrun: one process per GPU or CPU share
        result = train_teacher(config)
    if not runtime.is_main:
        return 0
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
    return 0
