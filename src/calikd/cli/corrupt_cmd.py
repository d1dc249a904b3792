"""``calikd corrupt``: write a corrupted ("-C") test set in the CIFAR-10-C layout, or list the corruptions."""

from __future__ import annotations

import argparse
import time

from calikd.cli.arguments import check_output_dir
from calikd.corruptions import get_corruption, list_corruptions, resolve_corruptions
from calikd.data import load_dataset
from calikd.data.corrupted import SEVERITIES, write_corrupted_set
from calikd.engine.progress import progress_bar
from calikd.errors import ConfigError
from calikd.report.text import format_table
from calikd.utils.config import parse_key_value
from calikd.utils.device import resolve_device


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "corrupt",
        help="write a corrupted (-C) test set, or --list the corruptions",
        description="Corrupt a dataset split with every corruption at severities 1-5 and write it as "
        "<corruption>.npy (5 severities stacked, uint8 N x H x W x C) plus labels.npy and manifest.json: the "
        "layout of the released CIFAR-10-C, readable by `calikd evaluate --corrupted-dir`.",
    )
    parser.add_argument("--list", action="store_true", help="list the corruptions and their severity tables")
    parser.add_argument("--dataset", help="dataset to corrupt (e.g. fashion-mnist)")
    parser.add_argument("--out", help="output folder")
    parser.add_argument(
        "--corruptions",
        default="all",
        help="all | benchmark (the 15) | extra (the 4) | comma-separated names",
    )
    parser.add_argument("--split", choices=("test", "val", "train"), default="test")
    parser.add_argument("--seed", type=int, default=0, help="fixes every random draw of the corruptions")
    parser.add_argument(
        "--severity-table",
        choices=("auto", "cifar", "imagenet"),
        default="auto",
        help="severity parameters: CIFAR-C's (images <= 32 px, the auto choice) or ImageNet-C's",
    )
    parser.add_argument(
        "--dataset-options",
        nargs="*",
        type=parse_key_value,
        default=[],
        metavar="KEY=VALUE",
        help="dataset options, e.g. train_size=2000 for synthetic",
    )
    parser.add_argument("--data-dir", help="folder holding the dataset files")
    parser.add_argument("--device", default="cpu", help="where to corrupt: cpu, cuda, auto")
    parser.set_defaults(handler=run)


def run_list() -> int:
    rows = []
    for name in list_corruptions():
        c = get_corruption(name)
        rows.append([name, c.family, "yes" if c.benchmark else "extra", c.description.replace("``", "")])
    print(format_table(["corruption", "family", "benchmark", "what it does"], rows))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.list:
        return run_list()
    if not args.dataset or not args.out:
        raise ConfigError("calikd corrupt needs --dataset and --out (or --list)")
    check_output_dir(args.out)
    names = resolve_corruptions(args.corruptions)
    device = resolve_device(args.device)
    data = load_dataset(args.dataset, args.data_dir, **dict(args.dataset_options))
    split = data.split(args.split)
    start = time.perf_counter()
    with progress_bar(len(names) * len(SEVERITIES) * len(split), "corrupting", enabled=True) as bar:

        def advance(name: str, images: int) -> None:
            bar.set_postfix_str(name)
            bar.update(images)

        folder = write_corrupted_set(
            split,
            args.out,
            names,
            seed=args.seed,
            table=args.severity_table,
            dataset=f"{data.info.name}:{args.split}",
            device=device,
            on_progress=advance,
        )
    seconds = time.perf_counter() - start
    print(
        f"wrote {len(names)} corruptions x 5 severities of {len(split)} {args.split} images to {folder} "
        f"in {seconds:.1f}s"
    )
    print(f"evaluate with: calikd evaluate CHECKPOINT --corruptions all --corrupted-dir {folder}")
    return 0
