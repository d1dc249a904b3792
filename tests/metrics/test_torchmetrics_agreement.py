"""Agreement with torchmetrics' ``MulticlassCalibrationError`` where the definitions coincide, and the
documented places where they differ.

torchmetrics bins with ``torch.bucketize(conf, linspace(0, 1, n + 1), right=True) - 1``: intervals
``[lo, hi)`` on float32 edges, and a confidence of exactly 1.0 gets a phantom bin ``n`` of its own. calikd
uses ``(lo, hi]`` on float64 edges with 1.0 in the last bin. Away from the edges the two agree.
"""

from __future__ import annotations

import pytest
import torch
from torchmetrics.classification import MulticlassCalibrationError

from calikd.metrics import expected_calibration_error, maximum_calibration_error

N_BINS = 15


def torchmetrics_ce(logits: torch.Tensor, labels: torch.Tensor, n_bins: int, norm: str) -> float:
    metric = MulticlassCalibrationError(num_classes=logits.shape[1], n_bins=n_bins, norm=norm)
    metric.update(torch.softmax(logits.double(), dim=1), labels)
    return float(metric.compute())


def away_from_edges(n: int, c: int, scale: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random float64 logits whose confidences are >= 1e-5 away from every edge k / N_BINS (and from 1)."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(4 * n, c, generator=gen, dtype=torch.float64) * scale
    conf = torch.softmax(logits, dim=1).amax(dim=1)
    dist = ((conf * N_BINS) - (conf * N_BINS).round()).abs() / N_BINS
    keep = (dist > 1e-5).nonzero().squeeze(1)[:n]
    assert len(keep) == n
    labels = torch.randint(0, c, (n,), generator=gen)
    # make accuracy realistic: the label is the argmax for about 60% of the samples
    argmax = logits[keep].argmax(dim=1)
    labels = torch.where(torch.rand(n, generator=gen) < 0.6, argmax, labels)
    return logits[keep], labels


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
@pytest.mark.parametrize(("c", "scale", "seed"), [(10, 2.0, 0), (100, 4.0, 1), (3, 1.0, 2)])
def test_agrees_with_torchmetrics_away_from_edges(norm: str, c: int, scale: float, seed: int) -> None:
    logits, labels = away_from_edges(3000, c, scale, seed)
    ours = expected_calibration_error(logits, labels, N_BINS, norm)
    assert ours == pytest.approx(torchmetrics_ce(logits, labels, N_BINS, norm), abs=1e-6)
    # float32 logits: both use float32 confidences; still the same bins
    ours32 = expected_calibration_error(logits.float(), labels, N_BINS, norm)
    assert ours32 == pytest.approx(torchmetrics_ce(logits.float(), labels, N_BINS, norm), abs=1e-6)


def test_differs_at_confidence_exactly_one() -> None:
    # [0, -200] in float32: exp(-200) underflows, so the confidence is exactly 1.0.
    # sample A: conf 1.0, wrong; sample B: conf 0.95, right (both in (14/15, 1]).
    logits = torch.tensor([[0.0, -200.0], [0.95, 0.05]], dtype=torch.float32)
    logits[1] = logits[1].log()
    labels = torch.tensor([1, 0])
    conf_b = float(torch.softmax(logits[1], 0).max())
    # calikd: one bin, conf (1 + conf_b) / 2, acc 1/2 -> ECE = |(1 + conf_b)/2 - 1/2| = conf_b / 2
    assert expected_calibration_error(logits, labels) == pytest.approx(conf_b / 2, abs=1e-7)
    # torchmetrics: 1.0 goes to a phantom 16th bin -> 0.5 * |1 - 0| + 0.5 * |conf_b - 1|
    theirs = torchmetrics_ce(logits, labels, N_BINS, "l1")
    assert theirs == pytest.approx(0.5 + 0.5 * (1 - conf_b), abs=1e-6)
    # MCE differs too: calikd's single bin has gap conf_b / 2, torchmetrics' phantom bin gap 1
    assert maximum_calibration_error(logits, labels) == pytest.approx(conf_b / 2, abs=1e-7)
    assert torchmetrics_ce(logits, labels, N_BINS, "max") == pytest.approx(1.0, abs=1e-6)


def test_differs_at_confidence_exactly_on_an_edge() -> None:
    # n_bins = 10; torchmetrics' float32 edge 5/10 is exactly 0.5 (checked), and so is the confidence of
    # logits [0, 0] in both libraries.
    assert float(torch.linspace(0, 1, 11)[5]) == 0.5
    logits = torch.tensor([[0.0, 0.0], [0.55, 0.45]], dtype=torch.float64)
    logits[1] = logits[1].log()
    labels = torch.tensor([0, 1])  # A: conf 0.5, right (argmax = 0); B: conf 0.55, wrong
    # calikd, (lo, hi]: A in (0.4, 0.5] (gap 0.5), B in (0.5, 0.6] (gap 0.55) -> 0.5 * 0.5 + 0.5 * 0.55
    assert expected_calibration_error(logits, labels, 10) == pytest.approx(0.525, abs=1e-12)
    # torchmetrics, [lo, hi): both in [0.5, 0.6): conf 0.525, acc 0.5 -> 0.025
    assert torchmetrics_ce(logits, labels, 10, "l1") == pytest.approx(0.025, abs=1e-6)
