"""Flags shared by the commands that run a checkpoint over a dataset (evaluate, calibrate)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from calikd.errors import ConfigError
from calikd.models.external import use_module
from calikd.utils.device import DEVICE_CHOICES, PRECISION_CHOICES
from calikd.utils.io import check_writable_dir


def add_checkpoint_run_arguments(parser: argparse.ArgumentParser) -> None:
    """``--n-bins``, ``--data-dir``, ``--download``, ``--device``, ``--precision``, ``--batch-size``."""
    parser.add_argument("--n-bins", type=int, default=15, help="bins of the calibration metrics")
    parser.add_argument("--data-dir", help="folder holding the dataset files")
    parser.add_argument("--download", action="store_true", help="download the dataset if missing")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default="auto")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument(
        "--module",
        metavar="PACKAGE.MODULE:FACTORY",
        help="rebuild a checkpoint of your own model class (written by `calikd import-teacher --module`); "
        "importing runs your code, so it happens only when you name it",
    )


def checkpoint_run_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The shared flags as keyword arguments, validated."""
    if args.n_bins < 1:
        raise ConfigError(f"--n-bins must be >= 1; got {args.n_bins}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1; got {args.batch_size}")
    if getattr(args, "module", None):
        use_module(args.module)  # consent: checkpoints of that class may now be rebuilt
    return {
        "n_bins": args.n_bins,
        "data_dir": args.data_dir,
        "download": args.download,
        "device": args.device,
        "precision": args.precision,
        "batch_size": args.batch_size,
    }


def check_output_file(path: str | None, flag: str) -> None:
    """Refuse, before any work, an output file (``--json PATH``) that is a folder or cannot be created."""
    if path is None or path == "-":
        return
    if Path(path).is_dir():
        raise ConfigError(f"{flag} '{path}' is a folder; give the path of a file to write")
    check_writable_dir(Path(path).parent)


def check_output_dir(path: str | None) -> None:
    """Refuse, before any work, an output folder (``--out DIR``) that is a file or cannot be created."""
    if path is not None:
        check_writable_dir(path)
