"""Corruption-robustness summaries: mean metrics over corruptions and severities, and Hendrycks &
Dietterich's corruption error (CE), relative CE, mCE and relative mCE against a baseline model.

For a model ``f`` with error ``E^f_{s,c}`` on corruption ``c`` at severity ``s`` and clean error
``E^f_clean``:

    CE^f_c          = sum_s E^f_{s,c} / sum_s E^base_{s,c}
    relative CE^f_c = sum_s (E^f_{s,c} - E^f_clean) / sum_s (E^base_{s,c} - E^base_clean)

and mCE / relative mCE are their means over the corruptions (the 15 benchmark ones when all are present),
reported in percent (100 = as robust as the baseline; lower is better).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from calikd.analysis import mean_std
from calikd.errors import ConfigError

Row = Mapping[str, Any]  # {"corruption", "severity", "accuracy", "nll", "ece", ...}


def per_corruption(rows: Sequence[Row], metrics: Sequence[str]) -> dict[str, dict[str, float]]:
    """For each corruption, the mean of each metric over its severities."""
    names = list(dict.fromkeys(r["corruption"] for r in rows))
    return {
        name: {
            m: mean_std([r[m] for r in rows if r["corruption"] == name], skip_missing=True)[0]
            for m in metrics
        }
        for name in names
    }


def per_severity(rows: Sequence[Row], metric: str) -> dict[int, tuple[float, float]]:
    """For each severity, the (mean, std) of ``metric`` over corruptions (std NaN for a single one)."""
    severities = sorted({int(r["severity"]) for r in rows})
    return {
        s: mean_std([r[metric] for r in rows if r["severity"] == s], skip_missing=True) for s in severities
    }


def corruption_errors(
    rows: Sequence[Row],
    clean_error: float,
    baseline_rows: Sequence[Row],
    baseline_clean_error: float,
) -> dict[str, dict[str, float]]:
    """CE and relative CE (fractions, not percent) of every corruption present in both row sets."""

    def errors(rs: Sequence[Row]) -> dict[tuple[str, int], float]:
        return {(r["corruption"], int(r["severity"])): 1.0 - float(r["accuracy"]) for r in rs}

    mine, base = errors(rows), errors(baseline_rows)
    out: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(c for c, _ in mine):
        severities = sorted(s for c, s in mine if c == name)
        missing = [s for s in severities if (name, s) not in base]
        if missing:
            raise ConfigError(
                f"the baseline has no result for {name} at severity {missing[0]}",
                hint="evaluate the baseline on the same corruptions and severities",
            )
        denom = sum(base[(name, s)] for s in severities)
        rel_denom = sum(base[(name, s)] - baseline_clean_error for s in severities)
        ce = sum(mine[(name, s)] for s in severities) / denom if denom > 0 else float("nan")
        rel = sum(mine[(name, s)] - clean_error for s in severities)
        out[name] = {"ce": ce, "relative_ce": rel / rel_denom if rel_denom > 0 else float("nan")}
    return out


def mean_corruption_error(ces: Mapping[str, Mapping[str, float]], names: Sequence[str]) -> dict[str, float]:
    """mCE and relative mCE in percent over ``names``."""
    chosen = [ces[n] for n in names if n in ces]
    return {
        "mce": 100.0 * mean_std([c["ce"] for c in chosen], skip_missing=True)[0],
        "relative_mce": 100.0 * mean_std([c["relative_ce"] for c in chosen], skip_missing=True)[0],
    }
