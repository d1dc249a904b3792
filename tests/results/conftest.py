"""Fixtures of the results-store tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from calikd.results import ResultsStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ResultsStore]:
    with ResultsStore(tmp_path / "runs" / "calikd.db", worker="w1") as s:
        yield s
