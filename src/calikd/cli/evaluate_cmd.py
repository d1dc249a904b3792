"""``calikd evaluate``: accuracy, NLL and ECE of a checkpoint on a dataset split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from calikd.cli.arguments import (
    add_checkpoint_run_arguments,
    check_output_dir,
    check_output_file,
    checkpoint_run_kwargs,
)
from calikd.engine import evaluate_checkpoint
from calikd.engine.robustness import evaluate_corruptions
from calikd.errors import ConfigError
from calikd.report.robustness import robustness_text, write_robustness_report
from calikd.report.text import format_table
from calikd.utils.io import atomic_write_json


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("evaluate", help="evaluate a checkpoint", description=__doc__)
    parser.add_argument("checkpoint", help="a .safetensors file, its .json, or a run folder (uses last.*)")
    parser.add_argument("--dataset", help="dataset to evaluate on (default: the checkpoint's own)")
    parser.add_argument("--split", choices=("test", "val", "train"), default="test")
    parser.add_argument(
        "--calibration",
        default="none",
        metavar="none|auto|PATH",
        help="apply a calibrator first: auto = the one `calikd calibrate` stored next to the checkpoint",
    )
    add_checkpoint_run_arguments(parser)
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON here ('-' for stdout)")
    robust = parser.add_argument_group("robustness under corruption")
    robust.add_argument(
        "--corruptions",
        metavar="all|benchmark|extra|NAME,...",
        help="evaluate on corrupted test sets (severities 1-5) instead of the clean split",
    )
    robust.add_argument(
        "--corrupted-dir",
        metavar="DIR",
        help="read the corrupted sets from a -C folder (`calikd corrupt`, or a released CIFAR-10-C / "
        "CIFAR-100-C) instead of generating them",
    )
    robust.add_argument("--corruption-seed", type=int, default=0, help="seed of generated corruptions")
    robust.add_argument("--severity-table", choices=("auto", "cifar", "imagenet"), default="auto")
    robust.add_argument("--baseline", metavar="CKPT", help="checkpoint to compute mCE against")
    robust.add_argument(
        "--out", metavar="DIR", help="write robustness.json/.md/.html and severity plots here"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    check_output_file(args.json, "--json")
    check_output_dir(args.out)
    if args.corruptions or args.corrupted_dir:
        return run_corruptions(args)
    for flag in ("baseline", "out"):
        if getattr(args, flag):
            raise ConfigError(f"--{flag} only applies with --corruptions")
    result = evaluate_checkpoint(
        args.checkpoint,
        dataset=args.dataset,
        split=args.split,
        calibration=args.calibration,
        **checkpoint_run_kwargs(args),
    )
    if args.json == "-":
        print(json.dumps(result, indent=2))
        return 0
    metrics = result["metrics"]
    calibrated = f", calibrated by {result['calibrator']}" if result["calibrator"] else ""
    where = f"{result['model']} on {result['dataset']} [{result['split']}]"
    print(f"{where}, {result['num_samples']} samples{calibrated}")
    print(format_table(["metric", "value"], [[k, v] for k, v in metrics.items() if v is not None]))
    if args.json:
        atomic_write_json(Path(args.json), result)
        print(f"wrote {args.json}")
    return 0


def run_corruptions(args: argparse.Namespace) -> int:
    if args.split != "test" or args.dataset:
        raise ConfigError("--corruptions evaluates the checkpoint's own test split: drop --split/--dataset")
    kwargs = checkpoint_run_kwargs(args)
    result = evaluate_corruptions(
        args.checkpoint,
        corruptions=args.corruptions or "all",
        corrupted_dir=args.corrupted_dir,
        seed=args.corruption_seed,
        table=args.severity_table,
        baseline=args.baseline,
        calibration=args.calibration,
        show_progress=True,
        **kwargs,
    ).to_dict()
    if args.json == "-":
        print(json.dumps(result, indent=2))
        return 0
    print(robustness_text(result, baseline=args.baseline))
    if args.json:
        atomic_write_json(Path(args.json), result)
        print(f"wrote {args.json}")
    if args.out:
        paths = write_robustness_report(result, args.out)
        print(f"report: {paths['markdown']}")
        print(f"html:   {paths['html']}")
    return 0
