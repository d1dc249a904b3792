"""Shared pytest fixtures."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _private_probe_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Speed probes remembered in a folder of this test session, not the user's cache."""
    os.environ["CALIKD_PROBE_CACHE"] = str(tmp_path_factory.mktemp("probes") / "speed-probes.json")


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    """Keep tests deterministic and light on the 2-core CI machine."""
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[[Sequence[str]], tuple[int, str, str]]:
    """Run ``calikd ARGV`` in-process; returns ``(exit code, stdout, stderr)`` (argparse exits included)."""

    from calikd.cli import main

    def run(argv: Sequence[str]) -> tuple[int, str, str]:
        capsys.readouterr()  # drop what earlier steps of the test printed
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse errors and --help
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        out, err = capsys.readouterr()
        return code, out, err

    return run
