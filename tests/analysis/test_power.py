"""Power of the paired t-test and the minimum detectable effect, against statsmodels' exact values.

Reference values from ``statsmodels.stats.power.TTestPower`` (statsmodels 0.14, SciPy's noncentral t):
``TTestPower().power(effect_size=d, nobs=n, alpha=a)`` and ``.solve_power(nobs=n, alpha=a, power=p)``.
"""

from __future__ import annotations

import math

import pytest

from calikd.analysis import minimum_detectable_effect, paired_difference, paired_power
from calikd.errors import ConfigError

# (n, alpha, effect size d) -> power
POWER = [
    (2, 0.05, 1.0, 0.09280915505633597),
    (3, 0.05, 1.0, 0.1792553937765517),
    (5, 0.05, 1.0, 0.4013899173717948),
    (10, 0.05, 1.0, 0.8030968566327218),
    (30, 0.05, 1.0, 0.9995636009612033),
    (6, 0.05, 0.7, 0.2867461553147744),
    (3, 0.01, 2.5, 0.1784913695621124),
]
# (n, alpha, power) -> effect size
MDE = [
    (2, 0.05, 0.8, 11.549889754978167),
    (3, 0.05, 0.8, 3.264043552819638),
    (5, 0.05, 0.8, 1.6819970833232674),
    (10, 0.05, 0.8, 0.9960019107624178),
    (30, 0.05, 0.8, 0.5292357045238948),
    (4, 0.10, 0.9, 1.9641031503580972),
    (20, 0.05, 0.95, 0.8504183513830932),
]


@pytest.mark.parametrize(("n", "alpha", "d", "expected"), POWER)
def test_power_matches_the_noncentral_t(n, alpha, d, expected):
    assert paired_power(d, n, alpha=alpha) == pytest.approx(expected, rel=1e-7)
    assert paired_power(-d, n, alpha=alpha) == pytest.approx(expected, rel=1e-7)  # two-sided


def test_power_at_zero_effect_is_the_level():
    assert paired_power(0.0, 4, alpha=0.05) == pytest.approx(0.05, abs=1e-9)


@pytest.mark.parametrize(("n", "alpha", "power", "expected"), MDE)
def test_minimum_detectable_effect_matches_statsmodels(n, alpha, power, expected):
    e = minimum_detectable_effect(n, 0.02, alpha=alpha, power=power)
    assert e.effect_size == pytest.approx(expected, rel=1e-6)
    assert e.mde == pytest.approx(0.02 * expected, rel=1e-6)
    assert paired_power(e.effect_size, n, alpha=alpha) == pytest.approx(power, abs=1e-9)


def test_mde_shrinks_with_more_pairs_and_is_far_above_the_normal_approximation_for_few_seeds():
    sizes = [minimum_detectable_effect(n).effect_size for n in (2, 3, 5, 10, 50)]
    assert sizes == sorted(sizes, reverse=True)
    normal = (1.959963984540054 + 0.8416212335729143) / math.sqrt(3)
    assert sizes[1] > 2 * normal  # 3 seeds: the normal formula would promise 1.62 sd; the truth is 3.26
    assert minimum_detectable_effect(3).mde is None


def test_paired_difference_carries_the_mde_of_its_observed_std():
    a = [0.80, 0.81, 0.79, 0.82]
    b = [0.81, 0.83, 0.80, 0.82]
    d = paired_difference(a, b)
    assert d.power == 0.8
    assert d.mde == pytest.approx(minimum_detectable_effect(4).effect_size * d.std)
    assert d.to_dict()["mde"] == d.mde
    loose = paired_difference(a, b, confidence=0.9, power=0.9)
    assert loose.mde == pytest.approx(1.9641031503580972 * d.std, rel=1e-6)
    assert paired_difference([0.1, 0.2], [0.2, 0.3]).mde == 0.0  # identical differences: no noise


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: paired_power(1.0, 1), "at least 2 pairs"),
        (lambda: paired_power(float("nan"), 3), "effect_size"),
        (lambda: paired_power(1.0, 3, alpha=1.5), "alpha"),
        (lambda: minimum_detectable_effect(3, -1.0), "std"),
        (lambda: minimum_detectable_effect(3, power=0.01, alpha=0.05), "power must exceed alpha"),
        (lambda: minimum_detectable_effect(True), "at least 2 pairs"),
        (lambda: paired_difference([1, 2], [2, 3], power=1.0), "power"),
    ],
)
def test_bad_input_is_a_clear_error(call, match):
    with pytest.raises(ConfigError, match=match):
        call()
