"""``transform_unchecked``: the per-batch path skips the input checks (a host sync each) and gives the same
numbers as ``transform``, which keeps its checks."""

from __future__ import annotations

from unittest import mock

import pytest
import torch

import calikd.calibration.base as base
from calikd.calibration import create_calibrator, list_calibrators
from calikd.errors import ConfigError


@pytest.mark.parametrize("name", list_calibrators())
def test_same_numbers_without_the_checks(name: str, synthetic) -> None:
    logits, labels = synthetic(300, 4, 1.5, seed=3)
    cal = create_calibrator(name).fit(logits, labels, split="val")
    batch = logits[:64]
    with mock.patch.object(base, "_check_values", wraps=base._check_values) as check:
        checked = cal.transform(batch)
        assert check.call_count == 1  # the public API checks its input
        unchecked = cal.transform_unchecked(batch)
        assert check.call_count == 1  # the internal path does not
    assert torch.equal(checked, unchecked) and unchecked.dtype == torch.float32


def test_public_transform_still_refuses_bad_values(synthetic) -> None:
    logits, labels = synthetic(300, 4, 1.5, seed=3)
    cal = create_calibrator("temperature").fit(logits, labels, split="val")
    bad = logits[:8].clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ConfigError, match="NaN or inf"):
        cal.transform(bad)
    assert torch.isnan(cal.transform_unchecked(bad)[0, 0])  # unchecked: the caller's responsibility
    with pytest.raises(ConfigError, match="fitted on 4 classes, got 5"):
        cal.transform_unchecked(torch.randn(2, 5))  # the class count costs no sync and stays checked


def test_unfitted_is_refused_on_both_paths() -> None:
    cal = create_calibrator("temperature")
    with pytest.raises(ConfigError, match="not fitted yet"):
        cal.transform_unchecked(torch.randn(2, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA to detect host syncs")
def test_no_host_sync_on_cuda(synthetic) -> None:
    logits, labels = synthetic(300, 4, 1.5, seed=3)
    cal = create_calibrator("temperature").fit(logits, labels, split="val")
    batch = logits[:64].cuda()
    cal.transform_unchecked(batch)  # warm up (first CUDA calls may sync)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = cal.transform_unchecked(batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.equal(out.cpu(), cal.transform(logits[:64]))
