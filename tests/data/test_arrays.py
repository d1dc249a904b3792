"""Your own arrays as a dataset: from_arrays (in memory), save_arrays + the `arrays` dataset (a file)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from calikd.data import from_arrays, load_dataset, save_arrays
from calikd.data.registry import unregister_dataset
from calikd.errors import ConfigError, DataError


def _digits(n: int = 120, seed: int = 0, classes: int = 4):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = rng.integers(0, 17, (n, 6, 5)).astype(np.int64)  # 0..16 like sklearn's digits
    images[:, 0, 0] = labels * 4  # a pixel that tells the class
    return images, labels


@pytest.fixture
def memory_name():
    yield "my-digits"
    with contextlib.suppress(ConfigError):
        unregister_dataset("my-digits")


def test_from_arrays_registers_a_dataset_with_its_own_statistics(memory_name) -> None:
    x, y = _digits()
    name = from_arrays((x, y), (x[:40], y[:40]), name=memory_name)
    ds = load_dataset(name, val_fraction=0.25)
    assert ds.info.name == "my-digits" and ds.info.num_classes == 4 and ds.info.in_channels == 1
    assert ds.info.image_size == (6, 5) and ds.info.classes == ("0", "1", "2", "3")
    assert (len(ds.train), len(ds.val), len(ds.test)) == (90, 30, 40)
    # the statistics are the train split's, in [0, 1] units of the uint8 images
    full = torch.from_numpy(x).double() / 255.0
    assert ds.info.mean[0] == pytest.approx(float(full.mean()), abs=1e-6)
    assert ds.info.std[0] == pytest.approx(float(full.std(unbiased=False)), abs=1e-6)
    # images keep their values (uint8, no rescaling), in order
    assert torch.equal(ds.test.images[:, 0], torch.from_numpy(x[:40]).to(torch.uint8))


def test_layouts_dtypes_and_explicit_statistics(memory_name) -> None:
    x, y = _digits()
    nchw = from_arrays((x[:, None], y), (x[:8, None], y[:8]), name=memory_name)
    a = load_dataset(nchw, val_fraction=0.0)
    rgb = np.repeat(x[..., None], 3, axis=3)  # (N, H, W, 3)
    b = load_dataset(from_arrays((rgb, y), (rgb[:8], y[:8]), name=memory_name), val_fraction=0.0)
    assert b.info.in_channels == 3 and torch.equal(b.train.images[:, 1], a.train.images[:, 0])
    floats = torch.from_numpy(x).float() / 16.0  # floats in [0, 1] are quantised to 1/255 steps
    c = load_dataset(from_arrays((floats, torch.from_numpy(y)), (floats[:8], y[:8]), name=memory_name))
    assert c.test.images.dtype == torch.uint8
    assert torch.equal(c.test.images[:, 0], (floats[:8] * 255).round().to(torch.uint8))
    d = from_arrays((x, y), (x[:8], y[:8]), mean=[0.5], std=[0.25], hflip=True, name=memory_name)
    info = load_dataset(d).info
    assert info.mean == (0.5,) and info.std == (0.25,) and info.hflip


def test_an_explicit_val_split_is_used_as_given(memory_name) -> None:
    x, y = _digits()
    name = from_arrays((x[:80], y[:80]), (x[100:], y[100:]), val=(x[80:100], y[80:100]), name=memory_name)
    ds = load_dataset(name, val_fraction=0.5)  # ignored: the val split is the user's
    assert (len(ds.train), len(ds.val), len(ds.test)) == (80, 20, 20)
    assert torch.equal(ds.val.images[:, 0], torch.from_numpy(x[80:100]).to(torch.uint8))


@pytest.mark.parametrize(
    ("train", "test", "kwargs", "match"),
    [
        ((np.full((4, 3, 3), 2.0), [0, 1, 0, 1]), None, {}, r"floats in \[2, 2\]"),
        ((np.zeros((4, 3, 3), np.int64) + 300, [0, 1, 0, 1]), None, {}, r"integers in \[300, 300\]"),
        ((np.zeros((4, 3, 3), np.uint8), [0, 1, 0]), None, {}, "3 labels for 4 images"),
        ((np.zeros((4, 3, 3), np.uint8), [0, -1, 0, 1]), None, {}, "negative labels"),
        ((np.zeros((4, 3, 3), np.uint8), [0.0, 1.0, 0.0, 1.0]), None, {}, "integer class indices"),
        (
            (np.zeros((4, 3, 3), np.uint8), [0, 0, 0, 0]),
            (np.zeros((1, 3, 3)), [0]),
            {},
            "at least two classes",
        ),
        (
            (np.zeros((4, 3, 3), np.uint8), [0, 1, 0, 1]),
            (np.zeros((2, 4, 4), np.uint8), [0, 1]),
            {},
            "one size",
        ),
        ((np.zeros((4, 3, 3), np.uint8), [0, 1, 0, 1]), None, {"classes": ["a"]}, "labels go up to 1"),
        ((np.zeros((4, 3, 3), np.uint8), [0, 1, 0, 1]), None, {"classes": ["a", "b", "c"]}, "no training"),
        ((np.zeros((4, 3, 3), np.uint8), [0, 1, 0, 1]), None, {"std": [0.0]}, "std must be positive"),
        ((np.zeros((4, 2, 3, 2), np.uint8), [0, 1, 0, 1]), None, {}, r"expected \(N, H, W\)"),
        (("pixels", [0]), None, {}, "NumPy array, a torch tensor or a list"),
    ],
)
def test_bad_arrays_are_clear_errors(train, test, kwargs, match, memory_name) -> None:
    test = test or (np.zeros((2, 3, 3), np.uint8), [0, 1])
    with pytest.raises(ConfigError, match=match):
        from_arrays(train, test, name=memory_name, **kwargs)


def test_a_builtin_name_is_refused_and_a_memory_name_replaced(memory_name) -> None:
    x, y = _digits()
    with pytest.raises(ConfigError, match="name of a registered dataset"):
        from_arrays((x, y), (x, y), name="fashion-mnist")
    from_arrays((x, y), (x[:10], y[:10]), name=memory_name)
    from_arrays((x, y), (x[:12], y[:12]), name=memory_name)
    assert len(load_dataset(memory_name).test) == 12


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_save_arrays_round_trips_through_the_arrays_dataset(tmp_path: Path, suffix: str) -> None:
    x, y = _digits()
    path = save_arrays(
        tmp_path / f"d{suffix}", (x[:80], y[:80]), (x[100:], y[100:]), val=(x[80:100], y[80:100]),
        classes=["w", "x", "y", "z"],
    )  # fmt: skip
    ds = load_dataset("arrays", path)
    assert ds.info.classes == ("w", "x", "y", "z") and ds.info.name == "arrays"
    assert (len(ds.train), len(ds.val), len(ds.test)) == (80, 20, 20)
    assert torch.equal(ds.train.images[:, 0], torch.from_numpy(x[:80]).to(torch.uint8))
    assert torch.equal(ds.test.labels, torch.from_numpy(y[100:]))
    no_val = save_arrays(tmp_path / f"e{suffix}", (x, y), (x[:10], y[:10]))
    ds = load_dataset("arrays", no_val, val_fraction=0.25)
    assert (len(ds.train), len(ds.val)) == (90, 30) and ds.info.classes == ("0", "1", "2", "3")


def test_arrays_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs data_dir"):
        load_dataset("arrays")
    with pytest.raises(DataError, match="is not a file"):
        load_dataset("arrays", tmp_path)
    bad = tmp_path / "x.npz"
    np.savez(bad, train_images=np.zeros((2, 3, 3), np.uint8), train_labels=np.array([0, 1]))
    with pytest.raises(DataError, match=r"lacks the array\(s\) \['test_images', 'test_labels'\]"):
        load_dataset("arrays", bad)
    pickled = tmp_path / "p.npz"
    np.savez(pickled, train_images=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="cannot read"):
        load_dataset("arrays", pickled)
    with pytest.raises(ConfigError, match=r"must end in \.npz or \.safetensors"):
        save_arrays(
            tmp_path / "d.pt",
            (np.zeros((2, 3, 3), np.uint8), [0, 1]),
            (np.zeros((2, 3, 3), np.uint8), [0, 1]),
        )


def test_arrays_from_the_cli(tmp_path: Path, run_cli) -> None:
    x, y = _digits(n=200)
    path = save_arrays(tmp_path / "mine.npz", (x, y), (x[:40], y[:40]))
    code, out, err = run_cli(["data", "info", "arrays", "--data-dir", str(path)])
    assert code == 0, err
    assert "180" in out and "40" in out
    run = tmp_path / "teacher"
    argv = ["train-teacher", "--dataset", "arrays", "--data-dir", str(path), "--model", "mlp",
            "--epochs", "1", "--batch-size", "32", "--no-progress", "--out", str(run)]  # fmt: skip
    code, out, err = run_cli(argv)
    assert code == 0, err
    meta = json.loads((run / "last.json").read_text())
    assert meta["dataset"]["name"] == "arrays" and meta["dataset"]["data_dir"] == str(path.resolve())
    code, out, err = run_cli(["evaluate", str(run), "--json", "-"])  # the data's place is recorded
    assert code == 0, err
    assert json.loads(out)["num_samples"] == 40
    code, _, err = run_cli(["calibrate", str(run), "--no-plots"])
    assert code == 0, err
