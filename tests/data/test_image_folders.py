"""Image-folder datasets (imagefolder, TinyImageNet, CINIC-10): decoding, conversion and the decode cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from calikd.data import fetch_dataset, load_dataset
from calikd.errors import ConfigError, DataError


def _forbid_image_open(monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("an image file was opened although the decoded cache should be used")

    monkeypatch.setattr(PIL.Image, "open", fail)


def _tree(root: Path, gen, splits: dict[str, dict[str, int]], size=(8, 8), ext=".png") -> dict[str, list]:
    """root/<split>/<class>/<i>.<ext> with distinct RGB patterns; returns the arrays per split, in order."""
    arrays: dict[str, list] = {}
    seed = 0
    for split, classes in splits.items():
        arrays[split] = []
        for cls in sorted(classes):
            for i in range(classes[cls]):
                seed += 1
                arr = gen.rgb_pattern(seed, size)
                gen.save_image(root / split / cls / f"img{i:02d}{ext}", arr)
                arrays[split].append((arr, cls))
    return arrays


def test_imagefolder_decodes_and_caches(tmp_path: Path, gen, monkeypatch) -> None:
    root = tmp_path / "tree"
    arrays = _tree(root, gen, {"train": {"cat": 4, "dog": 3}, "test": {"cat": 1, "dog": 2}})
    ds = load_dataset("imagefolder", root, val_fraction=0.0)
    assert ds.info.classes == ("cat", "dog") and ds.info.in_channels == 3 and ds.info.image_size == (8, 8)
    assert ds.train.images.shape == (7, 3, 8, 8) and ds.test.images.shape == (3, 3, 8, 8)
    for k, (arr, cls) in enumerate(arrays["train"]):
        np.testing.assert_array_equal(ds.train.images[k].permute(1, 2, 0).numpy(), arr)
        assert ds.train.labels[k].item() == ds.info.classes.index(cls)
    mean = ds.train.images.float().div(255).mean(dim=(0, 2, 3))
    np.testing.assert_allclose(ds.info.mean, mean.numpy(), atol=1e-4)

    _forbid_image_open(monkeypatch)
    again = load_dataset("imagefolder", root, val_fraction=0.0)
    assert np.array_equal(again.train.images.numpy(), ds.train.images.numpy())
    assert np.array_equal(again.test.labels.numpy(), ds.test.labels.numpy())
    assert again.info == ds.info


def test_cache_notices_changed_files(tmp_path: Path, gen) -> None:
    root = tmp_path / "tree"
    _tree(root, gen, {"train": {"a": 2, "b": 2}, "test": {"a": 1, "b": 1}})
    first = load_dataset("imagefolder", root, val_fraction=0.0)
    gen.save_image(root / "train" / "b" / "extra.png", gen.rgb_pattern(123))
    second = load_dataset("imagefolder", root, val_fraction=0.0)
    assert len(first.train) == 4 and len(second.train) == 5


def test_imagefolder_gray_rgba_jpeg_and_channels(tmp_path: Path, gen) -> None:
    root = tmp_path / "tree"
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    rgba = np.dstack([gen.rgb_pattern(1), np.full((8, 8), 128, np.uint8)])
    gen.save_image(root / "train" / "a" / "0.png", gray)
    gen.save_image(root / "train" / "a" / "1.png", gray[::-1].copy())
    gen.save_image(root / "train" / "b" / "0.PNG", gray.T.copy())
    gen.save_image(root / "test" / "a" / "0.jpg", gray)
    gray_ds = load_dataset("imagefolder", root, val_fraction=0.0)
    assert gray_ds.info.in_channels == 1 and gray_ds.train.images.shape == (3, 1, 8, 8)
    np.testing.assert_array_equal(gray_ds.train.images[0, 0].numpy(), gray)
    assert np.abs(gray_ds.test.images[0, 0].numpy().astype(int) - gray).max() <= 8  # JPEG is lossy

    rgb_ds = load_dataset("imagefolder", root, val_fraction=0.0, in_channels=3)
    assert rgb_ds.train.images.shape == (3, 3, 8, 8)
    for c in range(3):
        np.testing.assert_array_equal(rgb_ds.train.images[0, c].numpy(), gray)

    gen.save_image(root / "train" / "b" / "1.png", rgba, mode="RGBA")
    mixed = load_dataset("imagefolder", root, val_fraction=0.0)
    assert mixed.info.in_channels == 3  # one colour image makes the dataset RGB
    np.testing.assert_array_equal(mixed.train.images[3].permute(1, 2, 0).numpy(), rgba[:, :, :3])
    to_gray = load_dataset("imagefolder", root, val_fraction=0.0, in_channels=1)
    assert to_gray.train.images.shape == (4, 1, 8, 8)


def test_mixed_sizes_error_or_resize(tmp_path: Path, gen) -> None:
    root = tmp_path / "tree"
    gen.save_image(root / "train" / "a" / "0.png", gen.rgb_pattern(1, (8, 8)))
    gen.save_image(root / "train" / "a" / "1.png", gen.rgb_pattern(2, (16, 12)))
    gen.save_image(root / "train" / "b" / "0.png", gen.rgb_pattern(4, (8, 8)))
    gen.save_image(root / "test" / "a" / "0.png", gen.rgb_pattern(3, (8, 8)))
    with pytest.raises(DataError, match=r"(?s)mixed sizes: .*1\.png' is 16x12.*0\.png' is 8x8.*image_size"):
        load_dataset("imagefolder", root)
    ds = load_dataset("imagefolder", root, image_size=(6, 10), val_fraction=0.0)
    assert ds.train.images.shape == (3, 3, 6, 10) and ds.info.image_size == (6, 10)


def test_imagefolder_val_folder_modes(tmp_path: Path, gen) -> None:
    root = tmp_path / "tree"
    _tree(root, gen, {"train": {"a": 4, "b": 4}, "val": {"a": 1, "b": 1}, "test": {"a": 1, "b": 1}})
    used = load_dataset("imagefolder", root)
    assert (len(used.train), len(used.val), len(used.test)) == (8, 2, 2) and used.val_fraction == 0.2
    merged = load_dataset("imagefolder", root, valid="merge", val_fraction=0.2)
    assert len(merged.train) + len(merged.val) == 10 and len(merged.val) == 2
    ignored = load_dataset("imagefolder", root, valid="ignore", val_fraction=0.0)
    assert len(ignored.train) == 8 and len(ignored.val) == 0
    with pytest.raises(ConfigError, match="valid="):
        load_dataset("imagefolder", root, valid="mix")


def test_imagefolder_errors(tmp_path: Path, gen) -> None:
    with pytest.raises(ConfigError, match="needs data_dir"):
        load_dataset("imagefolder")
    with pytest.raises(DataError, match="needs train/ and test/"):
        load_dataset("imagefolder", tmp_path)
    root = tmp_path / "tree"
    _tree(root, gen, {"train": {"a": 1, "b": 1}, "test": {"zebra": 1}})
    with pytest.raises(DataError, match="zebra"):
        load_dataset("imagefolder", root)
    with pytest.raises(ConfigError, match=r"no option 'imagesize'.*did you mean 'image_size'"):
        load_dataset("imagefolder", root, imagesize=8)


def _tinyimagenet_tree(root: Path, gen, wnids=("n02", "n01", "n03"), per_class=3) -> dict:
    base = root / "tiny-imagenet-200"
    (base).mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (base / "words.txt").write_text("".join(f"{w}\tthing {w}\n" for w in wnids))
    seed = 0
    train: dict[str, list] = {}
    for w in wnids:
        train[w] = []
        for i in range(per_class):
            seed += 1
            arr = gen.rgb_pattern(seed, (64, 64))
            if w == "n03" and i == 0:  # a grayscale JPEG, as in the real data
                arr = np.repeat(arr[:, :, :1], 3, axis=2)
                gen.save_image(base / "train" / w / "images" / f"{w}_{i}.JPEG", arr[:, :, 0])
            else:
                gen.save_image(base / "train" / w / "images" / f"{w}_{i}.JPEG", arr)
            train[w].append(arr)
        (base / "train" / w / f"{w}_boxes.txt").write_text("")
    lines, val = [], []
    for j, w in enumerate(["n01", "n03", "n02", "n01"]):
        arr = gen.rgb_pattern(100 + j, (64, 64))
        gen.save_image(base / "val" / "images" / f"val_{j}.JPEG", arr)
        lines.append(f"val_{j}.JPEG\t{w}\t0\t0\t63\t63")
        val.append((arr, w))
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    (base / "test" / "images").mkdir(parents=True)
    return {"train": train, "val": val, "base": base}


def test_tinyimagenet_layout(tmp_path: Path, gen, monkeypatch) -> None:
    tree = _tinyimagenet_tree(tmp_path, gen)
    ds = load_dataset("tiny-imagenet", tmp_path, val_fraction=0.0)
    assert ds.info.classes == ("n01", "n02", "n03") and ds.info.num_classes == 3
    assert ds.info.image_size == (64, 64) and ds.info.in_channels == 3 and ds.info.crop_padding == 8
    assert ds.train.images.shape == (9, 3, 64, 64) and ds.test.images.shape == (4, 3, 64, 64)
    assert ds.train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert ds.test.labels.tolist() == [0, 2, 1, 0]  # official val = our test
    gray = ds.train.images[6].numpy()
    assert np.array_equal(gray[0], gray[1]) and np.array_equal(gray[1], gray[2])  # gray -> RGB
    jpeg_err = np.abs(ds.test.images[1].permute(1, 2, 0).numpy().astype(int) - tree["val"][1][0]).mean()
    assert jpeg_err < 60  # lossy, but the same picture (random noise compresses badly)

    _forbid_image_open(monkeypatch)
    again = load_dataset("tinyimagenet", tmp_path, val_fraction=0.0)
    assert np.array_equal(again.train.images.numpy(), ds.train.images.numpy())


def test_tinyimagenet_fetch_zip(tmp_path: Path, http_server, gen) -> None:
    src = tmp_path / "src"
    tree = _tinyimagenet_tree(src, gen, per_class=2)
    members = {
        p.relative_to(src).as_posix(): p.read_bytes() for p in sorted(tree["base"].rglob("*")) if p.is_file()
    }
    archive = gen.make_zip(members)
    http_server.put("tiny-imagenet-200.zip", archive)
    data = tmp_path / "data"
    root = fetch_dataset("tinyimagenet", data, base_url=http_server.url, sha256=gen.sha256_of(archive))
    assert root == data / "tinyimagenet" / "tiny-imagenet-200"
    ds = load_dataset("tinyimagenet", data, val_fraction=0.0)
    assert len(ds.train) == 6 and len(ds.test) == 4


def test_tinyimagenet_bad_annotation(tmp_path: Path, gen) -> None:
    tree = _tinyimagenet_tree(tmp_path, gen)
    (tree["base"] / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn99\t0\t0\t1\t1\n")
    with pytest.raises(DataError, match=r"'n99' is not in wnids\.txt"):
        load_dataset("tinyimagenet", tmp_path)


def test_cinic10_valid_modes_and_cache(tmp_path: Path, gen, monkeypatch) -> None:
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    root = tmp_path / "cinic10"
    _tree(root, gen, {"train": dict.fromkeys(classes, 2), "valid": dict.fromkeys(classes, 1),
                      "test": dict.fromkeys(classes, 1)}, size=(32, 32))  # fmt: skip
    ds = load_dataset("cinic10", tmp_path, val_fraction=0.5)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (10, 10, 10)
    assert ds.info.classes == tuple(classes) and ds.info.mean[0] == pytest.approx(0.47889522)
    assert ds.val.labels.sort().values.tolist() == list(range(10))  # stratified: one per class
    merged = load_dataset("cinic10", tmp_path, valid="merge", val_fraction=0.0)
    assert len(merged.train) == 30
    used = load_dataset("cinic10", tmp_path, valid="use")
    assert (len(used.train), len(used.val)) == (20, 10)
    _forbid_image_open(monkeypatch)
    assert len(load_dataset("cinic10", tmp_path, valid="merge").test) == 10


def test_cinic10_wrong_classes(tmp_path: Path, gen) -> None:
    _tree(tmp_path / "cinic10", gen, {"train": {"airplane": 1}, "test": {"airplane": 1}}, size=(32, 32))
    with pytest.raises(DataError, match="CINIC-10 has"):
        load_dataset("cinic10", tmp_path)


def test_split_sizes_must_agree(tmp_path: Path, gen) -> None:
    root = tmp_path / "tree"
    gen.save_image(root / "train" / "a" / "0.png", gen.rgb_pattern(1, (8, 8)))
    gen.save_image(root / "train" / "b" / "0.png", gen.rgb_pattern(3, (8, 8)))
    gen.save_image(root / "test" / "a" / "0.png", gen.rgb_pattern(2, (10, 10)))
    with pytest.raises(DataError, match=r"test images are 10x10 \(HxW\) but the train images are 8x8"):
        load_dataset("imagefolder", root)
    assert load_dataset("imagefolder", root, image_size=8).test.images.shape == (1, 3, 8, 8)


def _flat(root: Path, gen, counts: dict[str, int]) -> None:
    seed = 1000
    for cls, n in counts.items():
        for i in range(n):
            seed += 1
            gen.save_image(root / cls / f"img{i:02d}.png", gen.rgb_pattern(seed))


def test_flat_imagefolder_is_split_by_class_and_seed(tmp_path: Path, gen) -> None:
    root = tmp_path / "flat"
    _flat(root, gen, {"ant": 10, "bee": 20, "cow": 5})
    ds = load_dataset("imagefolder", root, val_fraction=0.2, split_seed=3)
    assert ds.info.classes == ("ant", "bee", "cow")
    assert len(ds.test) == 7 and len(ds.val) + len(ds.train) == 28  # round(0.2 * 35) to test, by class
    assert ds.test.labels.bincount(minlength=3).tolist() == [2, 4, 1]
    every = [tuple(x.flatten().tolist()) for split in (ds.train, ds.val, ds.test) for x in split.images]
    assert len(set(every)) == 35  # train, val and test are disjoint and cover the tree
    again = load_dataset("imagefolder", root, val_fraction=0.2, split_seed=3)
    assert np.array_equal(again.test.images.numpy(), ds.test.images.numpy())
    assert np.array_equal(again.val.images.numpy(), ds.val.images.numpy())
    other = load_dataset("imagefolder", root, val_fraction=0.2, split_seed=4)
    assert not np.array_equal(other.test.images.numpy(), ds.test.images.numpy())
    half = load_dataset("imagefolder", root, val_fraction=0.0, test_fraction=0.5)
    assert len(half.test) == 17 or len(half.test) == 18


def test_flat_imagefolder_errors(tmp_path: Path, gen) -> None:
    root = tmp_path / "flat"
    _flat(root, gen, {"ant": 3, "bee": 3})
    with pytest.raises(ConfigError, match="test_fraction must be"):
        load_dataset("imagefolder", root, test_fraction=1.5)
    _flat(root, gen, {"val": 2})
    with pytest.raises(DataError, match="mixes split folders"):
        load_dataset("imagefolder", root)
    tree = tmp_path / "tree"
    _tree(tree, gen, {"train": {"a": 2, "b": 2}, "test": {"a": 1, "b": 1}})
    with pytest.raises(ConfigError, match="test_fraction applies to a flat"):
        load_dataset("imagefolder", tree, test_fraction=0.3)
    lone = tmp_path / "lone"
    _tree(lone, gen, {"train": {"a": 2, "b": 2}})
    with pytest.raises(DataError, match="has train/ but no test/"):
        load_dataset("imagefolder", lone)


def test_a_flat_tree_from_the_cli(tmp_path: Path, gen, run_cli) -> None:
    root = tmp_path / "flat"
    _flat(root, gen, {"ant": 10, "bee": 10})
    code, out, err = run_cli(
        ["data", "info", "imagefolder", "--data-dir", str(root), "--val-fraction", "0.25"]
    )
    assert code == 0, err
    assert "2 classes" in out and "train  12" in out and "test   4" in out  # 20% of every class to test
    argv = ["train-teacher", "--dataset", "imagefolder", "--data-dir", str(root), "--dataset-options",
            "test_fraction=0.3", "--model", "mlp", "--model-kwargs", "width=8", "--epochs", "1",
            "--batch-size", "4", "--no-progress", "--out", str(tmp_path / "t")]  # fmt: skip
    code, _, err = run_cli(argv)
    assert code == 0, err
