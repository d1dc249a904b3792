"""``calikd distill``: distil a (calibrated) teacher into a student and report both."""

from __future__ import annotations

import argparse

from calikd.cli.training import add_config_command, train_in_session
from calikd.distill import DistillConfig, distill
from calikd.report.columns import RUN_CONSOLE
from calikd.report.run import run_rows
from calikd.report.text import format_table


def register(sub: argparse._SubParsersAction) -> None:
    add_config_command(
        sub,
        "distill",
        DistillConfig,
        run,
        help="distil a teacher checkpoint into a student",
        description="Distil --teacher CKPT into --student MODEL with --method (see `calikd methods`). The "
        "teacher's calibrator is applied to its logits first (--teacher-calibration); --tau is the separate "
        "distillation temperature. Every flag is also a key of the YAML file given with --config "
        "(flags win).",
    )


def run(args: argparse.Namespace) -> int:
    config, result = train_in_session(distill, DistillConfig, args)
    if result is None:  # not rank 0
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
