"""save_checkpoint / read_checkpoint: bitwise round trips, path forms, atomicity, corruption detection."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

import calikd
from calikd.errors import CheckpointError
from calikd.store import (
    BEST,
    CheckpointPaths,
    checkpoint_id,
    read_checkpoint,
    save_checkpoint,
)
from calikd.store import checkpoint as ckpt_mod
from calikd.utils.hashing import file_sha256


@pytest.fixture
def model(factory) -> nn.Module:
    torch.manual_seed(0)
    m = factory("tiny", num_classes=10, in_channels=3)
    m.train()(torch.randn(4, 3, 8, 8))  # non-trivial BatchNorm buffers
    return m


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_paths_of_a_stem_with_dots(tmp_path: Path) -> None:
    p = CheckpointPaths.for_stem(tmp_path / "model.v2")
    assert [x.name for x in (p.weights, p.meta, p.state_weights, p.state_meta)] == [
        "model.v2.safetensors",
        "model.v2.json",
        "model.v2.state.safetensors",
        "model.v2.state.json",
    ]


def test_round_trip_is_bitwise(model, tmp_path: Path, tiny_meta, tree_equal) -> None:
    paths = save_checkpoint(tmp_path / "last", model, tiny_meta)
    assert _files(tmp_path) == ["last.json", "last.safetensors"]
    ckpt = read_checkpoint(tmp_path / "last")
    tree_equal(ckpt.state_dict, dict(model.state_dict()))
    meta = ckpt.meta
    assert meta["format"] == "calikd-checkpoint" and meta["format_version"] == 1
    assert meta["calikd_version"] == calikd.__version__
    assert meta["weights_sha256"] == file_sha256(paths.weights)
    assert meta["train_state_sha256"] is None and ckpt.load_train_state() is None
    for key, value in tiny_meta.items():
        assert meta[key] == value
    assert ckpt.id == meta["weights_sha256"][:16] == checkpoint_id(tmp_path)


def test_every_path_form_reads_the_same_checkpoint(model, tmp_path: Path, tiny_meta) -> None:
    save_checkpoint(tmp_path / "run" / "last.safetensors", model, tiny_meta, train_state={"step": 1})
    save_checkpoint(tmp_path / "run" / BEST, model.state_dict(), {**tiny_meta, "epoch": 1})
    run = tmp_path / "run"
    forms = [run, str(run), run / "last", str(run / "last"), run / "last.safetensors", run / "last.json"]
    forms += [run / "last.state.json", run / "last.state.safetensors"]
    for form in forms:
        ckpt = read_checkpoint(form)
        assert ckpt.paths.stem == run / "last" and ckpt.meta["epoch"] == 3, form
    assert read_checkpoint(run / "best.json").meta["epoch"] == 1


def test_run_folder_without_last_points_to_best(model, tmp_path: Path, tiny_meta) -> None:
    save_checkpoint(tmp_path / BEST, model, tiny_meta)
    with pytest.raises(CheckpointError, match="has no 'last' checkpoint") as info:
        read_checkpoint(tmp_path)
    assert "best" in str(info.value.hint)


def test_meta_reserved_keys_are_recomputed_and_meta_must_be_json(model, tmp_path: Path, tiny_meta) -> None:
    save_checkpoint(tmp_path / "a", model, {**tiny_meta, "weights_sha256": "forged", "format_version": 9})
    assert read_checkpoint(tmp_path / "a").meta["format_version"] == 1
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        save_checkpoint(tmp_path / "b", model, {**tiny_meta, "where": Path("x")})
    with pytest.raises(TypeError, match="'bad'"):
        save_checkpoint(tmp_path / "b", {"bad": 1.0}, tiny_meta)
    assert not list(tmp_path.glob("b*"))


def test_shared_and_non_contiguous_tensors_are_saved(tmp_path: Path, tiny_meta, tree_equal) -> None:
    emb = nn.Embedding(5, 3)
    head = nn.Linear(3, 5, bias=False)
    head.weight = emb.weight  # tied weights: two keys, one storage
    model = nn.ModuleDict({"emb": emb, "head": head})
    sd = dict(model.state_dict())
    sd["extra"] = torch.arange(12.0).reshape(3, 4).t()
    sd["slice"] = torch.arange(10.0)[2:5]
    save_checkpoint(tmp_path / "tied", sd, tiny_meta)
    tree_equal(read_checkpoint(tmp_path / "tied").state_dict, {k: v.contiguous() for k, v in sd.items()})


def test_saving_without_train_state_removes_an_old_one(model, tmp_path: Path, tiny_meta) -> None:
    save_checkpoint(tmp_path / "last", model, tiny_meta, train_state={"step": 1})
    assert read_checkpoint(tmp_path).load_train_state() == {"step": 1}
    save_checkpoint(tmp_path / "last", model, tiny_meta)
    assert _files(tmp_path) == ["last.json", "last.safetensors"]
    assert read_checkpoint(tmp_path).load_train_state() is None


def test_save_refuses_folders_and_pickle_suffixes(model, tmp_path: Path, tiny_meta) -> None:
    with pytest.raises(CheckpointError, match="is a folder"):
        save_checkpoint(tmp_path, model, tiny_meta)
    with pytest.raises(CheckpointError, match="safetensors"):
        save_checkpoint(tmp_path / "m.pt", model, tiny_meta)


# --- atomicity ------------------------------------------------------------------------------------------

# The second save below calls os.replace 7 times: 3 pending files, the metadata (the commit), 3 final renames.
COMMIT_CALL = 4


def _two_versions(factory, tmp_path: Path, tiny_meta):
    torch.manual_seed(1)
    first, second = (
        factory("tiny", num_classes=10, in_channels=3),
        factory("tiny", num_classes=10, in_channels=3),
    )
    save_checkpoint(tmp_path / "last", first, tiny_meta, train_state={"step": 1, "t": torch.ones(2)})
    return first, second


def _crash_on_call(monkeypatch, name: str, k: int) -> None:
    real = getattr(os, name)
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == k:
            raise OSError(f"simulated crash in os.{name}")
        return real(*args, **kwargs)

    monkeypatch.setattr(os, name, flaky)


@pytest.mark.parametrize(
    ("name", "k"), [("replace", k) for k in range(1, 8)] + [("fsync", k) for k in (1, 2, 3, 4)]
)
def test_a_crash_mid_save_leaves_a_loadable_checkpoint(
    name: str, k: int, factory, tmp_path: Path, tiny_meta, tree_equal, monkeypatch
) -> None:
    first, second = _two_versions(factory, tmp_path, tiny_meta)
    before = _files(tmp_path)
    _crash_on_call(monkeypatch, name, k)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(tmp_path / "last", second, {**tiny_meta, "epoch": 4}, train_state={"step": 2})
    monkeypatch.undo()
    ckpt = read_checkpoint(tmp_path)
    if name == "fsync" or k <= COMMIT_CALL:  # not committed: the first checkpoint, untouched, no leftovers
        assert _files(tmp_path) == before
        tree_equal(ckpt.state_dict, dict(first.state_dict()))
        assert ckpt.meta["epoch"] == 3 and ckpt.load_train_state()["step"] == 1
    else:  # committed: the new checkpoint is complete, partly still under its .pending names
        tree_equal(ckpt.state_dict, dict(second.state_dict()))
        assert ckpt.meta["epoch"] == 4 and ckpt.load_train_state() == {"step": 2}
        save_checkpoint(tmp_path / "last", first, tiny_meta)  # the next save cleans up
        assert _files(tmp_path) == ["last.json", "last.safetensors"]
    assert not [f for f in _files(tmp_path) if f.endswith(".tmp")]


def test_stale_pending_files_from_a_hard_crash_are_ignored(
    factory, tmp_path: Path, tiny_meta, tree_equal
) -> None:
    first, _ = _two_versions(factory, tmp_path, tiny_meta)
    (tmp_path / "last.safetensors.pending").write_bytes(b"half-written")
    tree_equal(read_checkpoint(tmp_path).state_dict, dict(first.state_dict()))


def test_a_save_racing_a_read_is_retried(factory, tmp_path: Path, tiny_meta, tree_equal, monkeypatch) -> None:
    _, second = _two_versions(factory, tmp_path, tiny_meta)
    real = ckpt_mod.read_verified
    raced = []

    def racing(*args, **kwargs):
        if not raced:  # another process saves between our metadata read and our weights read
            raced.append(save_checkpoint(tmp_path / "last", second, {**tiny_meta, "epoch": 4}))
        return real(*args, **kwargs)

    monkeypatch.setattr(ckpt_mod, "read_verified", racing)
    ckpt = read_checkpoint(tmp_path)
    assert ckpt.meta["epoch"] == 4
    tree_equal(ckpt.state_dict, dict(second.state_dict()))


# --- corruption -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [0, 5, 12, -1, -100])
def test_truncated_weights_are_reported(keep: int, model, tmp_path: Path, tiny_meta) -> None:
    paths = save_checkpoint(tmp_path / "m", model, tiny_meta)
    data = paths.weights.read_bytes()
    paths.weights.write_bytes(data[:keep])
    with pytest.raises(CheckpointError, match="is corrupt or truncated"):
        read_checkpoint(paths.stem)


def test_weights_changed_after_saving_fail_the_sha_check(model, tmp_path: Path, tiny_meta) -> None:
    paths = save_checkpoint(tmp_path / "m", model, tiny_meta)
    data = bytearray(paths.weights.read_bytes())
    data[-1] ^= 0x01  # same size, valid header: only the SHA-256 can tell
    paths.weights.write_bytes(bytes(data))
    with pytest.raises(
        CheckpointError, match=r"is corrupt or truncated: its SHA-256 does not match .*m\.json"
    ):
        read_checkpoint(paths.weights)


def test_train_state_changed_after_saving_is_detected(model, tmp_path: Path, tiny_meta) -> None:
    paths = save_checkpoint(tmp_path / "m", model, tiny_meta, train_state={"t": torch.zeros(4)})
    data = bytearray(paths.state_weights.read_bytes())
    data[-1] ^= 0xFF
    paths.state_weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        read_checkpoint(paths.stem).load_train_state()


def test_missing_or_bad_metadata(model, tmp_path: Path, tiny_meta) -> None:
    paths = save_checkpoint(tmp_path / "m", model, tiny_meta)
    good = paths.meta.read_text()
    paths.meta.write_text(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated: invalid JSON"):
        read_checkpoint(paths.stem)
    paths.meta.write_text(json.dumps({**json.loads(good), "format_version": 2}))
    with pytest.raises(CheckpointError, match="format_version 2") as info:
        read_checkpoint(paths.stem)
    assert "upgrade calikd" in str(info.value)
    paths.meta.write_text(json.dumps({"hello": 1}))
    with pytest.raises(CheckpointError, match="not calikd checkpoint metadata"):
        read_checkpoint(paths.stem)
    paths.meta.unlink()
    with pytest.raises(CheckpointError, match=r"metadata file '.*m\.json' .* is missing"):
        read_checkpoint(paths.weights)
    paths.weights.unlink()
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        read_checkpoint(paths.stem)


def test_missing_weights_are_named(model, tmp_path: Path, tiny_meta) -> None:
    paths = save_checkpoint(tmp_path / "m", model, tiny_meta)
    paths.weights.unlink()
    with pytest.raises(CheckpointError, match=r"m\.safetensors' is missing"):
        read_checkpoint(paths.meta)


def test_checkpoint_id_tracks_the_weights(factory, tmp_path: Path, tiny_meta) -> None:
    torch.manual_seed(0)
    a = factory("tiny", num_classes=10, in_channels=3)
    b = factory("tiny", num_classes=10, in_channels=3)
    save_checkpoint(tmp_path / "a", a, tiny_meta)
    save_checkpoint(tmp_path / "a2", a, {**tiny_meta, "epoch": 9})
    save_checkpoint(tmp_path / "b", b, tiny_meta)
    ida = checkpoint_id(tmp_path / "a")
    assert len(ida) == 16 and int(ida, 16) >= 0
    assert ida == checkpoint_id(tmp_path / "a2") != checkpoint_id(tmp_path / "b")


def test_equal_weights_give_equal_bytes(model, tmp_path: Path, tiny_meta) -> None:
    """safetensors writes header metadata in random order; the store makes the bytes deterministic."""
    shas = {file_sha256(save_checkpoint(tmp_path / f"m{i}", model, tiny_meta).weights) for i in range(10)}
    assert len(shas) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_weights_and_map_location(model, tmp_path: Path, tiny_meta, tree_equal) -> None:
    cuda_model = model.to("cuda")
    save_checkpoint(
        tmp_path / "last", cuda_model, tiny_meta, train_state={"rng": torch.cuda.get_rng_state_all()}
    )
    ckpt = read_checkpoint(tmp_path, map_location="cuda")
    assert all(t.is_cuda for t in ckpt.state_dict.values())
    tree_equal(ckpt.state_dict, dict(cuda_model.state_dict()))
    state = ckpt.load_train_state()
    assert state is not None and state["rng"][0].device.type == "cpu"


def test_a_model_saved_without_saying_what_it_is_is_refused_at_once(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    with pytest.raises(CheckpointError, match=r"needs model\.name, num_classes, in_channels"):
        save_checkpoint(tmp_path / "m", model, {})
    assert not list(tmp_path.iterdir())  # nothing half-written
    with pytest.raises(CheckpointError, match="needs in_channels"):
        save_checkpoint(tmp_path / "m", model, {"model": {"name": "x"}, "num_classes": 2})
