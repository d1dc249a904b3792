"""BatchLoader: batching, determinism per (seed, epoch), resume."""

from __future__ import annotations

import pytest
import torch

from calikd.data import ArrayDataset, BatchLoader
from calikd.errors import ConfigError


def _dataset(n: int = 10) -> ArrayDataset:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).repeat(1, 1, 2, 2)
    return ArrayDataset(images, torch.arange(n) % 3)


def _order(loader: BatchLoader) -> list[int]:
    return [int(v) for x, _ in loader for v in x[:, 0, 0, 0]]


def test_sequential_batches_and_len() -> None:
    loader = BatchLoader(_dataset(10), 4, shuffle=False)
    batches = list(loader)
    assert len(loader) == 3 and [len(y) for _, y in batches] == [4, 4, 2]
    assert _order(loader) == list(range(10))
    x, y = batches[0]
    assert x.dtype == torch.uint8 and y.dtype == torch.int64 and x.shape == (4, 1, 2, 2)
    assert y.tolist() == [0, 1, 2, 0]
    dropped = BatchLoader(_dataset(10), 4, shuffle=False, drop_last=True)
    assert len(dropped) == 2 and len(list(dropped)) == 2


def test_shuffle_depends_on_seed_and_epoch_only() -> None:
    a = BatchLoader(_dataset(50), 8, shuffle=True, seed=3)
    b = BatchLoader(_dataset(50), 8, shuffle=True, seed=3)
    torch.manual_seed(123)  # global RNG state must not matter
    first = _order(a)
    torch.manual_seed(456)
    assert _order(b) == first and _order(a) == first  # same epoch, same order
    assert sorted(first) == list(range(50))
    a.set_epoch(1)
    second = _order(a)
    assert second != first and sorted(second) == list(range(50))
    assert _order(BatchLoader(_dataset(50), 8, shuffle=True, seed=4)) != first
    b.set_epoch(1)
    assert _order(b) == second
    labels = [int(v) for _, y in a for v in y]
    assert labels == [v % 3 for v in second]  # labels stay with their images


def test_resume_mid_epoch() -> None:
    loader = BatchLoader(_dataset(30), 7, shuffle=True, seed=1)
    loader.set_epoch(5)
    full = [x.clone() for x, _ in loader]
    loader.set_epoch(5, start_batch=2)
    resumed = list(loader)
    assert len(resumed) == len(full) - 2
    assert all(torch.equal(r, f) for (r, _), f in zip(resumed, full[2:], strict=True))
    assert len(list(loader)) == len(full)  # the offset applies to one pass only


def test_validation() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        BatchLoader(_dataset(), 0, shuffle=True)
    with pytest.raises(ConfigError, match="seed"):
        BatchLoader(_dataset(), 2, shuffle=True, seed=-1)
    with pytest.raises(ConfigError, match="epoch"):
        BatchLoader(_dataset(), 2, shuffle=True).set_epoch(-1)
    with pytest.raises(ConfigError, match="ArrayDataset"):
        BatchLoader(torch.zeros(3), 2, shuffle=True)  # type: ignore[arg-type]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_device() -> None:
    loader = BatchLoader(_dataset(20), 6, shuffle=True, device="cuda")
    cpu = BatchLoader(_dataset(20), 6, shuffle=True, device="cpu")
    for (xg, yg), (xc, yc) in zip(loader, cpu, strict=True):
        assert xg.is_cuda and yg.is_cuda
        assert torch.equal(xg.cpu(), xc) and torch.equal(yg.cpu(), yc)
