"""Histogram binning by hand; our pool-adjacent-violators against scikit-learn (a test-only dependency)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from calikd.calibration import HistogramBinning, IsotonicRegression
from calikd.calibration.isotonic import isotonic_fit, isotonic_predict, pav

sklearn_isotonic = pytest.importorskip("sklearn.isotonic")


def test_pav_matches_sklearn_with_weights() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 100, 2000):
        y = rng.normal(size=n) + np.linspace(0, 2, n)
        w = rng.uniform(0.1, 3.0, size=n)
        ours = pav(y, w)
        ref = sklearn_isotonic.isotonic_regression(y, sample_weight=w)
        assert np.max(np.abs(ours - ref)) < 1e-9
        assert np.all(np.diff(ours) >= 0)


def test_pav_by_hand() -> None:
    # 1, 3, 2, 4 -> the violators 3, 2 pool to 2.5; 5, 1, 1 -> 7/3
    assert np.allclose(pav(np.array([1.0, 3.0, 2.0, 4.0])), [1.0, 2.5, 2.5, 4.0], atol=1e-15)
    assert np.allclose(pav(np.array([5.0, 1.0, 1.0])), [7 / 3] * 3, atol=1e-15)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_isotonic_fit_and_predict_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 1500
    x = np.round(rng.uniform(size=n), 3)  # many ties
    y = (rng.uniform(size=n) < x**2).astype(np.float64)
    xs, ys = isotonic_fit(x, y)
    ref = sklearn_isotonic.IsotonicRegression(out_of_bounds="clip").fit(x, y)
    queries = np.concatenate([x, rng.uniform(-0.1, 1.1, size=500), [0.0, 1.0]])
    assert np.max(np.abs(isotonic_predict(xs, ys, queries) - ref.predict(queries))) < 1e-9


def test_isotonic_calibrator_is_one_vs_rest_sklearn_renormalised(synthetic) -> None:
    logits, labels = synthetic(1200, 4, 2.0, seed=3)
    cal = IsotonicRegression().fit(logits, labels)
    probs = torch.softmax(logits.double(), dim=1).numpy()
    q = np.empty_like(probs)
    for c in range(4):
        ref = sklearn_isotonic.IsotonicRegression(out_of_bounds="clip").fit(probs[:, c], labels.numpy() == c)
        q[:, c] = np.maximum(ref.predict(probs[:, c]), 1e-6)
    expected = np.log(q / q.sum(1, keepdims=True))
    z = torch.as_tensor(logits, dtype=torch.float64)
    assert np.max(np.abs(cal._transform(z).numpy() - expected)) < 1e-9  # float64 internals
    out = cal.transform(logits)  # float32 at the boundary
    assert out.dtype == torch.float32
    assert np.max(np.abs(out.double().numpy() - expected)) < 1e-5
    assert torch.allclose(out.double().exp().sum(1), torch.ones(1200, dtype=torch.float64), atol=1e-5)
    assert cal.record["nll_after"] < cal.record["nll_before"]


def _logits(probs: list[list[float]]) -> torch.Tensor:
    return torch.tensor(probs, dtype=torch.float64).log()


def test_histogram_binning_by_hand() -> None:
    # class-1 probabilities .2, .4, .6, .8, .9 with labels 0, 1, 1, 1, 0; equal-width bins (0, .5], (.5, 1]
    p1 = [0.2, 0.4, 0.6, 0.8, 0.9]
    logits = _logits([[1 - p, p] for p in p1])
    labels = torch.tensor([0, 1, 1, 1, 0])
    cal = HistogramBinning(n_bins=2).fit(logits, labels)
    # class 1: bin 0 holds p1 = .2 (y=0), .4 (y=1) -> 1/2; bin 1 holds .6, .8 (y=1), .9 (y=0) -> 2/3
    # class 0: p0 = .8, .6, .4, .2, .1, class 0 for samples 0 and 4: bin 0 holds .4, .2, .1 -> 1/3;
    # bin 1 holds .8, .6 -> 1/2
    assert torch.allclose(cal.values, torch.tensor([[1 / 3, 1 / 2], [1 / 2, 2 / 3]], dtype=torch.float64))
    out = cal.transform(_logits([[0.8, 0.2], [0.1, 0.9], [0.45, 0.55]])).double().exp()
    # (q0, q1) = (1/2, 1/2) -> (.5, .5); (1/3, 2/3) -> (1/3, 2/3); p0 = .45 -> 1/3, p1 = .55 -> 2/3
    expected = torch.tensor([[0.5, 0.5], [1 / 3, 2 / 3], [1 / 3, 2 / 3]], dtype=torch.float64)
    assert torch.allclose(out, expected, atol=1e-6)
    assert cal.record["empty_bins"] == 0


def test_empty_bins_get_their_midpoint_and_zero_bins_the_floor() -> None:
    rows = [[0.75, 0.25], [0.35, 0.65], [0.72, 0.28], [0.18, 0.82]]
    logits = _logits(rows * 3)  # repeated: same frequencies, and enough samples for 10 bins
    labels = torch.tensor([0, 1, 1, 1] * 3)
    cal = HistogramBinning(n_bins=10, floor=1e-6).fit(logits, labels)
    # class 1: bin (.2, .3] holds .25 (y=0) and .28 (y=1) -> 1/2; bin (.6, .7] holds .65 (y=1) -> 1
    assert float(cal.values[1, 2]) == pytest.approx(0.5)
    assert float(cal.values[1, 6]) == pytest.approx(1.0)
    assert float(cal.values[1, 0]) == pytest.approx(0.05)  # the empty bin (0, .1] gets its midpoint
    # class 0: bin (.7, .8] holds .75 (y=0) and .72 (y=1) -> 1/2; bin (.3, .4] holds .35 (y=1) -> 0
    assert float(cal.values[0, 7]) == pytest.approx(0.5)
    assert float(cal.values[0, 3]) == 0.0
    out = cal.transform(_logits([[0.35, 0.65]])).double().exp()  # q = (0 -> floor 1e-6, 1), renormalised
    assert torch.allclose(out, torch.tensor([[1e-6 / (1 + 1e-6), 1 / (1 + 1e-6)]], dtype=torch.float64))
    assert cal.record["empty_bins"] > 0


def test_equal_mass_bins_hold_equal_counts(synthetic) -> None:
    logits, labels = synthetic(1000, 3, 1.5, seed=4)
    cal = HistogramBinning(n_bins=5, binning="mass").fit(logits, labels)
    probs = torch.softmax(logits.double(), dim=1)
    for c in range(3):
        idx = torch.searchsorted(cal.edges[c].contiguous(), probs[:, c].contiguous())
        counts = torch.bincount(idx, minlength=5)
        assert int(counts.min()) >= 199 and int(counts.max()) <= 201
        freq = torch.stack([(labels[idx == m] == c).double().mean() for m in range(5)])
        assert torch.allclose(cal.values[c], freq)


def test_histogram_improves_calibration_of_overconfident_logits(synthetic) -> None:
    logits, labels = synthetic(4000, 5, 2.5, seed=5)
    rec = HistogramBinning().fit(logits, labels).record
    assert rec["ece_after"] < rec["ece_before"] / 2
    assert math.isfinite(rec["nll_after"])
