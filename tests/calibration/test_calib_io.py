"""Save/load: JSON + safetensors, exact round trips, validated on load, and pickles never run."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
from pathlib import Path

import pytest
import torch

from calikd.calibration import (
    FORMAT,
    FORMAT_VERSION,
    Calibrator,
    MatrixScaling,
    TemperatureScaling,
    calibrator_class,
    create_calibrator,
    list_calibrators,
    load_calibrator,
    register_calibrator,
)
from calikd.errors import CheckpointError

SRC = Path(__file__).resolve().parents[2] / "src" / "calikd" / "calibration"
TENSOR_METHODS = {"vector", "matrix", "dirichlet", "histogram", "isotonic"}


@pytest.fixture(scope="module")
def fitted(synthetic) -> dict[str, Calibrator]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    logits, labels = synthetic(600, 4, 2.0, seed=11, bias=torch.tensor([1.0, -0.5, 0.0, 0.3]))
    out = {name: create_calibrator(name).fit(logits, labels, split="val") for name in list_calibrators()}
    torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="module")
def probe() -> torch.Tensor:
    return torch.randn(50, 4, generator=torch.Generator().manual_seed(3)) * 3


@pytest.mark.parametrize("name", ["temperature", "vector", "matrix", "dirichlet", "histogram", "isotonic"])
def test_round_trip_gives_identical_transforms(name: str, fitted, probe, tmp_path: Path) -> None:
    cal = fitted[name]
    paths = cal.save(tmp_path / "cal")
    json_path = tmp_path / "cal.json"
    assert paths[0] == json_path
    doc = json.loads(json_path.read_text())
    assert doc["format"] == FORMAT and doc["format_version"] == FORMAT_VERSION and doc["method"] == name
    assert doc["num_classes"] == 4 and doc["hyperparams"] == cal.hyperparams() and doc["record"] == cal.record
    if name in TENSOR_METHODS:
        tensor_path = tmp_path / "cal.safetensors"
        assert paths == [json_path, tensor_path]
        assert doc["tensors"]["file"] == "cal.safetensors"
        assert doc["tensors"]["sha256"] == hashlib.sha256(tensor_path.read_bytes()).hexdigest()
    else:
        assert paths == [json_path] and doc["tensors"] is None
        assert doc["params"] == {"temperature": cal.temperature}
    expected = cal.transform(probe)
    for loaded in (
        load_calibrator(tmp_path / "cal"),
        Calibrator.load(json_path),
        type(cal).load(tmp_path / "cal"),
    ):
        assert type(loaded) is type(cal) and loaded.fitted
        assert loaded.hyperparams() == cal.hyperparams() and loaded.record == cal.record
        assert loaded.num_classes == 4
        assert torch.equal(loaded.transform(probe), expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)  # no temp files left


def test_save_accepts_a_json_path_and_overwrites(fitted, tmp_path: Path) -> None:
    fitted["matrix"].save(tmp_path / "sub" / "m.json")
    fitted["matrix"].save(tmp_path / "sub" / "m.json")
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["m.json", "m.safetensors"]
    assert isinstance(load_calibrator(tmp_path / "sub" / "m.safetensors"), MatrixScaling)


def test_loading_a_file_of_another_method_into_a_class(fitted, tmp_path: Path) -> None:
    fitted["matrix"].save(tmp_path / "m")
    with pytest.raises(
        CheckpointError, match=r"holds a 'matrix' calibrator \(MatrixScaling\), not a Temperature"
    ):
        TemperatureScaling.load(tmp_path / "m")


def _edit(path: Path, **changes) -> None:
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))


def test_unknown_method_lists_the_valid_ones(fitted, tmp_path: Path) -> None:
    fitted["temperature"].save(tmp_path / "t")
    _edit(tmp_path / "t.json", method="platt")
    with pytest.raises(
        CheckpointError, match=r"unknown calibrator method 'platt'; valid methods: dirichlet, "
    ):
        load_calibrator(tmp_path / "t")


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"format": "something-else"}, "is not a calikd calibrator file"),
        ({"format_version": 99}, "format_version 99; this calikd reads versions 1..1"),
        ({"params": {"temperature": -1.0}}, "'temperature' must be a positive finite number"),
        ({"params": {"temperature": "hot"}}, "'params' must map names to finite numbers"),
        ({"hyperparams": {"t_min": 5.0, "t_max": 1.0}}, "invalid hyper-parameters for 'temperature'"),
        ({"num_classes": 1}, "'num_classes' must be an integer >= 2"),
    ],
)
def test_invalid_json_is_refused(changes: dict, match: str, fitted, tmp_path: Path) -> None:
    fitted["temperature"].save(tmp_path / "t")
    _edit(tmp_path / "t.json", **changes)
    with pytest.raises(CheckpointError, match=match):
        load_calibrator(tmp_path / "t")


def test_a_changed_tensor_file_fails_its_sha256(fitted, synthetic, tmp_path: Path) -> None:
    fitted["dirichlet"].save(tmp_path / "d")
    other = MatrixScaling(lam=5.0).fit(*synthetic(300, 4, 1.5, seed=12))
    other.save(tmp_path / "o")
    (tmp_path / "d.safetensors").write_bytes((tmp_path / "o.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="SHA-256 does not match"):
        load_calibrator(tmp_path / "d")


def test_shapes_are_checked(fitted, tmp_path: Path) -> None:
    fitted["matrix"].save(tmp_path / "m")
    _edit(tmp_path / "m.json", num_classes=5)
    with pytest.raises(
        CheckpointError, match=r"tensor 'weight' has shape \[4, 4\], expected \[5, 5\] for 5 classes"
    ):
        load_calibrator(tmp_path / "m")


def test_missing_files(fitted, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no calibrator at"):
        load_calibrator(tmp_path / "nothing")
    fitted["matrix"].save(tmp_path / "m")
    (tmp_path / "m.safetensors").unlink()
    with pytest.raises(CheckpointError, match="is missing, but"):
        load_calibrator(tmp_path / "m")


def test_not_json(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="is not valid JSON"):
        load_calibrator(tmp_path / "x.json")


# ------------------------------------------------------------------------------------------- pickle refusal
class _Payload:
    """Unpickling this creates the marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(autouse=True)
def _no_unpickling(monkeypatch) -> None:
    """Belt and braces: any attempt to unpickle fails loudly instead of running the payload."""

    def refuse(*args, **kwargs):
        raise AssertionError("calibration tried to unpickle")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)


def _pickle_bytes(marker: Path) -> bytes:
    data = pickle.dumps({"temperature": _Payload(marker)}, protocol=4)
    assert data[:1] == b"\x80"
    return data


def _torch_zip_bytes(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save({"weight": _Payload(marker)}, buffer)
    assert buffer.getvalue()[:4] == b"PK\x03\x04"
    return buffer.getvalue()


@pytest.mark.parametrize("make", [_pickle_bytes, _torch_zip_bytes])
def test_pickles_are_refused_without_running(make, fitted, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    payload = make(marker)
    cases = []
    # 1. the JSON itself is a pickle
    (tmp_path / "a.json").write_bytes(payload)
    cases.append((tmp_path / "a", "a.json"))
    # 2. a pickle is given directly, and 3. a stem with only a pickle beside it
    (tmp_path / "b.pt").write_bytes(payload)
    cases += [(tmp_path / "b.pt", "b.pt"), (tmp_path / "b", "b.pt")]
    # 4. the tensor file was swapped for a pickle, with its SHA-256 updated to match
    fitted["matrix"].save(tmp_path / "c")
    (tmp_path / "c.safetensors").write_bytes(payload)
    _edit(tmp_path / "c.json", tensors={**json.loads((tmp_path / "c.json").read_text())["tensors"]})
    doc = json.loads((tmp_path / "c.json").read_text())
    doc["tensors"]["sha256"] = hashlib.sha256(payload).hexdigest()
    (tmp_path / "c.json").write_text(json.dumps(doc))
    cases.append((tmp_path / "c", "c.safetensors"))
    for path, name in cases:
        with pytest.raises(CheckpointError, match=rf"'{tmp_path / name}' is a pickle/torch.save file") as exc:
            load_calibrator(path)
        assert "never unpickles" in str(exc.value) and "calibrator.save(stem)" in str(exc.value)
        assert not marker.exists()


def test_the_sources_never_unpickle() -> None:
    for path in SRC.glob("*.py"):
        text = path.read_text()
        for banned in ("import pickle", "torch.load", "allow_pickle=True", "pickle.load"):
            assert banned not in text, f"{path.name} uses {banned}"


# ---------------------------------------------------------------------------------------------- registry
def test_register_a_new_calibrator(synthetic, tmp_path: Path) -> None:
    @register_calibrator("Identity-Test")
    class Identity(Calibrator):
        def _fit(self, z, labels):
            return {"iterations": 0, "converged": True}

        def _transform(self, z):
            return z

    assert Identity.method == "identity_test" and calibrator_class("identity-test") is Identity
    cal = create_calibrator("identity_test").fit(*synthetic(300, 4, 1.5, seed=12))
    cal.save(tmp_path / "i")
    assert isinstance(load_calibrator(tmp_path / "i"), Identity)
    with pytest.raises(ValueError, match="already registered"):
        register_calibrator("identity_test")(type("Other", (Identity,), {}))
    from calikd.calibration import registry

    del registry._REGISTRY["identity_test"]


def test_absurdly_nested_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match="is not valid JSON"):
        load_calibrator(path)
