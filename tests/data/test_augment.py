"""random_crop / random_hflip / normalize and the train/eval transforms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from calikd.data import (
    build_eval_transform,
    build_train_transform,
    dataset_info,
    normalize,
    random_crop,
    random_hflip,
)
from calikd.errors import ConfigError


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _batch(b: int = 16, c: int = 2, h: int = 5, w: int = 6) -> torch.Tensor:
    return (
        torch.arange(1, b * c * h * w + 1, dtype=torch.int64)
        .remainder(251)
        .add(1)
        .to(torch.uint8)
        .view(b, c, h, w)
    )


def test_crop_is_a_shifted_window_of_the_padded_input() -> None:
    x, p = _batch(), 2
    out = random_crop(x, p, _gen(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = F.pad(x, (p, p, p, p))
    offsets = set()
    for i in range(x.shape[0]):
        matches = [
            (dy, dx)
            for dy in range(2 * p + 1)
            for dx in range(2 * p + 1)
            if torch.equal(out[i], padded[i, :, dy : dy + x.shape[2], dx : dx + x.shape[3]])
        ]
        assert len(matches) == 1, f"sample {i} is not a window of the padded input"
        offsets.add(matches[0])
    assert len(offsets) > 3  # offsets are drawn per sample


def test_crop_is_reproducible_and_zero_padding_keeps_input() -> None:
    x = _batch()
    assert torch.equal(random_crop(x, 3, _gen(5)), random_crop(x, 3, _gen(5)))
    assert not torch.equal(random_crop(x, 3, _gen(5)), random_crop(x, 3, _gen(6)))
    assert random_crop(x, 0, _gen()) is x
    with pytest.raises(ConfigError, match="padding"):
        random_crop(x, -1, _gen())
    with pytest.raises(ConfigError, match=r"\(B, C, H, W\)"):
        random_crop(x[0], 1, _gen())


def test_hflip_flips_exactly_the_chosen_samples() -> None:
    x = _batch(32)
    out = random_hflip(x, _gen(3))
    chosen = torch.rand(32, generator=_gen(3)) < 0.5  # the draw random_hflip makes
    assert 0 < int(chosen.sum()) < 32
    for i in range(32):
        assert torch.equal(out[i], x[i].flip(-1) if chosen[i] else x[i])
    assert torch.equal(random_hflip(x, _gen(), p=0.0), x)
    assert torch.equal(random_hflip(x, _gen(), p=1.0), x.flip(-1))


def test_normalize() -> None:
    x = torch.tensor([[[[0, 255]], [[51, 102]]]], dtype=torch.uint8)
    out = normalize(x, (0.5, 0.2), (0.5, 0.1))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.tensor([[[[-1.0, 1.0]], [[0.0, 2.0]]]]))
    torch.testing.assert_close(normalize(x.float() / 255, (0.5, 0.2), (0.5, 0.1)), out)
    with pytest.raises(ConfigError, match="2 channels"):
        normalize(x, (0.5,), (0.5,))


def test_transforms_use_info_defaults_and_overrides() -> None:
    info = dataset_info("cifar10")
    train = build_train_transform(info)
    assert train.crop_padding == 4 and train.hflip is True
    assert build_train_transform(info, crop_padding=0, hflip=False).hflip is False
    assert build_train_transform(dataset_info("mnist")).hflip is False
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    y = train(x, _gen())
    assert y.shape == x.shape and y.dtype == torch.float32
    assert torch.equal(train(x, _gen(9)), train(x, _gen(9)))
    ev = build_eval_transform(info)
    torch.testing.assert_close(ev(x), normalize(x, info.mean, info.std))
    plain = build_train_transform(info, crop_padding=0, hflip=False)
    torch.testing.assert_close(plain(x, _gen()), ev(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_augmentation_stays_on_device() -> None:
    x = _batch().cuda()
    g = torch.Generator(device="cuda").manual_seed(0)
    for out in (
        random_crop(x, 2, g),
        random_hflip(x, g),
        build_train_transform(dataset_info("mnist"))(x[:, :1], g),
    ):
        assert out.is_cuda
