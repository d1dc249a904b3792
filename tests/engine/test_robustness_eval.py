"""`calikd corrupt` and `calikd evaluate --corruptions`: metrics per corruption and severity, mCE against a
baseline, reports with severity plots; a -C folder on disk gives the same numbers as on-the-fly generation."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from calikd.cli import main
from calikd.engine.robustness import evaluate_corruptions

RunCli = Callable[[Sequence[str]], tuple[int, str, str]]
DATA = ["--dataset", "synthetic", "--dataset-options", "train_size=320", "test_size=100"]
FAST = ["--model", "mlp", "--epochs", "1", "--batch-size", "64", "--no-progress"]
NAMES = "gaussian_noise,contrast"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("robust")
    for name, width in (("model", 64), ("baseline", 16)):
        argv = ["train-teacher", *DATA, *FAST, "--model-kwargs", f"width={width}", "--out", str(root / name)]
        assert main(argv) == 0
    return root / "model", root / "baseline"


def test_evaluate_under_corruption_with_mce_and_report(
    checkpoints: tuple[Path, Path], tmp_path: Path, run_cli: RunCli
) -> None:
    model, baseline = checkpoints
    out = tmp_path / "report"
    code, stdout, err = run_cli(
        [
            "evaluate",
            str(model),
            "--corruptions",
            NAMES,
            "--baseline",
            str(baseline),
            "--out",
            str(out),
            "--json",
            str(tmp_path / "r.json"),
            "--device",
            "cpu",
        ]
    )
    assert code == 0, err
    assert "mCE" in stdout and "gaussian_noise" in stdout
    result = json.loads((tmp_path / "r.json").read_text())
    assert [(r["corruption"], r["severity"]) for r in result["rows"]][:6] == [
        ("gaussian_noise", s) for s in range(1, 6)
    ] + [("contrast", 1)]
    assert len(result["rows"]) == len(result["baseline"]["rows"]) == 10
    per = result["summary"]["per_corruption"]
    assert set(per) == {"gaussian_noise", "contrast"} and all("ce" in m for m in per.values())
    mean_ce = 100 * (per["gaussian_noise"]["ce"] + per["contrast"]["ce"]) / 2
    assert result["summary"]["mce"] == pytest.approx(mean_ce)
    worst = result["rows"][4]["accuracy"]  # gaussian noise at severity 5
    assert worst <= result["clean"]["accuracy"] + 0.05
    text = (out / "robustness.md").read_text()
    assert "mCE" in text and "Per corruption and severity" in text and (out / "robustness.html").exists()
    pytest.importorskip("matplotlib")
    assert (out / "severity_error.png").stat().st_size > 1000 and (out / "severity_ece.png").exists()


def test_a_written_set_gives_the_generated_numbers(
    checkpoints: tuple[Path, Path], tmp_path: Path, run_cli: RunCli
) -> None:
    model, _ = checkpoints
    folder = tmp_path / "synthetic-C"
    code, stdout, err = run_cli(
        ["corrupt", *DATA, "--corruptions", NAMES, "--seed", "5", "--out", str(folder)]
    )
    assert code == 0, err
    assert "wrote 2 corruptions" in stdout
    on_disk = evaluate_corruptions(model, corrupted_dir=folder, device="cpu")
    generated = evaluate_corruptions(model, corruptions=NAMES, seed=5, device="cpu")
    assert on_disk.rows == generated.rows
    assert on_disk.source["seed"] == 5 and generated.source["source"] == "generated"
    other = evaluate_corruptions(model, corruptions=NAMES, seed=6, device="cpu")
    assert other.rows != generated.rows


def test_bad_robustness_requests_are_refused(
    checkpoints: tuple[Path, Path], tmp_path: Path, run_cli: RunCli
) -> None:
    model, _ = checkpoints
    code, _, err = run_cli(["evaluate", str(model), "--baseline", str(model)])
    assert code == 2 and "--baseline only applies with --corruptions" in err
    code, _, err = run_cli(["evaluate", str(model), "--corruptions", "fogg"])
    assert code == 2 and "did you mean 'fog'" in err
    other = tmp_path / "other-C"
    code, _, err = run_cli(
        [
            "corrupt",
            "--dataset",
            "synthetic",
            "--dataset-options",
            "image_size=16",
            "test_size=20",
            "--corruptions",
            "contrast",
            "--out",
            str(other),
        ]
    )
    assert code == 0, err
    code, _, err = run_cli(
        ["evaluate", str(model), "--corrupted-dir", str(other), "--out", str(tmp_path / "r")]
    )
    assert code == 2 and "holds images of shape (1, 16, 16)" in err
    assert not (tmp_path / "r").exists()
    code, _, err = run_cli(["corrupt", "--dataset", "synthetic"])
    assert code == 2 and "needs --dataset and --out" in err


def test_corrupt_lists_the_corruptions(run_cli: RunCli) -> None:
    code, out, _ = run_cli(["corrupt", "--list"])
    assert code == 0 and "glass_blur" in out and "extra" in out
