"""The distiller's per-batch teacher calibration skips the calibrator's input checks (a host sync each)
and gives the numbers of the checked public ``transform``."""

from __future__ import annotations

from unittest import mock

import pytest
import torch
from torch import nn

import calikd.calibration.base as base
from calikd.calibration import create_calibrator
from calikd.distill.teacher import DistillTeacher


@pytest.mark.parametrize("method", ["temperature", "matrix", "histogram"])
def test_calibration_fn_does_not_check_each_batch(method: str) -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(300, 4, generator=gen) * 3
    labels = torch.multinomial(torch.softmax(logits / 1.5, dim=1), 1, generator=gen).squeeze(1)
    calibrator = create_calibrator(method).fit(logits, labels, split="val")
    teacher = DistillTeacher(nn.Identity(), {}, "t", "id", calibrator, method, "test")
    fn = teacher.calibration_fn()
    assert fn is not None
    batch = logits[:32]
    with mock.patch.object(base, "_check_values", wraps=base._check_values) as check:
        got = fn(batch)
        assert check.call_count == 0
    assert torch.equal(got, calibrator.transform(batch))
