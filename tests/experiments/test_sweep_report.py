"""Sweep reports: every section appears when the sweep has the data for it; HTML is self-contained."""

from __future__ import annotations

from pathlib import Path

import pytest

from calikd.cli import main
from calikd.experiments import parse_spec, run_sweep
from calikd.experiments.report import sweep_report

DATA = {"train_size": 160, "test_size": 64, "num_classes": 3, "seed": 2}
FAST = {"batch_size": 32, "precision": "fp32", "device": "cpu"}


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    root = tmp_path_factory.mktemp("sweep")
    spec = parse_spec(
        {
            "name": "grid",
            "out": str(root / "out"),
            "dataset": "synthetic",
            "dataset_options": DATA,
            "teachers": [
                {"name": "a", "model": "cnn", "model_kwargs": {"width": 4}, "lr": 0.05},
                {"name": "b", "model": "cnn", "model_kwargs": {"width": 8}, "lr": 0.1},
                {
                    "name": "c",
                    "model": "cnn",
                    "model_kwargs": {"width": 6},
                    "lr": 0.08,
                    "label_smoothing": 0.1,
                },
            ],
            "teacher_defaults": {"epochs": 1, **FAST},
            "calibrations": ["none", "temperature"],
            "methods": ["kd"],
            "students": [{"model": "cnn", "kwargs": {"width": 4}}],
            "kd_augments": ["none", "mixup"],
            "taus": [None, 2.0],
            "seeds": [0],
            "distill": {"epochs": 1, "lr": 0.05, **FAST},
            "teacher_floors": {"a": 0.999, "cnn": 0.0},
        }
    )
    db = str(root / "calikd.db")
    assert run_sweep(spec, db_path=db, log=None).ok
    return db, root


def test_sweep_report_has_every_section(finished_sweep: tuple[str, Path]) -> None:
    db, root = finished_sweep
    md, html = sweep_report(db, "grid", root / "report")
    text = md.read_text()
    for heading in (
        "## Teachers",
        "## Students",
        "## Does teacher calibration predict teaching quality?",
        "## Ranking teachers by val ACE before distilling",
        "## Calibrated vs uncalibrated teacher",
        "## Students vs distillation temperature",
        "## Augmentation inside KD",
        "## Reliability diagrams",
    ):
        assert heading in text, heading
    assert "teacher ace" in text and "R²" in text
    page = html.read_text()
    assert "data:image/png;base64," in page and 'src="http' not in page
    pngs = sorted(p.name for p in (root / "report").glob("*.png"))
    assert "student_accuracy_vs_tau.png" in pngs and "augment_ece.png" in pngs
    assert any(name.startswith("teacher_ace_vs_student_accuracy") for name in pngs)


def test_report_flags_teachers_below_their_floor_and_unconverged_runs(
    finished_sweep: tuple[str, Path],
) -> None:
    db, root = finished_sweep
    text = sweep_report(db, "grid", root / "flags")[0].read_text()
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert rows["a"].rstrip(" |").endswith("0.999 **below**")
    assert rows["b"].rstrip(" |").endswith("0 met") and rows["c"].rstrip(" |").endswith("0 met")
    # one epoch: no plateau to see, so neither teachers nor students count as converged
    assert all("**no**" in rows[t] for t in "abc")
    assert "**Flagged teachers** (below their floor or not converged): a, b, c" in text
    assert "students did not converge" in text and "**0/1**" in text


def test_report_command_for_sweeps_and_runs(
    finished_sweep: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    db, root = finished_sweep
    assert main(["report", "grid", "--db", db, "--out", str(root / "cli")]) == 0
    assert (root / "cli" / "report.html").exists()
    run_dir = next((root / "out" / "students").iterdir())
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "summary.html").exists()
    capsys.readouterr()
    assert main(["report", "gird", "--db", db]) == 2
    assert "did you mean 'grid'" in capsys.readouterr().err
