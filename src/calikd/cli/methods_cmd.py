"""``calikd methods [NAME]``: the distillation methods and their options."""

from __future__ import annotations

import argparse

from calikd.distill import distiller_info, list_distillers
from calikd.report.text import format_table

DOT_NOTE = (
    "--dot [--dot-delta 0.075]: DOT's SGD with separate momenta for the task and distillation gradients "
    "(Zhao et al., ICCV 2023; megvii-research/mdistiller)"
)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "methods", help="list distillation methods and their options", description=__doc__
    )
    parser.add_argument("name", nargs="?", help="show this method's options and defaults")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.name:
        info = distiller_info(args.name)
        print(f"{info['name']}: {info['description']}")
        if info["source"]:
            print(f"source: {info['source']}")
        print(f"uses features: {info['uses_features']}; needs a teacher: {info['needs_teacher']}")
        rows = [[k, repr(v["default"]), v["help"]] for k, v in info["options"].items()]
        print(format_table(["option", "default", "meaning"], rows))
        if info["pair_defaults"]:
            print(f"\nthe authors' values per pair (`--method-preset paper`; {info['pair_source']}):")
            pairs = [
                [
                    f"{p['teacher']} -> {p['student']}",
                    ", ".join(f"{k}={v!r}" for k, v in p["options"].items()),
                ]
                for p in info["pair_defaults"]
            ]
            print(format_table(["teacher -> student", "options"], pairs))
        return 0
    rows = []
    for name in list_distillers():
        info = distiller_info(name)
        kind = "features" if info["uses_features"] else ("logits" if info["needs_teacher"] else "no teacher")
        paper = info["source"].split(";")[0]  # the paper; `calikd methods NAME` shows the rest
        rows.append([name, kind, paper, info["description"]])
    print(format_table(["method", "uses", "source", "description"], rows))
    print(f"\nwith any method: {DOT_NOTE}")
    return 0
