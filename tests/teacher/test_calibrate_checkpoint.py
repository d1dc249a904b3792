"""Calibrating a teacher checkpoint: artifacts next to it, reports, CLI refusals, evaluate --calibration."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from calikd.calibration import CalibrationOnTestWarning, load_calibrator
from calikd.calibration.lookup import find_calibrator
from calikd.cli import main
from calikd.engine import evaluate_checkpoint
from calikd.errors import ConfigError
from calikd.store import read_checkpoint, save_checkpoint
from calikd.teacher import TeacherConfig, train_teacher
from calikd.teacher.calibrate import calibrate_checkpoint


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "run"
    cfg = TeacherConfig(
        dataset="synthetic",
        dataset_options={"train_size": 1000, "test_size": 300},
        model="mlp",
        model_kwargs={"width": 64},
        epochs=2,
        batch_size=64,
        precision="fp32",
        device="cpu",
        progress=False,
        out=str(out),
    )
    train_teacher(cfg, log=None)
    return out


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def test_temperature_artifacts_and_report(run: Path) -> None:
    meta_before = (run / "last.json").read_bytes()
    assert find_calibrator(run) is None
    outcome = calibrate_checkpoint(run, ["temperature"], device="cpu", precision="fp32")
    assert (run / "last.json").read_bytes() == meta_before  # the checkpoint itself is never touched
    assert find_calibrator(run) == run / "last.calibrator.json"
    assert outcome.artifacts == {"temperature": str(run / "last.calibrator.json")}
    record = outcome.records["temperature"]
    assert record["split"] == "val" and record["nll_after"] <= record["nll_before"]
    assert outcome.after["temperature"]["val"].nll <= outcome.before["val"].nll
    assert outcome.after["temperature"]["test"].accuracy == outcome.before["test"].accuracy  # argmax kept
    for suffix in (".json", ".md", ".png"):
        assert (run / f"last.calibration{suffix}").exists()
    assert (run / "last.calibration.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (run / "last.calibration.md").read_text()
    assert "| temperature |" in md and "last.calibration.png" in md
    report = json.loads((run / "last.calibration.json").read_text())
    assert report["fit_split"] == "val" and report["methods"] == ["temperature"]
    cal = load_calibrator(run / "last.calibrator.json")
    assert cal.record["params"]["temperature"] == pytest.approx(record["params"]["temperature"])


def test_all_methods_primary_is_temperature(run: Path) -> None:
    outcome = calibrate_checkpoint(run, ["all"], device="cpu", precision="fp32", plots=False)
    assert outcome.methods[0] == "temperature" and len(outcome.methods) >= 6
    assert load_calibrator(run / "last.calibrator.json").method == "temperature"
    for method in outcome.methods[1:]:
        assert (run / f"last.calibrator-{method}.json").exists()
    assert not (run / "last.calibration.png").exists()


def test_bad_method_writes_nothing(run: Path) -> None:
    before = sorted(p.name for p in run.iterdir())
    with pytest.raises(ConfigError, match="did you mean 'temperature'"):
        calibrate_checkpoint(run, ["temprature"], device="cpu")
    assert sorted(p.name for p in run.iterdir()) == before


def test_api_warns_when_fitting_on_test(run: Path) -> None:
    with pytest.warns(CalibrationOnTestWarning):
        calibrate_checkpoint(run, ["temperature"], fit_split="test", device="cpu", write=False)


def test_cli_refuses_test_split_and_evaluate_uses_calibrator(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["calibrate", str(run), "--fit-split", "test"]) == 2
    assert "refusing to fit calibration on the 'test' split" in capsys.readouterr().err
    assert find_calibrator(run) is None
    assert main(["evaluate", str(run), "--calibration", "auto"]) == 2
    assert "calikd calibrate" in capsys.readouterr().err

    assert main(["calibrate", str(run), "--device", "cpu", "--precision", "fp32"]) == 0
    out = capsys.readouterr().out
    assert "fitted temperature:" in out and "last.calibrator.json" in out
    raw = evaluate_checkpoint(run, device="cpu", precision="fp32")
    calibrated = evaluate_checkpoint(run, calibration="auto", device="cpu", precision="fp32")
    report = json.loads((run / "last.calibration.json").read_text())
    assert calibrated["metrics"]["nll"] == pytest.approx(
        report["after"]["temperature"]["test"]["nll"], abs=1e-6
    )
    assert raw["metrics"]["nll"] == pytest.approx(report["before"]["test"]["nll"], abs=1e-6)
    assert calibrated["metrics"]["accuracy"] == raw["metrics"]["accuracy"]
    assert {"ece", "ace", "mce", "brier", "classwise_ece", "oe"} <= set(raw["metrics"])


def test_stale_calibrator_is_refused(run: Path) -> None:
    calibrate_checkpoint(run, ["temperature"], device="cpu", precision="fp32", plots=False)
    assert evaluate_checkpoint(run, calibration="auto", device="cpu")["calibrator"].endswith(
        "last.calibrator.json"
    )
    ckpt = read_checkpoint(run / "last")
    weights = {k: v + 0.01 if v.is_floating_point() else v for k, v in ckpt.state_dict.items()}
    save_checkpoint(run / "last", weights, ckpt.meta)  # the run was retrained since it was calibrated
    with pytest.raises(ConfigError, match="was fitted on other weights"):
        evaluate_checkpoint(run, calibration="auto", device="cpu")
    assert evaluate_checkpoint(run, calibration="none", device="cpu")["calibrator"] is None
