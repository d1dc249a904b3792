"""The ``calikd`` command: one sub-command per module in this folder."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import re
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from calikd import __version__
from calikd.cli import (
    calibrate_cmd,
    corrupt_cmd,
    data_cmd,
    distill_cmd,
    evaluate_cmd,
    export_cmd,
    import_teacher_cmd,
    methods_cmd,
    models_cmd,
    rank_teachers_cmd,
    report_cmd,
    reproduce_cmd,
    runs_cmd,
    sweep_cmd,
    train_teacher_cmd,
)
from calikd.errors import CalikdDeprecationWarning, CalikdError, Terminated

SUBCOMMANDS = (
    train_teacher_cmd,
    import_teacher_cmd,
    calibrate_cmd,
    distill_cmd,
    evaluate_cmd,
    corrupt_cmd,
    data_cmd,
    models_cmd,
    methods_cmd,
    sweep_cmd,
    rank_teachers_cmd,
    runs_cmd,
    report_cmd,
    reproduce_cmd,
    export_cmd,
)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that takes no abbreviated flags and suggests the nearest valid flag on a typo."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> None:  # type: ignore[override]
        match = re.search(r"unrecognized arguments: (\S+)", message)
        if match:
            flags = [s for a in self._actions for s in a.option_strings]
            close = difflib.get_close_matches(match.group(1).split("=")[0], flags, n=1, cutoff=0.5)
            if close:
                message += f" (did you mean '{close[0]}'?)"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (sub-commands register themselves)."""
    parser = _Parser(prog="calikd", description="Calibration-aware knowledge distillation.")
    parser.add_argument("--version", action="version", version=f"calikd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def _innermost_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub-)sub-command parser that ``args`` went through, so errors name its own flags."""
    while True:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        chosen = getattr(args, subs[0].dest, None) if subs else None
        if chosen is None or chosen not in subs[0].choices:
            return parser
        parser = subs[0].choices[chosen]


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(f"signal {signum}")


def _printing_deprecations(show: Callable[..., None]) -> Callable[..., None]:
    """A ``warnings.showwarning`` that prints calikd's deprecation notes as ``deprecated: ...`` lines and
    hands every other warning to ``show``."""

    def show_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, CalikdDeprecationWarning):
            print(f"deprecated: {message}", file=sys.stderr)
        else:
            show(message, category, *args, **kwargs)

    return show_warning


@contextlib.contextmanager
def _cli_process() -> Iterator[None]:
    """What the ``calikd`` process sets up around a command: SIGTERM unwinds like Ctrl-C (locks are released,
    see :class:`~calikd.errors.Terminated`); file names that are not UTF-8 print escaped instead of failing;
    Pillow's decompression-bomb warning is silenced, as calikd refuses every such image with its own error;
    calikd's deprecation warnings (an old spelling that still works) are printed as ``deprecated: ...``."""
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main_thread else None
    if main_thread and previous in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _raise_terminated)
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            with contextlib.suppress(Exception):
                stream.reconfigure(errors="backslashreplace")
    try:
        with warnings.catch_warnings():
            from PIL import Image

            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.simplefilter("default", CalikdDeprecationWarning)  # old spellings: say the new one
            warnings.showwarning = _printing_deprecations(warnings.showwarning)
            yield
    finally:
        if main_thread and previous in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input or a file that cannot be read or written,
    130 interrupted by Ctrl-C, 143 terminated by SIGTERM)."""
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        _innermost_parser(parser, args).error(f"unrecognized arguments: {' '.join(extras)}")
    try:
        with _cli_process():
            return int(args.handler(args) or 0)
    except CalikdError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a file-system problem the commands did not word themselves
        where = f" '{exc.filename}'" if exc.filename else ""
        print(f"error: cannot access{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except Terminated:
        print(
            "terminated (SIGTERM); what was saved is kept: rerun with --resume to continue a training run",
            file=sys.stderr,
        )
        return 143
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
