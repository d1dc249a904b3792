"""-C sets: written in the CIFAR-10-C layout, read back exactly, generated identically on the fly; damaged,
foreign or pickled files are refused with a clear message."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import calikd.data.corrupted as corrupted
from calikd.data import ArrayDataset
from calikd.data.corrupted import CorruptedSet, GeneratedCorruptions, write_corrupted_set
from calikd.errors import ConfigError, DataError

NAMES = ["gaussian_noise", "contrast"]


def split(n: int = 23, channels: int = 1, size: int = 12) -> ArrayDataset:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, channels, size, size), generator=gen, dtype=torch.uint8)
    return ArrayDataset(images, torch.arange(n) % 4)


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corrupted, "CHUNK", 10)  # several chunks per severity


def test_written_set_has_the_cifar_c_layout_and_matches_generation(
    tmp_path: Path, small_chunks: None
) -> None:
    data = split()
    folder = write_corrupted_set(data, tmp_path / "c", NAMES, seed=3, dataset="toy")
    noise = np.load(folder / "gaussian_noise.npy", allow_pickle=False)
    assert noise.shape == (5 * 23, 12, 12, 1) and noise.dtype == np.uint8
    labels = np.load(folder / "labels.npy", allow_pickle=False)
    assert labels.shape == (5 * 23,) and (labels[:23] == data.labels.numpy()).all()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["corruptions"] == sorted(NAMES) and manifest["seed"] == 3 and manifest["table"] == "cifar"

    on_disk, generated = CorruptedSet(folder), GeneratedCorruptions(data, NAMES, seed=3)
    assert on_disk.corruptions == generated.corruptions == NAMES
    for name in NAMES:
        for severity in (1, 5):
            a, b = on_disk.load(name, severity), generated.load(name, severity)
            assert torch.equal(a.images, b.images) and torch.equal(a.labels, data.labels)
    sev1, sev5 = (
        on_disk.load("gaussian_noise", 1).images.float(),
        on_disk.load("gaussian_noise", 5).images.float(),
    )
    clean = data.images.float()
    assert (sev5 - clean).abs().mean() > (sev1 - clean).abs().mean() > 0
    other_seed = GeneratedCorruptions(data, NAMES, seed=4).load("gaussian_noise", 3).images
    assert not torch.equal(other_seed, generated.load("gaussian_noise", 3).images)


def test_an_interrupted_write_continues_and_keeps_finished_files(tmp_path: Path) -> None:
    data = split()
    folder = write_corrupted_set(data, tmp_path / "c", ["contrast"], seed=0)
    first = (folder / "contrast.npy").stat().st_mtime_ns
    write_corrupted_set(data, folder, NAMES, seed=0)
    assert (folder / "contrast.npy").stat().st_mtime_ns == first
    assert CorruptedSet(folder).corruptions == NAMES


def test_tampered_truncated_and_pickled_files_are_refused(tmp_path: Path) -> None:
    folder = write_corrupted_set(split(), tmp_path / "c", ["contrast"], seed=0)
    path = folder / "contrast.npy"
    raw = path.read_bytes()
    path.write_bytes(raw[:-50])
    with pytest.raises(DataError, match="does not match the SHA-256"):
        CorruptedSet(folder).load("contrast", 1)
    with pytest.raises(DataError, match=r"not a readable \.npy"):
        CorruptedSet(folder, verify=False).load("contrast", 1)
    os.remove(folder / "manifest.json")
    np.save(path, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"not a readable \.npy"):
        CorruptedSet(folder).load("contrast", 1)


def test_released_cifar_c_folders_load(tmp_path: Path) -> None:
    folder = tmp_path / "CIFAR-10-C"
    folder.mkdir()
    rgb = np.random.default_rng(0).integers(0, 256, (5 * 6, 32, 32, 3), dtype=np.uint8)
    np.save(folder / "fog.npy", rgb)
    np.save(folder / "labels.npy", np.tile(np.arange(6, dtype=np.int64), 5))
    c = CorruptedSet(folder)
    assert c.corruptions == ["fog"]
    sev3 = c.load("fog", 3)
    assert sev3.images.shape == (6, 3, 32, 32)
    assert torch.equal(sev3.images[1], torch.from_numpy(rgb[12 + 1]).permute(2, 0, 1))
    np.save(folder / "labels.npy", np.arange(7, dtype=np.int64))
    with pytest.raises(DataError, match=r"holds 5 x 6 images but labels\.npy has 7 labels"):
        CorruptedSet(folder).load("fog", 1)
    with pytest.raises(DataError, match=r"has no snow\.npy"):
        CorruptedSet(folder).load("snow", 1)
    with pytest.raises(DataError, match="does not exist"):
        CorruptedSet(tmp_path / "nowhere")


def test_unknown_corruptions_are_refused_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match="did you mean 'gaussian_noise'"):
        GeneratedCorruptions(split(), ["gausian_noise"])
