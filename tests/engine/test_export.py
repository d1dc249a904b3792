"""Exported students: preprocessing inside, temperature folded, outputs equal calikd's calibrated outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from calikd.calibration import TemperatureScaling
from calikd.engine.export import export_model, fold_temperature
from calikd.errors import ConfigError
from calikd.models import create_model
from calikd.store import save_checkpoint

MEAN, STD = [0.3], [0.4]


def _checkpoint(tmp_path: Path, model_name: str = "cnn_tiny") -> tuple[Path, nn.Module]:
    torch.manual_seed(0)
    model = create_model(model_name, 10, 1)
    model.train()(torch.randn(8, 1, 28, 28))  # non-trivial batch-norm statistics
    meta = {
        "model": {"name": model_name, "kwargs": {}}, "num_classes": 10, "in_channels": 1,
        "input_size": [28, 28], "normalization": {"mean": MEAN, "std": STD},
    }  # fmt: skip
    save_checkpoint(tmp_path / "run" / "best", model, meta)
    return tmp_path / "run" / "best", model.eval()


def _calibrator(temperature: float) -> TemperatureScaling:
    calibrator = TemperatureScaling()
    labels = torch.arange(200) % 10
    logits = torch.randn(200, 10, generator=torch.Generator().manual_seed(1))
    logits[torch.arange(200), labels] += 2.0  # informative logits: a finite temperature fits
    calibrator.fit(logits, labels, split="val")
    calibrator.temperature = temperature
    return calibrator


def _calikd_outputs(model: nn.Module, x: torch.Tensor, temperature: float) -> torch.Tensor:
    with torch.no_grad():
        z = model((x - MEAN[0]) / STD[0])
    return z / temperature


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exported_model_equals_the_calibrated_model(tmp_path: Path, fmt: str) -> None:
    if fmt == "onnx":
        ort = pytest.importorskip("onnxruntime")
        pytest.importorskip("onnx")
    ckpt, model = _checkpoint(tmp_path)
    result = export_model(ckpt, tmp_path / "out" / "student", format=fmt, calibrator=_calibrator(2.5))
    assert result.folded and result.temperature == 2.5 and result.max_abs_diff < 1e-4
    assert result.path.suffix == (".onnx" if fmt == "onnx" else ".pt") and result.path.is_file()
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(7))
    want = _calikd_outputs(model, x, 2.5)
    if fmt == "onnx":
        session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    else:
        got = torch.jit.load(str(result.path))(x)
    np.testing.assert_allclose(got.detach().numpy(), want.numpy(), rtol=1e-4, atol=1e-4)
    probs = torch.softmax(got, 1)
    np.testing.assert_allclose(probs.detach().numpy(), torch.softmax(want, 1).numpy(), atol=1e-5)


def test_without_a_calibrator_the_temperature_is_one(tmp_path: Path) -> None:
    ckpt, model = _checkpoint(tmp_path)
    result = export_model(ckpt, format="torchscript")
    assert result.temperature == 1.0 and not result.folded
    assert result.path == tmp_path / "run" / "best.pt"
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(torch.jit.load(str(result.path))(x), _calikd_outputs(model, x, 1.0))
    assert "no calibration (T = 1)" in result.line()


def test_fold_temperature_into_the_last_linear_or_append_a_scale() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).eval()
    x = torch.randn(5, 4)
    folded, ok = fold_temperature(net, 2.0, x)
    assert ok and folded is not net
    torch.testing.assert_close(folded(x), net(x) / 2.0)
    torch.testing.assert_close(net[2].weight, net[2].weight)  # the original is untouched
    after = nn.Sequential(nn.Linear(4, 3), nn.Tanh()).eval()  # the linear layer does not give the logits
    scaled, ok = fold_temperature(after, 2.0, x)
    assert not ok
    torch.testing.assert_close(scaled(x), after(x) / 2.0)


def test_bad_requests_are_clear_errors(tmp_path: Path) -> None:
    ckpt, _ = _checkpoint(tmp_path)
    with pytest.raises(ConfigError, match="unknown export format 'tflite'"):
        export_model(ckpt, format="tflite")
    from calikd.calibration import create_calibrator

    isotonic = create_calibrator("isotonic").fit(torch.randn(50, 10), torch.arange(50) % 10, split="val")
    with pytest.raises(ConfigError, match="cannot be folded"):
        export_model(ckpt, format="torchscript", calibrator=isotonic)


def test_export_from_the_cli(tmp_path: Path, run_cli) -> None:
    tiny = ["--dataset", "synthetic", "--dataset-options", "train_size=320", "test_size=100"]
    fast = [
        "--model",
        "mlp",
        "--model-kwargs",
        "width=32",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--no-progress",
    ]
    run = tmp_path / "t"
    code, _, err = run_cli(["train-teacher", *tiny, *fast, "--out", str(run)])
    assert code == 0, err
    code, out, err = run_cli(["export", str(run), "--format", "torchscript"])
    assert code != 0 and "has no calibrator next to it" in err and "Traceback" not in err
    code, out, err = run_cli(["export", str(run), "--format", "torchscript", "--calibration", "none"])
    assert code == 0, err
    assert "no calibration (T = 1)" in out and (run / "last.pt").is_file()
    code, _, err = run_cli(["calibrate", str(run), "--no-plots"])
    assert code == 0, err
    out_file = tmp_path / "deploy" / "student.pt"
    code, out, err = run_cli(["export", str(run), "--format", "torchscript", "--out", str(out_file)])
    assert code == 0, err
    assert "folded into the last linear layer" in out and out_file.is_file()
