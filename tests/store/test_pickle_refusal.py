"""Pickle and torch.save files are refused by name, and nothing in them ever runs."""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path

import pytest
import torch

from calikd.errors import CheckpointError
from calikd.store import checkpoint_id, load_model, read_checkpoint, save_checkpoint

STORE_SRC = Path(__file__).resolve().parents[2] / "src" / "calikd" / "store"


class _Payload:
    """Unpickling this opens (creates) the marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "PWNED"


@pytest.fixture(autouse=True)
def _no_unpickling(monkeypatch) -> None:
    """Belt and braces: any attempt to unpickle fails loudly instead of running the payload."""

    def refuse(*args, **kwargs):
        raise AssertionError("the store tried to unpickle")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)


def _plain_pickle(marker: Path) -> bytes:
    data = pickle.dumps({"weight": _Payload(marker)}, protocol=4)
    assert data[:1] == b"\x80" and b"open" in data
    return data


def _torch_save_zip(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save({"weight": _Payload(marker)}, buffer)
    data = buffer.getvalue()
    assert data[:4] == b"PK\x03\x04"
    return data


def _assert_refused(exc: pytest.ExceptionInfo, name: str, marker: Path) -> None:
    text = str(exc.value)
    assert f"{name}' is a pickle/torch.save file" in text
    assert "never unpickles" in text and "calikd.store.save_checkpoint" in text
    assert not marker.exists()


@pytest.mark.parametrize("make", [_plain_pickle, _torch_save_zip])
@pytest.mark.parametrize("name", ["model.safetensors", "model.pt", "model.pth", "model"])
def test_pickles_given_directly_are_refused(make, name: str, tmp_path: Path, marker: Path) -> None:
    target = tmp_path / name
    target.write_bytes(make(marker))
    for call in (read_checkpoint, checkpoint_id, lambda p: load_model(p, factory=lambda *a, **k: None)):
        with pytest.raises(CheckpointError) as exc:
            call(target)
        _assert_refused(exc, name, marker)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt"])
def test_a_stem_with_only_a_pickle_beside_it_is_refused(suffix: str, tmp_path: Path, marker: Path) -> None:
    (tmp_path / f"last{suffix}").write_bytes(_torch_save_zip(marker))
    with pytest.raises(CheckpointError) as exc:
        read_checkpoint(tmp_path / "last")
    _assert_refused(exc, f"last{suffix}", marker)


@pytest.mark.parametrize("which", ["weights", "meta"])
def test_a_pickle_swapped_into_a_checkpoint_is_refused(
    which: str, tmp_path: Path, marker: Path, tiny_meta
) -> None:
    paths = save_checkpoint(tmp_path / "run" / "last", {"w": torch.ones(3)}, tiny_meta)
    getattr(paths, which).write_bytes(_plain_pickle(marker))
    with pytest.raises(CheckpointError) as exc:
        read_checkpoint(tmp_path / "run")
    _assert_refused(exc, getattr(paths, which).name, marker)


@pytest.mark.parametrize("which", ["state_weights", "state_meta"])
@pytest.mark.parametrize("make", [_plain_pickle, _torch_save_zip])
def test_a_pickled_train_state_is_refused(which: str, make, tmp_path: Path, marker: Path, tiny_meta) -> None:
    paths = save_checkpoint(tmp_path / "last", {"w": torch.ones(3)}, tiny_meta, train_state={"step": 3})
    getattr(paths, which).write_bytes(make(marker))
    ckpt = read_checkpoint(tmp_path)  # the weights are fine
    with pytest.raises(CheckpointError) as exc:
        ckpt.load_train_state()
    _assert_refused(exc, getattr(paths, which).name, marker)


def test_a_safetensors_header_starting_with_0x80_is_not_mistaken_for_a_pickle(
    tmp_path: Path, tiny_meta
) -> None:
    """The first byte of a safetensors file is the low byte of its header length, which can be 0x80."""
    for n in range(64):
        paths = save_checkpoint(tmp_path / "m", {"w" * (n + 1): torch.ones(1)}, tiny_meta)
        if paths.weights.read_bytes()[:1] == b"\x80":
            break
    else:
        pytest.fail("no header of length 0x..80 produced")
    assert read_checkpoint(paths.stem).state_dict


def test_other_files_are_named_as_not_checkpoints(tmp_path: Path, marker: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match=r"notes\.txt' is not a calikd checkpoint"):
        read_checkpoint(tmp_path / "notes.txt")
    (tmp_path / "x.safetensors").write_text("hello world, not safetensors")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(CheckpointError, match="not calikd checkpoint metadata"):
        read_checkpoint(tmp_path / "x")


def test_the_store_source_never_unpickles() -> None:
    forbidden = re.compile(
        r"torch\.load\b|^\s*(import|from)\s+(c?pickle|dill|cloudpickle|joblib)\b|\bpickle\.\w|allow_pickle\s*=\s*True",
        re.MULTILINE,
    )
    sources = sorted(STORE_SRC.rglob("*.py"))
    assert sources
    for src in sources:
        assert not forbidden.search(src.read_text()), f"{src} mentions an unpickler"


def test_marker_payload_is_real(tmp_path: Path, marker: Path) -> None:
    """The payload really targets the marker (checked without running it)."""
    fn, args = _Payload(marker).__reduce__()
    assert fn is open and args == (str(marker), "w")
    assert not marker.exists()
