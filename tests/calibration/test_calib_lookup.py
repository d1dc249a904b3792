"""A checkpoint's calibrator: spec parsing, lookup next to the checkpoint, resolution and its refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import calikd.calibration.lookup as lookup
from calikd.calibration import create_calibrator
from calikd.calibration.lookup import (
    CalibratorSpec,
    calibrator_stem,
    checkpoint_stem,
    find_calibrator,
    parse_calibrator_spec,
    resolve_calibrator,
)
from calikd.errors import ConfigError
from calikd.store import checkpoint_id, save_checkpoint

CLASSES = 4


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A tiny checkpoint ``run/last`` whose model predicts ``CLASSES`` classes."""
    layer = torch.nn.Linear(3, CLASSES)
    meta = {"model": {"name": "mlp", "kwargs": {}}, "num_classes": CLASSES, "in_channels": 1}
    save_checkpoint(tmp_path / "run" / "last", layer.state_dict(), meta)
    return tmp_path / "run"


def _fitted(method: str, classes: int = CLASSES, *, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(400, classes, generator=gen) * 3
    labels = torch.multinomial(torch.softmax(logits / 1.5, dim=1), 1, generator=gen).squeeze(1)
    return create_calibrator(method).fit(logits, labels, split="val")


def _store(checkpoint: Path, method: str, *, primary: bool, classes: int = CLASSES) -> Path:
    cal = _fitted(method, classes)
    cal.record["checkpoint_id"] = checkpoint_id(checkpoint)
    cal.save(calibrator_stem(checkpoint, None if primary else method))
    return Path(str(calibrator_stem(checkpoint, None if primary else method)) + ".json")


# --------------------------------------------------------------------------------------------- parsing
@pytest.mark.parametrize("word", ["none", "auto", "temperature"])
def test_keywords_parse_to_their_kind(word: str) -> None:
    spec = parse_calibrator_spec(word)
    assert spec == CalibratorSpec(word) and spec.path is None and str(spec) == word


def test_other_text_is_a_path_kept_as_written() -> None:
    spec = parse_calibrator_spec("./cals/t.json")
    assert spec == CalibratorSpec("path", "./cals/t.json") and str(spec) == "./cals/t.json"
    assert parse_calibrator_spec(Path("cal.json")) == CalibratorSpec("path", "cal.json")


def test_a_word_the_caller_does_not_take_is_a_path() -> None:
    assert parse_calibrator_spec("temperature", keywords=("none", "auto")).kind == "path"


def test_without_paths_an_unknown_word_is_refused_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"unknown calibration 'tempreature'.*temperature") as err:
        parse_calibrator_spec("tempreature", keywords=("none", "temperature", "auto"), paths=False)
    assert err.value.hint == "choose from: none, temperature, auto"


def test_empty_text_is_refused() -> None:
    with pytest.raises(ConfigError, match="empty calibration"):
        parse_calibrator_spec("  ")


def test_a_parsed_spec_passes_through_only_where_its_kind_is_taken() -> None:
    spec = CalibratorSpec("temperature")
    assert parse_calibrator_spec(spec) is spec
    with pytest.raises(ConfigError, match="calibration 'temperature' is not available here"):
        parse_calibrator_spec(spec, keywords=("none", "auto"))
    with pytest.raises(ValueError, match="path exactly when"):
        CalibratorSpec("path")


# ---------------------------------------------------------------------------------------------- lookup
def test_stems_keep_the_dots(checkpoint: Path) -> None:
    assert checkpoint_stem(checkpoint) == checkpoint / "last"
    assert calibrator_stem(checkpoint) == checkpoint / "last.calibrator"
    assert calibrator_stem(checkpoint, "matrix") == checkpoint / "last.calibrator-matrix"
    assert find_calibrator(checkpoint) is None
    path = _store(checkpoint, "temperature", primary=True)
    assert find_calibrator(checkpoint / "last.safetensors") == path == checkpoint / "last.calibrator.json"


# ----------------------------------------------------------------------------------------- resolution
def test_none_reads_nothing(tmp_path: Path) -> None:
    assert resolve_calibrator(tmp_path / "missing", CalibratorSpec("none")) == (None, None)


def test_auto_without_a_stored_calibrator(checkpoint: Path) -> None:
    with pytest.raises(ConfigError, match="has no calibrator next to it"):
        resolve_calibrator(checkpoint, CalibratorSpec("auto"))
    assert resolve_calibrator(checkpoint, CalibratorSpec("auto"), required=False) == (None, None)


def test_auto_and_path_load_the_file(checkpoint: Path, tmp_path: Path) -> None:
    primary = _store(checkpoint, "vector", primary=True)
    calibrator, path = resolve_calibrator(checkpoint, CalibratorSpec("auto"))
    assert calibrator is not None and calibrator.method == "vector" and path == primary
    other = _fitted("temperature")
    other.save(tmp_path / "elsewhere")
    calibrator, path = resolve_calibrator(checkpoint, parse_calibrator_spec(str(tmp_path / "elsewhere.json")))
    assert calibrator is not None and calibrator.method == "temperature"
    assert path == tmp_path / "elsewhere.json"


def test_temperature_reads_the_primary_file_once(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    primary = _store(checkpoint, "temperature", primary=True)
    reads: list[Path] = []
    real = lookup.load_calibrator

    def counting(path):
        reads.append(Path(path))
        return real(path)

    monkeypatch.setattr(lookup, "load_calibrator", counting)
    calibrator, path = resolve_calibrator(checkpoint, CalibratorSpec("temperature"))
    assert calibrator is not None and calibrator.method == "temperature" and path == primary
    assert reads == [primary]


def test_temperature_falls_back_to_the_named_file_or_nothing(checkpoint: Path) -> None:
    assert resolve_calibrator(checkpoint, CalibratorSpec("temperature")) == (None, None)
    _store(checkpoint, "matrix", primary=True)
    assert resolve_calibrator(checkpoint, CalibratorSpec("temperature")) == (None, None)
    named = _store(checkpoint, "temperature", primary=False)
    calibrator, path = resolve_calibrator(checkpoint, CalibratorSpec("temperature"))
    assert calibrator is not None and calibrator.method == "temperature" and path == named


def test_a_calibrator_of_other_weights_is_refused(checkpoint: Path) -> None:
    cal = _fitted("temperature")
    cal.record["checkpoint_id"] = "0123456789ab"
    cal.save(calibrator_stem(checkpoint))
    with pytest.raises(ConfigError, match="was fitted on other weights") as err:
        resolve_calibrator(checkpoint, CalibratorSpec("auto"))
    assert err.value.hint == f"refit it with `calikd calibrate {checkpoint}`"


def test_a_calibrator_for_another_class_count_is_refused(checkpoint: Path) -> None:
    path = _store(checkpoint, "temperature", primary=True, classes=10)
    with pytest.raises(ConfigError) as err:
        resolve_calibrator(checkpoint, CalibratorSpec("auto"))
    assert err.value.message == (
        f"calibrator '{path}' was fitted on 10 classes, but checkpoint '{checkpoint}' predicts {CLASSES}"
    )
