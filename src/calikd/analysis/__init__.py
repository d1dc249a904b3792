"""Statistics for calikd's experiment analysis: does a teacher's calibration predict how well it teaches?

* :func:`correlate`: Pearson r, Spearman's rho, the least-squares line and R^2 of a student result against
  a teacher property (one point per teacher), with a t-test p-value, a Fisher-z interval and seeded
  bootstrap intervals (:mod:`~calikd.analysis.correlation`).
* :func:`paired_difference`: paired comparison over seeds (e.g. calibrated vs uncalibrated teacher for the
  same teacher/student pair): mean difference, t-interval, bootstrap interval, paired t-test,
  wins/losses/ties and the minimum detectable effect at 80% power (:mod:`~calikd.analysis.paired`,
  :mod:`~calikd.analysis.power`: :func:`minimum_detectable_effect`, :func:`paired_power`);
  :func:`mean_std` (the one mean ± std of calikd: sample std, NaN for a single value, shown as the mean
  alone), :func:`format_mean_std`.
* :func:`rank_agreement`: Spearman's rho, Kendall's tau-b and top-1 agreement between a predicted and the
  observed ranking of teachers (:mod:`~calikd.analysis.ranking`).
* Student's t CDF and quantiles without SciPy (:mod:`~calikd.analysis.tdist`).

Inputs are lists, NumPy arrays or torch tensors of finite numbers; bad input raises
:class:`~calikd.errors.ConfigError`. Work is float64 NumPy; every bootstrap is reproducible from its
``seed``. Results are frozen dataclasses with a JSON-ready ``to_dict()``.
"""

from __future__ import annotations

from calikd.analysis.correlation import Correlation, correlate, fisher_interval, pearson_p_value
from calikd.analysis.paired import PairedDifference, format_mean_std, mean_std, paired_difference
from calikd.analysis.power import DetectableEffect, minimum_detectable_effect, paired_power
from calikd.analysis.ranking import RankAgreement, kendall_tau_b, rank_agreement, rankdata, spearman_rho
from calikd.analysis.tdist import betainc, t_cdf, t_ppf, t_sf, t_two_sided_p

__all__ = [
    "Correlation",
    "DetectableEffect",
    "PairedDifference",
    "RankAgreement",
    "betainc",
    "correlate",
    "fisher_interval",
    "format_mean_std",
    "kendall_tau_b",
    "mean_std",
    "minimum_detectable_effect",
    "paired_difference",
    "paired_power",
    "pearson_p_value",
    "rank_agreement",
    "rankdata",
    "spearman_rho",
    "t_cdf",
    "t_ppf",
    "t_sf",
    "t_two_sided_p",
]
