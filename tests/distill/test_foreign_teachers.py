"""Distilling from teachers trained elsewhere: a module in memory, an imported ONNX file, a logits file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from calikd.data import load_dataset
from calikd.distill import DistillConfig, distill
from calikd.errors import ConfigError

SYN = {"train_size": 240, "test_size": 80, "num_classes": 3, "image_size": 8, "in_channels": 1}
FAST = {"epochs": 1, "batch_size": 40, "progress": False, "student_kwargs": {"width": 8}}


def _raw_pixel_teacher() -> nn.Module:
    """A module of the user's own, trained in the user's own loop on raw [0, 1] pixels."""
    data = load_dataset("synthetic", **SYN)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 3))
    x, y = data.train.images.float() / 255.0, data.train.labels
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(100):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def test_a_module_in_memory_teaches_with_its_own_normalisation(tmp_path: Path) -> None:
    module = _raw_pixel_teacher()
    data = load_dataset("synthetic", **SYN)
    with torch.no_grad():
        want = float((module(data.test.images.float() / 255.0).argmax(1) == data.test.labels).float().mean())
    config = DistillConfig(
        dataset="synthetic", dataset_options=SYN, student="mlp", method="kd", out=str(tmp_path / "s"), **FAST
    )
    result = distill(config, teacher=module, teacher_normalization=(0.0, 1.0), log=None)
    teacher = result.teacher
    assert teacher["checkpoint"] == "<Sequential in memory>" and teacher["calibration"] == "none"
    assert teacher["metrics"]["full"]["test"]["raw"]["accuracy"] == pytest.approx(want)
    calibrated = {**config.__dict__, "out": str(tmp_path / "t"), "teacher_calibration": "temperature"}
    fitted = distill(
        DistillConfig(**calibrated),
        teacher=module, teacher_normalization={"mean": [0.0], "std": [1.0]}, log=None,
    )  # fmt: skip
    assert fitted.teacher["temperature"] is not None and fitted.teacher["calibrator_applied"]


def test_a_module_teacher_needs_its_normalisation_and_is_one_teacher(tmp_path: Path) -> None:
    config = DistillConfig(dataset="synthetic", dataset_options=SYN, student="mlp", out=str(tmp_path), **FAST)
    with pytest.raises(ConfigError, match=r"teacher= needs teacher_normalization=\(mean, std\)"):
        distill(config, teacher=nn.Linear(64, 3), log=None)
    with pytest.raises(ConfigError, match=r"takes a torch nn\.Module"):
        distill(config, teacher="resnet20", teacher_normalization=(0, 1), log=None)
    both = DistillConfig(**{**config.__dict__, "teacher": str(tmp_path / "t")})
    with pytest.raises(ConfigError, match="two teachers"):
        distill(both, teacher=nn.Linear(64, 3), teacher_normalization=(0, 1), log=None)


def test_imported_onnx_and_logits_teachers_distil_from_the_cli(tmp_path: Path, run_cli) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    module = _raw_pixel_teacher()
    torch.onnx.export(module, (torch.rand(2, 1, 8, 8),), str(tmp_path / "t.onnx"), dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "n"}})  # fmt: skip
    opts = ["--dataset-options", *(f"{k}={v}" for k, v in SYN.items())]
    code, _, err = run_cli(["import-teacher", str(tmp_path / "t.onnx"), "--out", str(tmp_path / "onnx"),
                              "--dataset", "synthetic", *opts, "--mean", "0", "--std", "1"])  # fmt: skip
    assert code == 0, err
    common = ["--student", "mlp", "--student-kwargs", "width=8", "--epochs", "1", "--batch-size", "40",
              "--no-progress"]  # fmt: skip
    code, _, err = run_cli(["distill", "--teacher", str(tmp_path / "onnx"), *common,
                              "--out", str(tmp_path / "s1")])  # fmt: skip
    assert code == 0, err
    splits = load_dataset("synthetic", **SYN)
    with torch.no_grad():
        arrays = {
            f"{s}_logits": module(splits.split(s).images.float() / 255.0).numpy()
            for s in ("train", "val", "test")
        }
    np.savez(tmp_path / "logits.npz", **arrays)
    code, _, err = run_cli(["import-teacher", str(tmp_path / "logits.npz"), "--out", str(tmp_path / "lg"),
                              "--dataset", "synthetic", *opts])  # fmt: skip
    assert code == 0, err
    code, _, err = run_cli(["distill", "--teacher", str(tmp_path / "lg"), *common, "--no-augment",
                            "--out", str(tmp_path / "s2")])  # fmt: skip
    assert code == 0, err
    code, _, err = run_cli(
        ["distill", "--teacher", str(tmp_path / "lg"), *common, "--out", str(tmp_path / "s3")]
    )
    assert code != 0 and "knows only its dataset's own images" in err


def test_every_run_temperature_scales_its_student_on_val_and_export_folds_it(tmp_path: Path, run_cli) -> None:
    module = _raw_pixel_teacher()
    config = DistillConfig(
        dataset="synthetic", dataset_options=SYN, student="mlp", method="kd", out=str(tmp_path / "s"), **FAST
    )
    result = distill(config, teacher=module, teacher_normalization=(0.0, 1.0), log=None)
    calibrated = result.student_calibrated
    assert calibrated is not None and calibrated["temperature"] > 0
    assert (tmp_path / "s" / "last.calibrator.json").is_file()
    assert set(calibrated["test_last"]) == set(result.student_test_last)
    assert calibrated["test_last"]["accuracy"] == pytest.approx(result.student_test_last["accuracy"])
    assert "temperature-scaled (T = " in (tmp_path / "s" / "report.md").read_text()
    code, out, err = run_cli(["export", str(tmp_path / "s"), "--format", "torchscript"])
    assert code == 0, err
    assert f"temperature {calibrated['temperature']:.4g} folded" in out


def test_a_distillation_run_logs_the_teacher_before_and_after_calibration(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = DistillConfig(
        dataset="synthetic", dataset_options=SYN, student="mlp", method="kd", out=str(tmp_path / "s"),
        teacher_calibration="temperature", log=["tensorboard"], **FAST,
    )  # fmt: skip
    distill(config, teacher=_raw_pixel_teacher(), teacher_normalization=(0.0, 1.0), log=None)
    events = EventAccumulator(str(tmp_path / "s" / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"teacher/test_raw/ece", "teacher/test_calibrated/ece", "test_last_calibrated/ece"} <= scalars
    assert {"val/accuracy", "train/loss_kd", "lr"} <= scalars and "epoch" not in scalars
    assert events.Images("reliability")[0].step == 1


def test_calibrate_any_module_on_val() -> None:
    from calikd.teacher.calibrate import calibrate_module

    module = _raw_pixel_teacher()
    methods = ["temperature", "vector"]
    outcome = calibrate_module(module, "synthetic", normalization=(0.0, 1.0), methods=methods, **SYN)
    assert set(outcome.calibrators) == {"temperature", "vector"} and outcome.fit_split == "val"
    data = load_dataset("synthetic", **SYN)
    with torch.no_grad():
        want = float((module(data.test.images.float() / 255.0).argmax(1) == data.test.labels).float().mean())
    assert outcome.before["test"].accuracy == pytest.approx(want)
    cal = outcome.calibrators["temperature"]
    assert cal.temperature == pytest.approx(outcome.records["temperature"]["params"]["temperature"])
    with pytest.raises(ConfigError, match=r"takes a torch nn\.Module"):
        calibrate_module("resnet20", "synthetic", normalization=(0, 1), **SYN)
