"""Every metric on small inputs whose values are worked out by hand in the comments."""

from __future__ import annotations

import math

import pytest
import torch

from calikd.metrics import (
    accuracy,
    adaptive_calibration_error,
    bin_indices,
    brier_score,
    calibration_report,
    classwise_ece,
    ece_decomposition,
    expected_calibration_error,
    mass_edges,
    maximum_calibration_error,
    negative_log_likelihood,
    overconfidence_error,
    per_sample_entropy,
    predictive_entropy,
    reliability_statistics,
    top_k_accuracy,
)

EXACT = 1e-12


def probs(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


# Six binary predictions (confidence, correct):
#   0.90 (1), 0.85 (0) -> bin (0.8, 1.0]: conf 0.875, acc 0.5, gap +0.375
#   0.70 (1), 0.65 (0) -> bin (0.6, 0.8]: conf 0.675, acc 0.5, gap +0.175
#   0.55 (1), 0.60 (1) -> bin (0.4, 0.6]: conf 0.575, acc 1.0, gap -0.425  (0.60 sits exactly on an edge)
SIX = probs([[0.9, 0.1], [0.85, 0.15], [0.3, 0.7], [0.35, 0.65], [0.45, 0.55], [0.6, 0.4]])
SIX_Y = torch.tensor([0, 1, 1, 0, 1, 0])


def test_ece_family_equal_width_by_hand() -> None:
    kw = {"n_bins": 5, "from_probs": True}
    # ECE = (2/6)(0.375 + 0.175 + 0.425) = 0.975 / 3
    assert expected_calibration_error(SIX, SIX_Y, **kw) == pytest.approx(0.975 / 3, abs=EXACT)
    # MCE = max(0.375, 0.175, 0.425)
    assert maximum_calibration_error(SIX, SIX_Y, **kw) == pytest.approx(0.425, abs=EXACT)
    # L2 = sqrt((1/3)(0.375^2 + 0.175^2 + 0.425^2)) = sqrt(0.351875 / 3)
    l2 = expected_calibration_error(SIX, SIX_Y, norm="l2", **kw)
    assert l2 == pytest.approx(math.sqrt(0.351875 / 3), abs=EXACT)
    # over = (1/3)(0.375 + 0.175), under = (1/3)(0.425)
    over, under = ece_decomposition(SIX, SIX_Y, **kw)
    assert over == pytest.approx(0.55 / 3, abs=EXACT)
    assert under == pytest.approx(0.425 / 3, abs=EXACT)
    # OE = (1/3)(0.875 * 0.375 + 0.675 * 0.175) = 0.44625 / 3
    assert overconfidence_error(SIX, SIX_Y, **kw) == pytest.approx(0.44625 / 3, abs=EXACT)
    assert accuracy(SIX, SIX_Y, from_probs=True) == pytest.approx(4 / 6, abs=EXACT)


def test_ace_equal_mass_by_hand() -> None:
    # sorted confidences: 0.55(1) 0.60(1) 0.65(0) 0.70(1) 0.85(0) 0.90(1)
    # 2 bins of 3: conf 0.6 vs acc 2/3 (gap 1/15); conf 0.81666.. vs acc 2/3 (gap 0.15)
    ace = adaptive_calibration_error(SIX, SIX_Y, n_bins=2, from_probs=True)
    assert ace == pytest.approx(0.5 * (1 / 15) + 0.5 * 0.15, abs=EXACT)
    # 4 bins, N mod 4 = 2: sizes 2, 2, 1, 1 -> gaps -0.425, +0.175, +0.85, -0.10
    # ACE = (2 * 0.425 + 2 * 0.175 + 0.85 + 0.10) / 6 = 2.15 / 6
    ace4 = adaptive_calibration_error(SIX, SIX_Y, n_bins=4, from_probs=True)
    assert ace4 == pytest.approx(2.15 / 6, abs=EXACT)
    stats = reliability_statistics(SIX, SIX_Y, n_bins=4, binning="mass", from_probs=True)
    assert stats.count == (2, 2, 1, 1)
    assert stats.hi == pytest.approx((0.6, 0.7, 0.85, 1.0))
    assert stats.lo[0] == 0.0


def test_ace_ties_go_to_the_lower_bin() -> None:
    # confidences 0.5(1) 0.5(0) 0.5(1) 0.8(1); 2 nominal runs of 2 cut the tie -> edge 0.5, and all three
    # 0.5s go to (0, 0.5]: conf 0.5 acc 2/3 (w 3/4), then 0.8 acc 1 (w 1/4)
    p = probs([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.1, 0.8, 0.1]])
    y = torch.tensor([0, 1, 0, 1])
    assert adaptive_calibration_error(p, y, n_bins=2, from_probs=True) == pytest.approx(
        0.75 * (1 / 6) + 0.25 * 0.2, abs=EXACT
    )
    stats = reliability_statistics(p, y, n_bins=2, binning="mass", from_probs=True)
    assert stats.count == (3, 1)
    # all tied: 3 bins, nominal sizes 2, 1, 1 -> edges 0, 0.5, 0.5, 1: (0.5, 0.5] and (0.5, 1] are empty
    tied = reliability_statistics(p[:3], y[:3], n_bins=3, binning="mass", from_probs=True)
    assert tied.count == (3, 0, 0)
    assert math.isnan(tied.accuracy[1]) and math.isnan(tied.mean_confidence[2])


def test_mass_edges_remainder_rule() -> None:
    conf = torch.arange(1, 11, dtype=torch.float64) / 10  # 0.1 .. 1.0, N = 10
    # 3 bins: sizes 4, 3, 3 (the first N mod 3 = 1 bin gets one extra) -> upper edges 0.4, 0.7
    assert mass_edges(conf, 3).tolist() == pytest.approx([0.0, 0.4, 0.7, 1.0])
    assert mass_edges(conf.flip(0), 3).tolist() == pytest.approx([0.0, 0.4, 0.7, 1.0])
    # N < n_bins: one sample per bin, then empty bins
    assert mass_edges(conf[:2], 4).tolist() == pytest.approx([0.0, 0.1, 0.2, 0.2, 1.0])


def test_bin_edges_exact_values() -> None:
    # (lo, hi]: 0 -> first bin, an edge -> the lower bin, just above an edge -> the upper bin, 1.0 -> last bin
    conf = torch.tensor([0.0, 0.2, 0.2 + 1e-12, 0.6, 0.99, 1.0], dtype=torch.float64)
    assert bin_indices(conf, 5).tolist() == [0, 0, 1, 2, 4, 4]
    # a float32 confidence of exactly 1.0 from a softmax lands in the last bin
    logits = torch.tensor([[0.0, -200.0], [0.0, -200.0]], dtype=torch.float32)
    stats = reliability_statistics(logits, torch.tensor([0, 1]), n_bins=15)
    assert stats.count[-1] == 2 and sum(stats.count) == 2
    assert stats.mean_confidence[-1] == 1.0 and stats.accuracy[-1] == 0.5


def test_classwise_ece_by_hand() -> None:
    # class 0: p = .6 .2 .1, hits 1 0 0 -> bin (.5,1]: |.6 - 1| * 1/3; bin (0,.5]: |.15 - 0| * 2/3 -> 0.7/3
    # class 1: p = .3 .5 .2, hits 0 0 0 -> all in (0,.5] (0.5 on the edge): |1/3 - 0| * 1 -> 1/3
    # class 2: p = .1 .3 .7, hits 0 1 1 -> (0,.5]: |.2 - .5| * 2/3 = .2; (.5,1]: |.7 - 1| * 1/3 = .1 -> .3
    p = probs([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7]])
    y = torch.tensor([0, 2, 2])
    expected = (0.7 / 3 + 1 / 3 + 0.3) / 3
    assert classwise_ece(p, y, n_bins=2, from_probs=True) == pytest.approx(expected, abs=EXACT)
    assert classwise_ece(p.log(), y, n_bins=2) == pytest.approx(expected, abs=1e-9)


def test_brier_nll_entropy_by_hand() -> None:
    p = probs([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]])
    y = torch.tensor([0, 2])
    # Brier: (.3^2 + .2^2 + .1^2) = 0.14 and (.1^2 + .6^2 + .7^2) = 0.86 -> mean 0.5
    assert brier_score(p, y, from_probs=True) == pytest.approx(0.5, abs=EXACT)
    assert brier_score(p.log(), y) == pytest.approx(0.5, abs=1e-12)
    # certain and wrong: 1 + 1 = 2; certain and right: 0
    certain = torch.tensor([[0.0, -1000.0], [0.0, -1000.0]], dtype=torch.float64)
    assert brier_score(certain, torch.tensor([1, 1])) == 2.0
    assert brier_score(certain, torch.tensor([0, 0])) == 0.0
    nll = -(math.log(0.7) + math.log(0.3)) / 2
    assert negative_log_likelihood(p, y, from_probs=True) == pytest.approx(nll, abs=EXACT)
    assert negative_log_likelihood(p.log(), y) == pytest.approx(nll, abs=1e-12)
    h0 = -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1))
    h1 = -(0.1 * math.log(0.1) + 0.6 * math.log(0.6) + 0.3 * math.log(0.3))
    assert per_sample_entropy(p.log()).tolist() == pytest.approx([h0, h1], abs=1e-12)
    assert predictive_entropy(p, from_probs=True) == pytest.approx((h0 + h1) / 2, abs=EXACT)
    # uniform: log C; a zero probability contributes 0 (0 log 0 = 0)
    assert predictive_entropy(torch.zeros(3, 4)) == pytest.approx(math.log(4), abs=1e-7)
    assert predictive_entropy(probs([[1.0, 0.0]]), from_probs=True) == 0.0


def test_top_k_ties_break_by_class_index() -> None:
    # row [1, 3, 3, 0]: order by (logit desc, index asc) is 1, 2, 0, 3
    x = torch.tensor([[1.0, 3.0, 3.0, 0.0]] * 4)
    y = torch.tensor([1, 2, 0, 3])  # ranks 0, 1, 2, 3
    assert [top_k_accuracy(x, y, k) for k in (1, 2, 3, 4)] == [0.25, 0.5, 0.75, 1.0]
    assert accuracy(x, y) == 0.25  # argmax picks the first of the tied maxima
    flat = torch.zeros(1, 5)
    assert top_k_accuracy(flat, torch.tensor([4]), 4) == 0.0
    assert top_k_accuracy(flat, torch.tensor([4]), 5) == 1.0
    assert top_k_accuracy(flat, torch.tensor([0]), 1) == 1.0


def test_report_matches_the_hand_values() -> None:
    rep = calibration_report(SIX, SIX_Y, n_bins=5, from_probs=True)
    assert rep.ece == pytest.approx(0.975 / 3, abs=EXACT)
    assert rep.mce == pytest.approx(0.425, abs=EXACT)
    assert rep.oe == pytest.approx(0.44625 / 3, abs=EXACT)
    assert rep.top5 is None and rep.num_classes == 2 and rep.n_samples == 6
    assert rep.reliability.count == (0, 0, 2, 2, 2)
    assert rep.reliability.gap[2:] == pytest.approx((-0.425, 0.175, 0.375), abs=EXACT)
    assert rep.reliability.hi == pytest.approx((0.2, 0.4, 0.6, 0.8, 1.0))
