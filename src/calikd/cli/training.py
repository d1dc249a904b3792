"""What the training commands (``train-teacher``, ``distill``) share: flags that are a config's fields (plus
``--config FILE.yaml``), and the run inside a distributed session (one process, or every rank of torchrun)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, TypeVar

from calikd.engine.distributed import distributed_session
from calikd.utils.config import add_config_arguments, config_from_args

C = TypeVar("C")
R = TypeVar("R")


def add_config_command(
    sub: argparse._SubParsersAction,
    name: str,
    config_class: type,
    handler: Callable[[argparse.Namespace], int],
    **parser_options: Any,
) -> argparse.ArgumentParser:
    """Command ``name`` whose flags are the fields of ``config_class``, also read from ``--config FILE``."""
    parser = sub.add_parser(name, **parser_options)
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML file with the same keys as the flags")
    add_config_arguments(parser, config_class)
    parser.set_defaults(handler=handler)
    return parser


def train_in_session(
    train: Callable[[C], R], config_class: type[C], args: argparse.Namespace
) -> tuple[C, R | None]:
    """The config from the flags and ``train(config)``'s result (None on every rank but rank 0, which alone
    prints); under torchrun one process per GPU or CPU share."""
    config = config_from_args(config_class, args, config_file=args.config)
    with distributed_session(config.device) as runtime:
        result = train(config)
    return config, result if runtime.is_main else None
