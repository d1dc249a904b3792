"""``calikd models list``: the model zoo."""

from __future__ import annotations

import argparse

from calikd.models import count_parameters, create_model, list_models, model_info
from calikd.report.text import format_table


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="list the model zoo", description=__doc__)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    lister = actions.add_parser("list", help="list registered models")
    lister.add_argument("--params", action="store_true", help="also count parameters (builds every model)")
    lister.add_argument("--num-classes", type=int, default=100, help="classes used to count parameters")
    lister.add_argument("--in-channels", type=int, default=3, help="input channels used to count parameters")
    lister.set_defaults(handler=run_list)


def run_list(args: argparse.Namespace) -> int:
    rows = []
    for name in list_models():
        info = model_info(name)
        row = [name, info.get("family", ""), info.get("description", "")]
        if args.params:
            model = create_model(name, num_classes=args.num_classes, in_channels=args.in_channels)
            row.insert(2, f"{count_parameters(model) / 1e6:.3f}M")
        rows.append(row)
    headers = ["model", "family", "description"]
    if args.params:
        headers.insert(2, f"params ({args.num_classes} classes)")
    print(format_table(headers, rows))
    return 0
