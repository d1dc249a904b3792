r"""Power of the paired t-test and the minimum detectable effect (MDE) for a given number of pairs.

With ``n`` pairs, ``df = n - 1``, two-sided level ``alpha`` and ``c = t_{1 - alpha/2, df}``, a true mean
difference of ``delta`` standard deviations of the differences gives the test statistic a noncentral t
distribution with noncentrality ``lambda = delta * sqrt(n)``; the power is

    P(|T'| > c) = E_W[ Phi(lambda - c W) + Phi(-lambda - c W) ],   W = sqrt(V / df),  V ~ chi^2_df,

integrated numerically over ``W`` (Simpson's rule on a fine grid; the density of ``W`` is smooth for every
``df >= 1``). This is the exact power (the same as ``statsmodels``' ``TTestPower`` with
``alternative='two-sided'``), not the normal approximation ``(z_{1-alpha/2} + z_power) s / sqrt(n)``, which
is far too optimistic for the 3-5 seeds of a study.

:func:`minimum_detectable_effect` solves ``power(delta) = target`` for ``delta`` by bisection and returns it
in standard deviations (``effect_size``) and, given the observed ``s_d``, in the metric's units: the smallest
true difference the comparison would detect with the target power. "No significant difference" with an MDE
larger than the effect you care about means "too few runs to tell", not "no effect".
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from calikd.analysis.tdist import t_ppf
from calikd.errors import ConfigError

_GRID = 4001  # odd: Simpson's rule


def _check_probability(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise ConfigError(f"{name} must be a number in (0, 1); got {value!r}")
    return float(value)


def _check_pairs(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ConfigError(f"a paired test needs at least 2 pairs; got n = {n!r}")
    return n


def _phi(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF, elementwise (float64)."""
    return torch.special.ndtr(torch.from_numpy(x)).numpy()


def _w_grid(df: int) -> tuple[np.ndarray, np.ndarray]:
    """Points of ``W = sqrt(chi^2_df / df)`` and their Simpson weights times the density."""
    hi = 1.0 + 12.0 / math.sqrt(2.0 * df) + 12.0 / df
    w = np.linspace(0.0, hi, _GRID)
    k = df / 2.0
    # density of W: 2 (df/2)^(df/2) w^(df-1) exp(-df w^2 / 2) / Gamma(df/2)
    with np.errstate(divide="ignore"):
        log_w = (df - 1) * np.log(w) if df > 1 else np.zeros_like(w)
    pdf = np.exp(math.log(2.0) + k * math.log(k) + log_w - k * w * w - math.lgamma(k))
    h = w[1] - w[0]
    simpson = np.ones(_GRID)
    simpson[1:-1:2], simpson[2:-1:2] = 4.0, 2.0
    return w, pdf * simpson * h / 3.0


def paired_power(effect_size: float, n: int, *, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test at level ``alpha`` with ``n`` pairs when the true mean difference
    is ``effect_size`` standard deviations of the differences."""
    n, alpha = _check_pairs(n), _check_probability(alpha, "alpha")
    bad = isinstance(effect_size, bool) or not isinstance(effect_size, (int, float))
    if bad or not math.isfinite(effect_size):
        raise ConfigError(f"effect_size must be a finite number; got {effect_size!r}")
    return _power(abs(effect_size) * math.sqrt(n), t_ppf(1.0 - alpha / 2.0, n - 1), *_w_grid(n - 1))


def _power(lam: float, crit: float, w: np.ndarray, weight: np.ndarray) -> float:
    tails = _phi(lam - crit * w) + _phi(-lam - crit * w)
    return float(min(1.0, max(0.0, np.dot(weight, tails))))


@dataclass(frozen=True)
class DetectableEffect:
    """The smallest true mean difference detected with probability ``power`` by ``n`` pairs at ``alpha``:
    ``effect_size`` in standard deviations of the differences, ``mde`` in the metric's units (``None`` when
    no standard deviation was given)."""

    n: int
    alpha: float
    power: float
    effect_size: float
    std: float | None
    mde: float | None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@functools.lru_cache(maxsize=256)
def _effect_size(n: int, alpha: float, power: float) -> float:
    """The effect (in standard deviations) with ``power`` at ``n`` pairs and level ``alpha``, by bisection;
    it depends on these three alone, so a report with many paired rows solves it once per n."""
    crit, (w, weight), root_n = t_ppf(1.0 - alpha / 2.0, n - 1), _w_grid(n - 1), math.sqrt(n)
    lo, hi = 0.0, 1.0
    while _power(hi * root_n, crit, w, weight) < power:
        lo, hi = hi, 2.0 * hi
    for _ in range(60):  # to ~1e-15 relative
        mid = 0.5 * (lo + hi)
        if _power(mid * root_n, crit, w, weight) < power:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def minimum_detectable_effect(
    n: int, std: float | None = None, *, alpha: float = 0.05, power: float = 0.8
) -> DetectableEffect:
    """MDE of a two-sided paired t-test with ``n`` pairs; ``std`` is the (sample) std of the differences."""
    n = _check_pairs(n)
    alpha, power = _check_probability(alpha, "alpha"), _check_probability(power, "power")
    if power <= alpha:
        raise ConfigError(f"power must exceed alpha; got power {power} and alpha {alpha}")
    if std is not None and (
        isinstance(std, bool) or not isinstance(std, (int, float)) or not math.isfinite(std) or std < 0
    ):
        raise ConfigError(f"std must be a finite number >= 0; got {std!r}")
    effect = _effect_size(n, alpha, power)
    return DetectableEffect(
        n=n,
        alpha=alpha,
        power=power,
        effect_size=effect,
        std=None if std is None else float(std),
        mde=None if std is None else effect * float(std),
    )
