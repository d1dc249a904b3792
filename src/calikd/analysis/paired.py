r"""Paired comparisons over seeds, e.g. a student distilled from the uncalibrated (``a``) and from the
calibrated (``b``) version of the same teacher, one pair per seed.

With ``d_i = b_i - a_i`` (``n >= 2`` pairs), ``mean = d̄``, ``std = s_d`` (sample, ``ddof = 1``) and
``sem = s_d / sqrt(n)``:

* t-interval: ``d̄ -/+ t_{(1+c)/2, n-1} sem`` (quantile from :func:`~calikd.analysis.tdist.t_ppf`);
* paired t-test: ``t = d̄ / sem`` with ``n - 1`` df, two-sided p-value. When every ``d_i`` is equal
  (``s_d = 0``, or ``s_d`` within rounding noise: :data:`NOISE_ULPS`) the test degenerates:
  ``t = ±inf, p = 0`` for a non-zero difference, ``t = 0, p = 1`` for none, and the t-interval is
  ``(d̄, d̄)``;
* bootstrap (percentile) interval of the mean: ``n_boot`` resamples of the ``d_i``, indices
  ``np.random.default_rng(seed).integers(0, n, size=(n_boot, n))`` (drawn in blocks, same values);
* minimum detectable effect (``mde``): the smallest true mean difference the paired t-test at level
  ``1 - confidence`` detects with probability ``power`` (80% by default) given ``n`` and the observed ``s_d``
  (exact noncentral-t power: :mod:`~calikd.analysis.power`), so a non-significant result can be read as
  "no effect larger than the MDE" or "too few runs to tell";
* wins / losses / ties: pairs where ``b`` is better / worse than / equal to ``a`` (better = larger with
  ``higher_is_better=True``, smaller otherwise; exact comparison).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

from calikd.analysis._core import (
    ArrayLike,
    as_pair,
    as_vector,
    check_confidence,
    check_n_boot,
    check_seed,
    percentile_interval,
    resample_blocks,
)
from calikd.analysis.power import minimum_detectable_effect
from calikd.analysis.tdist import t_ppf, t_two_sided_p
from calikd.errors import ConfigError

Interval = tuple[float, float]

#: A std of the differences at most this many ulps of the largest ``|a|, |b|`` is rounding noise: 0.
NOISE_ULPS = 4


@dataclass(frozen=True)
class PairedDifference:
    """Summary of the per-pair differences ``b - a``; ``bootstrap_ci`` is ``None`` for ``n_boot = 0``."""

    n: int
    mean: float
    std: float
    sem: float
    ci: Interval
    bootstrap_ci: Interval | None
    t_stat: float
    p_value: float
    mde: float
    power: float
    wins: int
    losses: int
    ties: int
    confidence: float
    n_boot: int
    seed: int
    higher_is_better: bool

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: intervals as ``[lo, hi]`` lists; an infinite ``t_stat`` becomes ``None``."""
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        d["t_stat"] = self.t_stat if math.isfinite(self.t_stat) else None
        return d


def paired_difference(
    a: ArrayLike,
    b: ArrayLike,
    *,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    higher_is_better: bool = True,
    power: float = 0.8,
) -> PairedDifference:
    """Compare ``b`` with ``a`` pair by pair (``a[i]`` and ``b[i]`` from the same seed; ``n >= 2``).

    Raises :class:`~calikd.errors.ConfigError` for unequal lengths, fewer than 2 pairs or NaN/inf.
    """
    xa, xb = as_pair(a, b, ("a", "b"), min_n=2)
    confidence, n_boot, seed = check_confidence(confidence), check_n_boot(n_boot), check_seed(seed)
    d = xb - xa
    n = int(d.shape[0])
    detectable = minimum_detectable_effect(n, 0.0, alpha=1.0 - confidence, power=power)
    mean = float(d.mean())
    std = float(d.std(ddof=1))
    if std <= NOISE_ULPS * np.finfo(np.float64).eps * float(np.maximum(np.abs(xa), np.abs(xb)).max()):
        std = 0.0  # equal differences up to rounding (0.2 - 0.1 vs 0.3 - 0.2): no spurious huge t
    sem = std / math.sqrt(n)
    if sem > 0:
        t_stat = mean / sem
        p_value = t_two_sided_p(t_stat, n - 1)
        half = t_ppf(0.5 + confidence / 2, n - 1) * sem
    else:
        t_stat = math.copysign(math.inf, mean) if mean != 0 else 0.0
        p_value = 0.0 if mean != 0 else 1.0
        half = 0.0

    boot = np.empty(0)
    if n_boot:
        rng = np.random.default_rng(seed)
        boot = np.concatenate([d[idx].mean(axis=1) for idx in resample_blocks(rng, n, n_boot)])
    sign = 1 if higher_is_better else -1
    return PairedDifference(
        n=n,
        mean=mean,
        std=std,
        sem=sem,
        ci=(mean - half, mean + half),
        bootstrap_ci=percentile_interval(boot, confidence),
        t_stat=t_stat,
        p_value=p_value,
        mde=detectable.effect_size * std,
        power=detectable.power,
        wins=int(np.count_nonzero(sign * d > 0)),
        losses=int(np.count_nonzero(sign * d < 0)),
        ties=int(np.count_nonzero(d == 0)),
        confidence=confidence,
        n_boot=n_boot,
        seed=seed,
        higher_is_better=bool(higher_is_better),
    )


def mean_std(
    values: ArrayLike | Iterable[float | None], *, skip_missing: bool = False
) -> tuple[float, float]:
    """``(mean, sample std)`` of ``values`` (``ddof = 1``): the one mean ± std of analyses and reports.

    One-seed rule: the sample std of a single value is undefined, so it is NaN (renderers print the mean
    alone, without ``±``: :func:`format_mean_std`). Equal values
    have a std of exactly 0. Values must be finite (a :class:`ConfigError` otherwise, and for none); with
    ``skip_missing`` the ``None`` and non-finite values are dropped first and no value left gives
    ``(nan, nan)``.
    """
    if skip_missing:
        kept = [float(v) for v in values if v is not None and math.isfinite(float(v))]  # type: ignore[union-attr]
        if not kept:
            return math.nan, math.nan
        values = kept
    v = as_vector(values, "values", min_n=0)
    if v.shape[0] == 0:
        raise ConfigError("mean_std of no values: it needs at least 1")
    if v.shape[0] == 1:
        return float(v[0]), math.nan
    if bool(np.all(v == v[0])):
        return float(v[0]), 0.0
    return float(v.mean()), float(v.std(ddof=1))


def format_mean_std(
    mean: float | None, std: float | None = None, *, digits: int = 4, scale: float = 1.0
) -> str:
    """``"mean ± std"`` with ``digits`` decimals after multiplying by ``scale`` (100 for percent): the one
    renderer of :func:`mean_std`'s pair, e.g. ``format_mean_std(*mean_std(accs), digits=2, scale=100)``.

    The mean alone when ``std`` is ``None`` or NaN (one seed); ``n/a`` when the mean is ``None`` or NaN.
    """
    if isinstance(digits, bool) or not isinstance(digits, int) or not 0 <= digits <= 15:
        raise ConfigError(f"digits must be an integer in [0, 15]; got {digits!r}")
    if mean is None or math.isnan(mean):
        return "n/a"
    text = f"{mean * scale:.{digits}f}"
    if std is None or math.isnan(std):
        return text
    return f"{text} ± {std * scale:.{digits}f}"
