"""``calikd calibrate``: fit calibrators on a checkpoint's held-out val split; report test metrics."""

from __future__ import annotations

import argparse

from calikd.calibration import list_calibrators
from calikd.cli.arguments import add_checkpoint_run_arguments, checkpoint_run_kwargs
from calikd.errors import ConfigError
from calikd.report.calibration import calibration_rows
from calikd.report.columns import CALIBRATION_CONSOLE
from calikd.report.text import format_table
from calikd.teacher.calibrate import OBJECTIVES, calibrate_checkpoint


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "calibrate",
        help="fit calibrators on a checkpoint's val split",
        description="Fit post-hoc calibrators on the held-out val split of a checkpoint's dataset and write "
        "them next to the checkpoint (<stem>.calibrator.json: the first method, used by distillation's "
        "--teacher-calibration auto), with a JSON + Markdown + PNG report of test metrics before and after.",
    )
    parser.add_argument("checkpoint", help="a .safetensors file, its .json, or a run folder (uses last.*)")
    methods = [*list_calibrators(), "all"]
    parser.add_argument(
        "--method", nargs="+", default=["temperature"], metavar="METHOD", help=f"one or more of {methods}"
    )
    parser.add_argument(
        "--objective", choices=OBJECTIVES, default="nll", help="temperature-scaling objective"
    )
    parser.add_argument("--fit-split", default="val", help="split to fit on (only val; test is refused)")
    add_checkpoint_run_arguments(parser)
    parser.add_argument("--no-plots", action="store_true", help="skip the reliability-diagram PNG")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.fit_split != "val":
        raise ConfigError(
            f"refusing to fit calibration on the '{args.fit_split}' split",
            hint="calibrators are fitted on the held-out val split; test is for reporting only, and "
            "the model was trained on train",
        )
    outcome = calibrate_checkpoint(
        args.checkpoint,
        args.method,
        objective=args.objective,
        **checkpoint_run_kwargs(args),
        plots=not args.no_plots,
    )
    tests = {m: outcome.after[m]["test"] for m in outcome.methods}
    rows = calibration_rows(outcome.before["test"], tests, CALIBRATION_CONSOLE)
    print(f"calibrators fitted on val ({outcome.before['val'].n_samples} samples); test metrics:")
    print(format_table(["calibrator", *CALIBRATION_CONSOLE.headers], rows))
    temperature = outcome.records.get("temperature", {}).get("params", {}).get("temperature")
    if temperature is not None:
        print(f"fitted temperature: {temperature:.6f}")
    for method, path in outcome.artifacts.items():
        print(f"calibrator ({method}): {path}")
    for path in [*outcome.report_files, *([outcome.plot] if outcome.plot else [])]:
        print(f"report: {path}")
    return 0
