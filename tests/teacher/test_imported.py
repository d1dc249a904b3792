"""Bring your own teacher: a model of your own class or an ONNX file, imported, then used like any teacher."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from calikd.data import save_arrays
from calikd.engine.evaluate import checkpoint_logits
from calikd.errors import CheckpointError, ConfigError
from calikd.models.external import use_module
from calikd.teacher.imported import import_teacher

NET = textwrap.dedent(
    """
    import torch
    from torch import nn

    class TinyNet(nn.Module):
        def __init__(self, hidden, classes):
            super().__init__()
            layers = [nn.Flatten(), nn.Linear(36, hidden), nn.ReLU(), nn.Linear(hidden, classes)]
            self.body = nn.Sequential(*layers)

        def forward(self, x):
            return self.body(x)

    def make(hidden=16, classes=3):  # takes neither num_classes nor in_channels
        return TinyNet(hidden, classes)
    """
)


def _data(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.arange(300) % 3
    images = rng.integers(0, 60, (300, 6, 6)).astype(np.uint8)
    images[:, 2, 2] = 80 * labels + 40  # bright pixel tells the class
    noisy = rng.random(300) < 0.1  # ... except for the 10% whose label is wrong: accuracy about 0.9
    labels = np.where(noisy, (labels + 1) % 3, labels)
    path = save_arrays(tmp_path / "mine.npz", (images[:240], labels[:240]), (images[240:], labels[240:]))
    return path, images, labels


def _my_own_teacher(tmp_path: Path, monkeypatch, images, labels):
    """The user's model class in the user's package, trained in the user's own loop on raw [0, 1] pixels."""
    pkg = tmp_path / "userpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(NET)
    monkeypatch.syspath_prepend(str(tmp_path))
    from userpkg.nets import make

    torch.manual_seed(0)
    model = make()
    x = torch.from_numpy(images[:240]).float().div(255).unsqueeze(1)
    y = torch.from_numpy(labels[:240])
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def test_my_own_class_is_imported_and_fed_its_own_preprocessing(tmp_path: Path, monkeypatch) -> None:
    data, images, labels = _data(tmp_path)
    model = _my_own_teacher(tmp_path, monkeypatch, images, labels)
    weights = tmp_path / "w.safetensors"
    save_file(model.state_dict(), str(weights))
    x_test = torch.from_numpy(images[240:]).float().div(255).unsqueeze(1)
    with torch.no_grad():
        direct = model(x_test)
    want = float((direct.argmax(1) == torch.from_numpy(labels[240:])).float().mean())
    result = import_teacher(
        weights, tmp_path / "t", dataset="arrays", data_dir=data, mean=0.0, std=1.0, val_fraction=0.2,
        module="userpkg.nets:make", module_kwargs={"hidden": 16},
    )  # fmt: skip
    assert result.test_accuracy == pytest.approx(want, abs=1e-6) and want > 0.6
    meta = json.loads((tmp_path / "t" / "last.json").read_text())
    assert (
        meta["normalization"] == {"mean": [0.0], "std": [1.0]}
        and meta["model"]["name"] == "userpkg.nets:make"
    )
    out = checkpoint_logits(tmp_path / "t", ["test"])  # calikd evaluates it as it was trained
    torch.testing.assert_close(out.logits["test"][0], direct)


def test_a_model_class_is_rebuilt_only_when_named(tmp_path: Path, monkeypatch, run_cli) -> None:
    data, images, labels = _data(tmp_path)
    model = _my_own_teacher(tmp_path, monkeypatch, images, labels)
    import_teacher(model, tmp_path / "t", dataset="arrays", data_dir=data, mean=[0.0], std=[1.0],
                   module="userpkg.nets:make")  # fmt: skip
    import calikd.models.external as external

    monkeypatch.setattr(external, "_ALLOWED", {})
    with pytest.raises(CheckpointError, match=r"pass --teacher-module userpkg\.nets:make"):
        checkpoint_logits(tmp_path / "t", ["test"])
    code, _, err = run_cli(["evaluate", str(tmp_path / "t")])
    assert code != 0 and "--module userpkg.nets:make" in err and "Traceback" not in err
    code, out, err = run_cli(
        ["evaluate", str(tmp_path / "t"), "--module", "userpkg.nets:make", "--json", "-"]
    )
    assert code == 0, err
    assert json.loads(out)["num_samples"] == 60
    monkeypatch.setattr(external, "_ALLOWED", {})
    argv = ["distill", "--teacher", str(tmp_path / "t"), "--student", "mlp", "--student-kwargs", "width=8",
            "--epochs", "1", "--batch-size", "40", "--no-progress", "--out", str(tmp_path / "s")]  # fmt: skip
    code, _, err = run_cli(argv)
    assert code != 0 and "--teacher-module userpkg.nets:make" in err
    code, _, err = run_cli([*argv, "--teacher-module", "userpkg.nets:make"])
    assert code == 0, err
    use_module("userpkg.nets:make")
    assert checkpoint_logits(tmp_path / "t", ["test"]).logits["test"][0].shape == (60, 3)


def test_an_onnx_teacher_from_the_cli(tmp_path: Path, monkeypatch, run_cli) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    data, images, labels = _data(tmp_path)
    model = _my_own_teacher(tmp_path, monkeypatch, images, labels)
    onnx_file = tmp_path / "teacher.onnx"
    torch.onnx.export(model, (torch.rand(2, 1, 6, 6),), str(onnx_file), dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "n"}})  # fmt: skip
    argv = ["import-teacher", str(onnx_file), "--out", str(tmp_path / "t"), "--dataset", "arrays",
            "--data-dir", str(data), "--mean", "0", "--std", "1"]  # fmt: skip
    code, out, err = run_cli(argv)
    assert code == 0, err
    x_test = torch.from_numpy(images[240:]).float().div(255).unsqueeze(1)
    with torch.no_grad():
        want = float((model(x_test).argmax(1) == torch.from_numpy(labels[240:])).float().mean())
    assert f"test accuracy {want:.4f}" in out
    code, out, err = run_cli(["evaluate", str(tmp_path / "t"), "--json", "-"])  # no --data-dir: recorded
    assert code == 0, err
    assert json.loads(out)["metrics"]["accuracy"] == pytest.approx(want)
    code, _, err = run_cli(["calibrate", str(tmp_path / "t"), "--no-plots"])
    assert code == 0, err
    onnx_file.write_bytes(onnx_file.read_bytes())  # the original may change: the checkpoint holds a copy
    (tmp_path / "t" / "teacher.onnx").write_bytes(
        b"\x08\x01" + (tmp_path / "t" / "teacher.onnx").read_bytes()
    )
    code, _, err = run_cli(["evaluate", str(tmp_path / "t")])
    assert code != 0 and "has changed since its checkpoint was written" in err


def test_bad_imports_are_clear_errors(tmp_path: Path) -> None:
    data, _, _ = _data(tmp_path)
    (tmp_path / "w.pt").write_bytes(b"\x80\x04")
    kw = {"dataset": "arrays", "data_dir": data, "mean": 0.0, "std": 1.0}
    with pytest.raises(CheckpointError, match="pickle-based file, which calikd never loads"):
        import_teacher(tmp_path / "w.pt", tmp_path / "t", module="os:getcwd", **kw)
    save_file({"w": torch.zeros(2)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(ConfigError, match="holds weights only"):
        import_teacher(tmp_path / "w.safetensors", tmp_path / "t", **kw)
    with pytest.raises(ConfigError, match=r"cannot import 'no_such_pkg\.x'"):
        import_teacher(tmp_path / "w.safetensors", tmp_path / "t", module="no_such_pkg.x:f", **kw)
    with pytest.raises(ConfigError, match="needs the std"):
        import_teacher(torch.nn.Linear(36, 3), tmp_path / "t", module="os:getcwd", **{**kw, "std": None})


def test_a_teacher_given_as_its_logits(tmp_path: Path, monkeypatch, run_cli) -> None:
    from calikd.data import load_dataset

    data, images, labels = _data(tmp_path)
    model = _my_own_teacher(tmp_path, monkeypatch, images, labels)
    splits = load_dataset("arrays", data, val_fraction=0.2)
    arrays = {}
    for split in ("train", "val", "test"):
        with torch.no_grad():
            arrays[f"{split}_logits"] = model(splits.split(split).images.float() / 255.0).numpy()
        arrays[f"fingerprint_{split}"] = np.array(splits.split(split).fingerprint())
    np.savez(tmp_path / "logits.npz", **arrays)
    argv = ["import-teacher", str(tmp_path / "logits.npz"), "--out", str(tmp_path / "t"),
            "--dataset", "arrays", "--data-dir", str(data), "--val-fraction", "0.2"]  # fmt: skip
    code, _, err = run_cli(argv)
    assert code == 0, err
    got = checkpoint_logits(tmp_path / "t", ["val", "test"])
    for split in ("val", "test"):
        torch.testing.assert_close(got.logits[split][0], torch.from_numpy(arrays[f"{split}_logits"]))
    code, _, err = run_cli(["calibrate", str(tmp_path / "t"), "--no-plots"])
    assert code == 0, err
    from calikd.store import load_model

    teacher, _ = load_model(tmp_path / "t")
    with pytest.raises(ConfigError, match="knows only its dataset's own images"):
        teacher(torch.rand(2, 1, 6, 6))
    wrong = dict(arrays, fingerprint_test=np.array("0" * 64))
    np.savez(tmp_path / "wrong.npz", **wrong)
    code, _, err = run_cli([*argv[:1], str(tmp_path / "wrong.npz"), *argv[2:], "--overwrite"])
    assert code != 0 and "fingerprints differ" in err
    code, _, err = run_cli([*argv[:1], str(tmp_path / "logits.npz"), *argv[2:-2], "--overwrite"])
    assert code != 0 and "needs (" in err  # other split sizes (val fraction 0.1): the logits do not fit
