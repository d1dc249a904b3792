"""``calikd reproduce NAME --preset quick|full|paper``: re-test a paper's claim with one command."""

from __future__ import annotations

import argparse
from collections import Counter

import yaml

from calikd.cli.sweep_cmd import add_executor_arguments, executor_options
from calikd.experiments import expand, parse_spec
from calikd.experiments.studies import PRESETS, build_spec, list_studies, reproduce
from calikd.results import DEFAULT_DB_PATH
from calikd.utils.io import atomic_write_bytes


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "reproduce",
        help="reproduce a paper's claim (song2021, kim2025, mishra2023, cuk2023)",
        description="Run the sweep that tests a paper's claim and write its report. Presets: quick "
        "(<= 10 min on 2 CPU cores, Fashion-MNIST subset), full (<= 90 min, 3 seeds), paper (the papers' "
        "CIFAR-100 protocols, for a GPU). Restarting continues where it stopped.",
    )
    parser.add_argument("name", choices=list_studies(), help="which paper")
    parser.add_argument("--preset", choices=PRESETS, default="quick")
    parser.add_argument("--db", default=DEFAULT_DB_PATH, help=f"results store (default: {DEFAULT_DB_PATH})")
    parser.add_argument("--out", default=None, help="output folder (default: runs/reproduce/<name>-<preset>)")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny synthetic data of the same shape, one epoch (checks it runs)",
    )
    add_executor_arguments(parser)
    parser.add_argument("--dry-run", action="store_true", help="list the runs without executing them")
    parser.add_argument(
        "--export-spec",
        metavar="FILE.yaml",
        default=None,
        help="write the reproduction's sweep file (to edit and run with `calikd sweep`) and exit",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    options = executor_options(args)
    if args.export_spec or args.dry_run:
        mapping = build_spec(args.name, args.preset, smoke=args.smoke, out=args.out)
        if args.export_spec:
            atomic_write_bytes(args.export_spec, yaml.safe_dump(mapping, sort_keys=False).encode())
            print(f"sweep file: {args.export_spec}  (run it with `calikd sweep {args.export_spec}`)")
        if args.dry_run:
            plans = expand(parse_spec(mapping))
            for plan in plans:
                print(f"{plan.kind:<10} {plan.run_id[:8]}  {plan.name}")
            kinds = Counter(p.kind for p in plans)
            print(", ".join(f"{n} {k}" for k, n in kinds.items()))
        return 0

    outcome, (md, html) = reproduce(
        args.name, args.preset, db_path=args.db, smoke=args.smoke, out=args.out, **options
    )
    print(f"report: {md}")
    print(f"html:   {html}")
    if not outcome.ok:
        print("failed: " + "; ".join(outcome.failed))
        return 1
    return 0
