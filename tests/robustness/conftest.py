"""One tiny calibrated teacher and one uninterrupted tiny sweep, shared by the crash and determinism tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from robust_helpers import CALIBRATE, copy_checkpoint, no_plots, our_threads, sweep_dict, teacher_config


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Torch on one thread for one test (tests/conftest.py sets 2 before every test); see ``our_threads``."""
    with our_threads():
        yield


@pytest.fixture(scope="session")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``<run>/last`` of a tiny teacher (2 epochs, crop + flip), temperature-calibrated on its val split."""
    from calikd.teacher import train_teacher
    from calikd.teacher.calibrate import calibrate_checkpoint

    out = tmp_path_factory.mktemp("teacher") / "run"
    with our_threads():
        train_teacher(teacher_config(out), log=None)
        calibrate_checkpoint(out / "last", ["temperature"], device="cpu", precision="fp32", plots=False)
    return str(out / "last")


@pytest.fixture(scope="session")
def calibrated(teacher: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A copy of the teacher calibrated, uninterrupted, by ``calikd calibrate CKPT`` + ``CALIBRATE``."""
    from calikd.cli import main

    ckpt = copy_checkpoint(teacher, tmp_path_factory.mktemp("calibrated") / "run")
    with our_threads():
        assert main(["calibrate", ckpt, *CALIBRATE]) == 0
    return ckpt


@pytest.fixture(scope="session")
def reference_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny sweep run once, uninterrupted, by ``calikd sweep``: (sweep file, results store)."""
    from calikd.cli import main

    root = tmp_path_factory.mktemp("reference-sweep")
    spec, db = root / "tiny.yaml", root / "calikd.db"
    spec.write_text(yaml.safe_dump(sweep_dict(root / "sweep")))
    with no_plots(), our_threads():
        assert main(["sweep", str(spec), "--db", str(db)]) == 0
    return spec, db
