"""A Hugging Face dataset on disk (save_to_disk or parquet files) as a calikd dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from calikd.data import load_dataset
from calikd.errors import ConfigError, DataError

datasets = pytest.importorskip("datasets")
Image = pytest.importorskip("PIL.Image")


def _split(rng, n: int, rgb: bool = False):
    shape = (6, 7, 3) if rgb else (6, 7)
    pixels = [rng.integers(0, 255, shape, dtype=np.uint8) for _ in range(n)]
    features = datasets.Features(
        {"img": datasets.Image(), "label": datasets.ClassLabel(names=["x", "y", "z"])}
    )
    data = {"img": [Image.fromarray(p) for p in pixels], "label": [i % 3 for i in range(n)]}
    return datasets.Dataset.from_dict(data, features=features), np.stack(pixels)


@pytest.fixture
def saved(tmp_path: Path):
    rng = np.random.default_rng(0)
    parts = {"train": _split(rng, 30), "validation": _split(rng, 9), "test": _split(rng, 12)}
    root = tmp_path / "saved"
    datasets.DatasetDict({k: v[0] for k, v in parts.items()}).save_to_disk(str(root))
    return root, {k: v[1] for k, v in parts.items()}


def test_save_to_disk_folder_reads_images_labels_classes_and_its_val(saved) -> None:
    root, pixels = saved
    ds = load_dataset("hf", root, image_column="img", val_fraction=0.5)
    assert ds.info.classes == ("x", "y", "z") and ds.info.in_channels == 1 and ds.info.image_size == (6, 7)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (30, 9, 12)  # its validation split is our val
    assert torch.equal(ds.train.images[:, 0], torch.from_numpy(pixels["train"]))
    assert torch.equal(ds.val.images[:, 0], torch.from_numpy(pixels["validation"]))
    assert ds.test.labels.tolist() == [i % 3 for i in range(12)]


def test_parquet_files_in_the_hub_layout(saved, tmp_path: Path) -> None:
    root, pixels = saved
    loaded = datasets.load_from_disk(str(root))
    (tmp_path / "pq" / "data").mkdir(parents=True)
    for name, split in loaded.items():
        split.to_parquet(str(tmp_path / "pq" / "data" / f"{name}-00000-of-00001.parquet"))
    ds = load_dataset("hf", tmp_path / "pq", image_column="img")
    assert ds.info.classes == ("x", "y", "z") and (len(ds.train), len(ds.val)) == (30, 9)
    assert torch.equal(ds.test.images[:, 0], torch.from_numpy(pixels["test"]))


def test_rgb_images_and_resizing(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    (train, _), (test, test_px) = _split(rng, 9, rgb=True), _split(rng, 6, rgb=True)
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "rgb"))
    ds = load_dataset("hf", tmp_path / "rgb", image_column="img", val_fraction=0.0)
    assert ds.info.in_channels == 3 and torch.equal(
        ds.test.images, torch.from_numpy(test_px).permute(0, 3, 1, 2)
    )
    small = load_dataset("hf", tmp_path / "rgb", image_column="img", image_size=4, in_channels=1)
    assert small.info.in_channels == 1 and small.info.image_size == (4, 4)


def test_errors_name_the_problem(saved, tmp_path: Path) -> None:
    root, _ = saved
    with pytest.raises(ConfigError, match="needs data_dir"):
        load_dataset("hf")
    with pytest.raises(DataError, match=r"no column 'image' \(its columns: \['img', 'label'\]\)"):
        load_dataset("hf", root)
    with pytest.raises(DataError, match="has no split 'dev'"):
        load_dataset("hf", root, image_column="img", test_split="dev")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("hf", tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="neither a folder written by save_to_disk"):
        load_dataset("hf", tmp_path / "empty")
    single = tmp_path / "single"
    datasets.load_from_disk(str(root))["train"].save_to_disk(str(single))
    with pytest.raises(DataError, match="single split"):
        load_dataset("hf", single, image_column="img")


def test_a_teacher_trains_on_an_hf_dataset_from_the_cli(saved, run_cli) -> None:
    root, _ = saved
    out = root.parent / "teacher"
    argv = ["train-teacher", "--dataset", "hf", "--data-dir", str(root), "--dataset-options",
            "image_column=img", "--model", "mlp", "--model-kwargs", "width=8", "--epochs", "1",
            "--batch-size", "10", "--no-progress", "--out", str(out)]  # fmt: skip
    code, _, err = run_cli(argv)
    assert code == 0, err
    code, stdout, err = run_cli(["evaluate", str(out), "--split", "val", "--json", "-"])
    assert code == 0, err
    assert '"num_samples": 9' in stdout  # its own validation split, found through the recorded data folder
