"""paired_difference(), mean_std() and format_mean_std() against formulas written out."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from analysis_reference import t_cdf_by_integration

from calikd.analysis import format_mean_std, mean_std, paired_difference
from calikd.errors import ConfigError

T_975_10 = 2.228138851986  # t table, 10 df (checked in test_tdist)

A = np.array([0.912, 0.905, 0.921, 0.899, 0.915, 0.908, 0.917, 0.902, 0.911, 0.906, 0.913])
B = np.array([0.918, 0.905, 0.925, 0.907, 0.913, 0.914, 0.922, 0.909, 0.916, 0.904, 0.920])


def test_matches_paired_t_formulas() -> None:
    p = paired_difference(A, B, n_boot=0)
    d = B - A
    mean, std = d.mean(), math.sqrt(((d - d.mean()) ** 2).sum() / (len(d) - 1))
    sem = std / math.sqrt(11)
    assert p.n == 11 and p.mean == pytest.approx(mean, abs=1e-15) and p.std == pytest.approx(std, rel=1e-12)
    assert p.sem == pytest.approx(sem, rel=1e-12)
    assert p.ci == pytest.approx((mean - T_975_10 * sem, mean + T_975_10 * sem), abs=1e-12)
    assert p.t_stat == pytest.approx(mean / sem, rel=1e-12)
    assert p.p_value == pytest.approx(2 * (1 - t_cdf_by_integration(mean / sem, 10)), abs=1e-10)
    assert (p.wins, p.losses, p.ties) == (8, 2, 1)
    assert p.bootstrap_ci is None


def test_lower_is_better_swaps_wins_and_losses() -> None:
    p = paired_difference(A, B, n_boot=0, higher_is_better=False)
    assert (p.wins, p.losses, p.ties) == (2, 8, 1)
    assert p.mean == pytest.approx((B - A).mean())  # the difference is still b - a


def test_bootstrap_matches_reference_and_is_reproducible() -> None:
    p = paired_difference(A, B, n_boot=700, seed=3, confidence=0.9)
    d = B - A
    idx = np.random.default_rng(3).integers(0, 11, size=(700, 11))
    means = np.array([d[row].mean() for row in idx])
    assert p.bootstrap_ci == pytest.approx(tuple(np.quantile(means, [0.05, 0.95])), abs=1e-15)
    assert p.bootstrap_ci[0] < p.mean < p.bootstrap_ci[1]
    assert paired_difference(A, B, n_boot=700, seed=3, confidence=0.9) == p
    assert paired_difference(A, B, n_boot=700, seed=4, confidence=0.9).bootstrap_ci != p.bootstrap_ci


def test_identical_runs() -> None:
    p = paired_difference([0.1, 0.2, 0.3], [0.1, 0.2, 0.3])
    assert (p.mean, p.std, p.ci, p.t_stat, p.p_value) == (0.0, 0.0, (0.0, 0.0), 0.0, 1.0)
    assert (p.wins, p.losses, p.ties) == (0, 0, 3) and p.bootstrap_ci == (0.0, 0.0)


def test_constant_nonzero_difference_up_to_rounding() -> None:
    # 0.2 - 0.1, 0.3 - 0.2, 0.4 - 0.3 differ in the last bits: still a constant difference
    p = paired_difference([0.1, 0.2, 0.3], [0.2, 0.3, 0.4])
    assert p.std == 0.0 and p.t_stat == math.inf and p.p_value == 0.0
    assert p.ci[0] == p.ci[1] == pytest.approx(0.1)
    d = json.loads(json.dumps(p.to_dict(), allow_nan=False))
    assert d["t_stat"] is None and d["ci"] == list(p.ci)
    assert paired_difference([1.0, 2.0], [0.5, 1.5]).t_stat == -math.inf


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "match"),
    [
        ([0.9], [0.91], {}, "at least 2"),
        ([0.9, 0.8], [0.91], {}, "same length"),
        ([0.9, math.nan], [0.91, 0.8], {}, "NaN or inf"),
        ([0.9, 0.8], [0.91, 0.8], {"confidence": 0}, "confidence"),
        ([0.9, 0.8], [0.91, 0.8], {"n_boot": -5}, "n_boot"),
    ],
)
def test_errors(a, b, kwargs, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        paired_difference(a, b, **kwargs)


def test_mean_std() -> None:
    values = [0.91, 0.925, 0.918, 0.9]
    mean, std = mean_std(values)
    assert mean == pytest.approx(sum(values) / 4)
    assert std == pytest.approx(math.sqrt(sum((v - mean) ** 2 for v in values) / 3))
    single = mean_std([0.5])  # one seed: the sample std is undefined (NaN)
    assert single[0] == 0.5 and math.isnan(single[1])
    assert mean_std(np.array([0.1, 0.1, 0.1])) == (0.1, 0.0)


def test_format_mean_std() -> None:
    assert format_mean_std(*mean_std([0.9111, 0.9123, 0.9135])) == "0.9123 ± 0.0012"
    assert format_mean_std(*mean_std([0.9123])) == "0.9123"  # one seed: the mean alone
    assert format_mean_std(*mean_std([1.0, 3.0]), digits=1) == "2.0 ± 1.4"
    assert format_mean_std(*mean_std([72.5, 73.5]), digits=0) == "73 ± 1"
    assert format_mean_std(*mean_std([0.9111, 0.9135]), digits=2, scale=100) == "91.23 ± 0.17"
    assert format_mean_std(0.5) == "0.5000" and format_mean_std(None, 0.1) == "n/a"


@pytest.mark.parametrize(
    ("values", "digits", "match"),
    [
        ([], 4, "at least 1"),
        ([0.1, math.inf], 4, "NaN or inf"),
        ([0.1], -1, "digits"),
        ([0.1], 2.0, "digits"),
    ],
)
def test_mean_std_errors(values, digits, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        format_mean_std(*mean_std(values), digits=digits)
