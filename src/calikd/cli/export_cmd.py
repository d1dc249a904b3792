"""``calikd export``: a deployable ONNX / TorchScript model from a checkpoint, calibration folded in."""

from __future__ import annotations

import argparse

from calikd.calibration.lookup import parse_calibrator_spec, resolve_calibrator
from calikd.engine.export import EXPORT_FORMATS, export_model


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "export",
        help="write a checkpoint as an ONNX or TorchScript model, calibration temperature folded in",
        description="Write a checkpoint (a distilled student, or any calikd model) as a deployable model "
        "that takes float32 images in [0, 1], normalises them itself and returns calibrated logits: the "
        "temperature fitted on val (by the distillation run or `calikd calibrate`) is folded into the last "
        "linear layer. The file is loaded back and checked against calikd's calibrated outputs.",
    )
    parser.add_argument("checkpoint", help="a .safetensors file, its .json, or a run folder (uses last.*)")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="onnx", help="file format (default onnx)")
    parser.add_argument("--out", help="output file (default: next to the checkpoint, <stem>.onnx / .pt)")
    parser.add_argument(
        "--calibration",
        default="auto",
        help="auto (the temperature calibrator stored next to the checkpoint), none, or a calibrator path",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    spec = parse_calibrator_spec(args.calibration, keywords=("none", "auto"))
    calibrator, _ = resolve_calibrator(args.checkpoint, spec)
    result = export_model(args.checkpoint, args.out, format=args.format, calibrator=calibrator)
    print(result.line())
    return 0
