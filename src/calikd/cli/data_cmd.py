"""``calikd data list|info|fetch``: the datasets calikd reads and where it finds them."""

from __future__ import annotations

import argparse

from calikd.data import fetch_dataset, get_spec, list_datasets, load_dataset
from calikd.report.text import format_table


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("data", help="list, inspect and fetch datasets", description=__doc__)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    actions.add_parser("list", help="list known datasets").set_defaults(handler=run_list)
    info = actions.add_parser("info", help="load a dataset and show its splits")
    info.add_argument("name")
    info.add_argument("--data-dir", help="folder holding the dataset files")
    info.add_argument("--val-fraction", type=float, default=0.1)
    info.add_argument("--split-seed", type=int, default=0)
    info.set_defaults(handler=run_info)
    fetch = actions.add_parser("fetch", help="download, verify (SHA-256) and unpack a dataset into the cache")
    fetch.add_argument("name")
    fetch.add_argument("--data-dir", help="where to put it (default: $CALIKD_DATA or ~/.cache/calikd)")
    fetch.add_argument("--base-url", help="mirror to download from instead of the official location")
    fetch.add_argument(
        "--sha256", help="expected SHA-256 of a single-file dataset (overrides the built-in one)"
    )
    fetch.add_argument(
        "--allow-unverified", action="store_true", help="accept a download whose SHA-256 calikd does not know"
    )
    fetch.set_defaults(handler=run_fetch)


def run_list(args: argparse.Namespace) -> int:
    rows = []
    for name in list_datasets():
        spec = get_spec(name)
        info = spec.info
        if info is None:  # depends on the files or options (imagefolder, synthetic)
            rows.append([name, "-", "-", "-", "-", spec.description])
            continue
        size = "x".join(map(str, info.image_size))
        flip = "yes" if info.hflip else "no"
        rows.append([name, info.num_classes, info.in_channels, size, flip, spec.description])
    print(format_table(["dataset", "classes", "channels", "size", "flip", "description"], rows))
    return 0


def run_info(args: argparse.Namespace) -> int:
    data = load_dataset(args.name, args.data_dir, val_fraction=args.val_fraction, split_seed=args.split_seed)
    info = data.info
    print(f"{info.name}: {info.num_classes} classes, {info.in_channels} channel(s), {info.image_size} px")
    print(f"mean {tuple(round(m, 4) for m in info.mean)}  std {tuple(round(s, 4) for s in info.std)}")
    rows = [[s, len(data.split(s))] for s in ("train", "val", "test")]
    print(format_table(["split", "samples"], rows))
    print(f"val = {args.val_fraction:.0%} of train, held out with split seed {args.split_seed}")
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    path = fetch_dataset(
        args.name,
        args.data_dir,
        base_url=args.base_url,
        sha256=args.sha256,
        allow_unverified=args.allow_unverified,
    )
    print(f"{args.name} is ready in {path}")
    return 0
