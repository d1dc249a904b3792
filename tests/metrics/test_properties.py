"""Property-based checks (hypothesis) of the metrics on arbitrary small inputs: ranges and identities, and
invariance to sample order, chunking and passing probabilities instead of logits (derandomized: the same
inputs every run)."""

from __future__ import annotations

import math

import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from calikd.metrics import (
    CalibrationReport,
    calibration_report,
    expected_calibration_error,
    looks_like_probabilities,
    mass_edges,
    reliability_statistics,
    top_k_accuracy,
)

TOL = 1e-12


@st.composite
def predictions(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, int]:
    n = draw(st.integers(1, 40))
    c = draw(st.integers(1, 6))
    # quarter-integer logits: plenty of exact ties, among classes and among confidences
    values = draw(st.lists(st.integers(-60, 60), min_size=n * c, max_size=n * c))
    logits = torch.tensor(values, dtype=torch.float64).reshape(n, c) / 4
    labels = torch.tensor(draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    n_bins = draw(st.integers(1, 20))
    assume(not looks_like_probabilities(logits))
    return logits, labels, n_bins


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(predictions())
def test_ranges_and_identities(case: tuple[torch.Tensor, torch.Tensor, int]) -> None:
    logits, labels, n_bins = case
    rep = calibration_report(logits, labels, n_bins)
    for name in ("ece", "ace", "mce", "ece_l2", "classwise_ece", "oe", "ece_over", "ece_under", "accuracy"):
        assert 0.0 <= getattr(rep, name) <= 1.0, name
    assert rep.mce >= rep.ece - TOL
    assert rep.ece - TOL <= rep.ece_l2 <= rep.mce + TOL  # Jensen: L1 <= L2 <= max
    assert math.isclose(rep.ece_over + rep.ece_under, rep.ece, abs_tol=TOL)
    assert rep.oe <= rep.ece_over + TOL
    assert 0.0 <= rep.brier <= 2.0
    assert 0.0 <= rep.entropy <= math.log(rep.num_classes) + TOL
    assert rep.nll >= 0.0
    assert sum(rep.reliability.count) == sum(rep.reliability_adaptive.count) == len(labels)
    mass_mce = expected_calibration_error(logits, labels, n_bins, "max", "mass")
    assert mass_mce >= rep.ace - TOL


@settings(max_examples=60, deadline=None, derandomize=True)
@given(predictions())
def test_top_k_is_monotone_and_complete(case: tuple[torch.Tensor, torch.Tensor, int]) -> None:
    logits, labels, _ = case
    c = logits.shape[1]
    accs = [top_k_accuracy(logits, labels, k) for k in range(1, c + 1)]
    assert accs == sorted(accs)
    assert accs[-1] == 1.0
    assert accs[0] == calibration_report(logits, labels).accuracy


@settings(max_examples=80, deadline=None, derandomize=True)
@given(st.lists(st.integers(1, 8), min_size=1, max_size=60), st.integers(1, 12))
def test_mass_bins_never_split_ties_and_hold_nominal_sizes(values: list[int], n_bins: int) -> None:
    conf = torch.tensor(values, dtype=torch.float64) / 8
    edges = mass_edges(conf, n_bins)
    assert edges[0] == 0 and edges[-1] == 1 and bool((edges[1:] >= edges[:-1]).all())
    idx = torch.bucketize(conf, edges[1:-1])
    for v in conf.unique():
        assert idx[conf == v].unique().numel() == 1  # a tie never straddles two bins
    distinct = torch.arange(len(values), dtype=torch.float64) / len(values) + 1e-3
    counts = torch.bincount(torch.bucketize(distinct, mass_edges(distinct, n_bins)[1:-1]), minlength=n_bins)
    q, r = divmod(len(values), n_bins)
    assert counts.tolist() == [q + 1] * r + [q] * (n_bins - r)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(predictions())
def test_reliability_stats_reproduce_the_ece(case: tuple[torch.Tensor, torch.Tensor, int]) -> None:
    logits, labels, n_bins = case
    for binning in ("width", "mass"):
        stats = reliability_statistics(logits, labels, n_bins, binning)
        n = sum(stats.count)
        ece = sum(k / n * abs(g) for k, g in zip(stats.count, stats.gap, strict=True) if k)
        direct = expected_calibration_error(logits, labels, n_bins, "l1", binning)
        assert math.isclose(ece, direct, abs_tol=1e-12)


@st.composite
def with_permutation(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor, int]:
    logits, labels, n_bins = draw(predictions())
    perm = torch.tensor(draw(st.permutations(range(len(labels)))))
    return logits, labels, n_bins, perm, draw(st.integers(1, len(labels)))


def _assert_same_report(a: CalibrationReport, b: CalibrationReport, what: str) -> None:
    for key, value in a.scalars().items():
        other = b.scalars()[key]
        if isinstance(value, float):
            assert math.isclose(value, other, abs_tol=1e-12), (what, key, value, other)
        else:
            assert value == other, (what, key)
    for name in ("reliability", "reliability_adaptive"):
        assert getattr(a, name).count == getattr(b, name).count, (what, name)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(with_permutation())
def test_sample_order_and_chunking_change_nothing(case: tuple) -> None:
    # quarter-integer logits: many tied confidences, the hard case for equal-mass bins
    logits, labels, n_bins, perm, chunk = case
    whole = calibration_report(logits, labels, n_bins)
    _assert_same_report(whole, calibration_report(logits[perm], labels[perm], n_bins), "permuted")
    _assert_same_report(whole, calibration_report(logits, labels, n_bins, chunk_size=chunk), f"chunk {chunk}")


@st.composite
def grid_logits(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Logits on a 1/64 grid: exact ties or gaps far above rounding, so that the argmax of the logits and of
    their softmax agree."""
    n, c = draw(st.integers(1, 30)), draw(st.integers(2, 6))
    values = draw(st.lists(st.integers(-1280, 1280), min_size=n * c, max_size=n * c))
    labels = torch.tensor(draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    return torch.tensor(values, dtype=torch.float64).reshape(n, c) / 64, labels, draw(st.integers(1, 20))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(grid_logits())
def test_probabilities_and_logits_give_the_same_metrics(case: tuple) -> None:
    logits, labels, n_bins = case
    assume(not looks_like_probabilities(logits))
    a = calibration_report(logits, labels, n_bins)
    b = calibration_report(torch.softmax(logits, dim=1), labels, n_bins, from_probs=True)
    # a probability and its logit-path twin differ by rounding only (~1e-16); a confidence within that of
    # a bin edge could change bins, so the binned metrics are compared where no confidence is that close
    conf = torch.softmax(logits, dim=1).amax(dim=1)
    edges = torch.arange(n_bins + 1, dtype=torch.float64) / n_bins
    near_edge = bool(((conf[:, None] - edges).abs() < 1e-9).any())
    for key in ("accuracy", "nll", "brier", "entropy") + (
        () if near_edge else ("ece", "mce", "ece_l2", "oe")
    ):
        assert math.isclose(getattr(a, key), getattr(b, key), rel_tol=1e-9, abs_tol=1e-9), key
