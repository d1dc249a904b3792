"""``calikd report TARGET``: Markdown + HTML report of a sweep (by name, from the results store) or of one
distillation run folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from calikd.errors import ConfigError, did_you_mean
from calikd.experiments.report import run_report, sweep_report
from calikd.results import DEFAULT_DB_PATH, ResultsStore


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "report",
        help="write a Markdown + HTML report of a sweep or a distillation run",
        description=__doc__,
    )
    parser.add_argument("target", help="a sweep name (in --db) or a distillation run folder")
    parser.add_argument("--db", default=DEFAULT_DB_PATH, help=f"results store (default: {DEFAULT_DB_PATH})")
    parser.add_argument(
        "--out", default=None, help="output folder (default: <sweep out>/report or the run folder)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if Path(args.target).is_dir():
        md, html = run_report(args.target, args.out)
    else:
        with ResultsStore(args.db, create=False) as store:
            known = {s.name: s for s in store.sweeps()}
        if args.target not in known:
            raise ConfigError(
                f"'{args.target}' is neither a run folder nor a sweep in '{args.db}'"
                f"{did_you_mean(args.target, known)}",
                hint=f"sweeps there: {', '.join(sorted(known)) or 'none'}",
            )
        spec = known[args.target].spec or {}
        out = args.out or str(Path(spec.get("out") or f"runs/sweeps/{args.target}") / "report")
        md, html = sweep_report(args.db, args.target, out)
    print(f"report: {md}")
    print(f"html:   {html}")
    return 0
