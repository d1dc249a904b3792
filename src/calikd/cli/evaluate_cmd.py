"""``calikd evaluate``: accuracy, NLL and ECE of a checkpoint on a dataset split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from calikd.cli.arguments import add_checkpoint_run_arguments, checkpoint_run_kwargs
from calikd.cli.output import format_table
from calikd.engine import evaluate_checkpoint
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
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
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
