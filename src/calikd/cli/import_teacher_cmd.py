"""``calikd import-teacher``: an ONNX model or your own model's weights made a calikd teacher checkpoint."""

from __future__ import annotations

import argparse

from calikd.teacher.imported import import_teacher
from calikd.utils.config import parse_key_value


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "import-teacher",
        help="make an ONNX model or your own model's weights a calikd teacher checkpoint",
        description="Check a teacher trained elsewhere on the dataset it will teach on (logit shape, finite "
        "outputs, val and test accuracy with the normalisation you state) and write it as a calikd "
        "checkpoint that records that normalisation: evaluate, calibrate, rank-teachers and distill then "
        "read it like any teacher.",
    )
    parser.add_argument(
        "source",
        help="an .onnx file, a .safetensors state dict (with --module), or a .npz/.safetensors file of "
        "logits per split (train_logits, val_logits, test_logits)",
    )
    parser.add_argument("--out", required=True, help="folder for the checkpoint (<out>/last.*)")
    parser.add_argument("--dataset", required=True, help="the dataset it teaches on (see `calikd data list`)")
    parser.add_argument("--data-dir", help="folder (or file, for 'arrays') holding the dataset")
    parser.add_argument(
        "--dataset-options", nargs="*", type=parse_key_value, default=[], metavar="KEY=VALUE",
        help="dataset options",
    )  # fmt: skip
    parser.add_argument("--val-fraction", type=float, default=0.1, help="val held out of train (default 0.1)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the val split (default 0)")
    parser.add_argument(
        "--mean", type=float, nargs="+",
        help="normalisation mean it was trained with, per channel in [0, 1] units (0 for raw pixels); "
        "required except for a logits file",
    )  # fmt: skip
    parser.add_argument(
        "--std", type=float, nargs="+",
        help="normalisation std it was trained with, per channel (1 for raw pixels)",
    )  # fmt: skip
    parser.add_argument("--module", help="your model class as package.module:factory (for a weights file)")
    parser.add_argument(
        "--module-kwargs", nargs="*", type=parse_key_value, default=[], metavar="KEY=VALUE",
        help="arguments of the factory",
    )  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="replace a checkpoint already in --out")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    result = import_teacher(
        args.source,
        args.out,
        dataset=args.dataset,
        data_dir=args.data_dir,
        dataset_options=dict(args.dataset_options),
        val_fraction=args.val_fraction,
        split_seed=args.split_seed,
        mean=args.mean,
        std=args.std,
        module=args.module,
        module_kwargs=dict(args.module_kwargs),
        overwrite=args.overwrite,
    )
    print(result.line())
    return 0
