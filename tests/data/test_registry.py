"""Registry, DatasetInfo and the synthetic dataset."""

from __future__ import annotations

import json

import pytest
import torch

from calikd.data import ArrayDataset, DatasetInfo, dataset_info, list_datasets, load_dataset
from calikd.errors import ConfigError


def test_list_and_aliases() -> None:
    names = list_datasets()
    expected = ["fashion-mnist", "mnist", "cifar10", "cifar100", "cifar100-coarse", "tinyimagenet", "cinic10"]
    for name in [*expected, "imagefolder", "synthetic"]:
        assert name in names
    assert dataset_info("fashion_mnist") == dataset_info("FMNIST") == dataset_info("fashion-mnist")
    assert dataset_info("cifar100-coarse").num_classes == 20


def test_unknown_dataset_suggests_nearest() -> None:
    with pytest.raises(ConfigError, match=r"unknown dataset 'cifar01' \(did you mean 'cifar10'\?\)"):
        dataset_info("cifar01")
    with pytest.raises(ConfigError, match=r"unknown dataset 'fashoin-mnist'.*did you mean"):
        load_dataset("fashoin-mnist")


def test_unknown_option() -> None:
    with pytest.raises(ConfigError, match=r"no option 'train_sz'.*did you mean 'train_size'") as err:
        load_dataset("synthetic", train_sz=10)
    assert "train_size" in str(err.value.hint)
    with pytest.raises(ConfigError, match="depends on its files"):
        dataset_info("imagefolder")


def test_published_stats() -> None:
    assert dataset_info("fashion-mnist").mean == (0.2860,) and dataset_info("mnist").std == (0.3081,)
    assert dataset_info("cifar10").std == (0.2470, 0.2435, 0.2616)
    assert dataset_info("cifar100").mean == (0.5071, 0.4865, 0.4409)
    assert dataset_info("tinyimagenet").mean == (0.4802, 0.4481, 0.3975)
    assert dataset_info("cinic10").std == (0.24205776, 0.23828046, 0.25874835)
    assert dataset_info("mnist").hflip is False and dataset_info("cifar10").hflip is True


def test_info_json_round_trip() -> None:
    for name in ("cifar100", "fashion-mnist", "tinyimagenet"):
        info = dataset_info(name)
        again = DatasetInfo.from_dict(json.loads(json.dumps(info.to_dict())))
        assert again == info and isinstance(again.image_size, tuple)
    d = dataset_info("mnist").to_dict()
    with pytest.raises(ConfigError, match="unknown DatasetInfo key 'colour'"):
        DatasetInfo.from_dict({**d, "colour": 1})
    with pytest.raises(ConfigError, match="missing key"):
        DatasetInfo.from_dict({k: v for k, v in d.items() if k != "std"})
    with pytest.raises(ConfigError, match="mean and std"):
        DatasetInfo.from_dict({**d, "mean": [0.1, 0.2]})


def test_array_dataset_validation() -> None:
    with pytest.raises(ConfigError, match="uint8"):
        ArrayDataset(torch.zeros(2, 1, 2, 2), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ConfigError, match="2 images but 3 labels"):
        ArrayDataset(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64))
    ds = ArrayDataset(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.tensor([1, 0], dtype=torch.int32))
    assert ds.labels.dtype == torch.int64 and len(ds) == 2


def test_synthetic_is_deterministic() -> None:
    a = load_dataset("synthetic", train_size=100, test_size=40, seed=1)
    b = load_dataset("synthetic", train_size=100, test_size=40, seed=1)
    c = load_dataset("synthetic", train_size=100, test_size=40, seed=2)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.labels, b.test.labels)
    assert not torch.equal(a.train.images, c.train.images)
    assert a.info == b.info and a.info.name == "synthetic" and a.info.num_classes == 10
    rgb = load_dataset(
        "synthetic", in_channels=3, image_size=(16, 20), num_classes=4, train_size=40, test_size=8
    )
    assert rgb.train.images.shape == (36, 3, 16, 20) and rgb.info.in_channels == 3
    assert dataset_info("synthetic", num_classes=5).num_classes == 5
    with pytest.raises(ConfigError, match="num_classes"):
        load_dataset("synthetic", num_classes=1)


def test_synthetic_is_learnable_but_not_trivial() -> None:
    """A nearest-class-mean classifier on the pixels beats chance (10%) by far, but label noise (10%) keeps
    every classifier well below 100%."""
    ds = load_dataset("synthetic", val_fraction=0.0)
    x = ds.train.images.flatten(1).float() / 255
    centroids = torch.stack([x[ds.train.labels == c].mean(0) for c in range(ds.info.num_classes)])
    pred = torch.cdist(ds.test.images.flatten(1).float() / 255, centroids).argmin(1)
    acc = (pred == ds.test.labels).float().mean().item()
    assert 0.4 < acc < 0.92
    flipped = load_dataset("synthetic", val_fraction=0.0, label_noise=0.0, noise=0.0)
    assert (flipped.train.labels != ds.train.labels).float().mean().item() == pytest.approx(0.1, abs=0.03)


@pytest.mark.slow
def test_synthetic_small_cnn_two_epochs() -> None:
    """The promise of the synthetic dataset: a small CNN gets well above chance in two epochs."""
    from calikd.data import BatchLoader, build_eval_transform, build_train_transform

    torch.manual_seed(0)
    ds = load_dataset("synthetic")
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(32 * 7 * 7, ds.info.num_classes),
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    train_tf, eval_tf = build_train_transform(ds.info), build_eval_transform(ds.info)
    gen = torch.Generator().manual_seed(0)
    loader = BatchLoader(ds.train, 64, shuffle=True, seed=0)
    for epoch in range(2):
        loader.set_epoch(epoch)
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(train_tf(x, gen)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        acc = (model(eval_tf(ds.test.images)).argmax(1) == ds.test.labels).float().mean().item()
    assert 0.5 < acc < 0.95
