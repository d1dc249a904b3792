"""``calikd distill``: distil a (calibrated) teacher into a student and report both."""

from __future__ import annotations

import argparse

from calikd.distill import DistillConfig, distill
from calikd.engine.distributed import distributed_session
from calikd.report.columns import RUN_CONSOLE
from calikd.report.run import run_rows
from calikd.report.text import format_table
from calikd.utils.config import add_config_arguments, config_from_args


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "distill",
        help="distil a teacher checkpoint into a student",
        description="Distil --teacher CKPT into --student MODEL with --method (see `calikd methods`). The "
        "teacher's calibrator is applied to its logits first (--teacher-calibration); --tau is the separate "
        "distillation temperature. Every flag is also a key of the YAML file given with --config "
        "(flags win).",
    )
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML file with the same keys as the flags")
    add_config_arguments(parser, DistillConfig)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(DistillConfig, args, config_file=args.config)
    with distributed_session(config.device) as runtime:  # torchrun: one process per GPU or CPU share
        result = distill(config)
    if not runtime.is_main:
        return 0
    rows = run_rows(
        result.to_dict(), RUN_CONSOLE, last_label=f"student, last (epoch {config.epochs})", views=("full",)
    )
    print(format_table(["test metrics", *RUN_CONSOLE.headers], rows))
    if result.teacher:
        print(f"teacher calibration: {result.teacher['calibration_source']}")
    print(
        f"trained in {result.wall_time_s:.1f} s at {result.train_images_per_s:.0f} img/s ({result.precision})"
        + (f"; teacher-logit cache: {result.cache['hits']} hits" if result.cache else "")
    )
    print(f"checkpoint: {result.checkpoint}")
    print(f"report: {result.out_dir / 'report.md'}")
    return 0
