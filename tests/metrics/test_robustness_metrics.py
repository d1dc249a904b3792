"""mCE and relative mCE against hand-computed values; means per corruption and severity."""

from __future__ import annotations

import pytest

from calikd.errors import ConfigError
from calikd.metrics.robustness import corruption_errors, mean_corruption_error, per_corruption, per_severity


def rows(errors: dict[str, list[float]]) -> list[dict]:
    return [
        {"corruption": c, "severity": s, "accuracy": 1 - e, "ece": e / 10}
        for c, es in errors.items()
        for s, e in enumerate(es, 1)
    ]


def test_ce_and_relative_ce_match_hendrycks_definitions() -> None:
    mine = rows({"a": [0.2, 0.4], "b": [0.3, 0.5]})
    base = rows({"a": [0.4, 0.4], "b": [0.5, 0.7]})
    ces = corruption_errors(mine, 0.1, base, 0.2)
    assert ces["a"]["ce"] == pytest.approx(0.6 / 0.8)
    assert ces["a"]["relative_ce"] == pytest.approx((0.1 + 0.3) / (0.2 + 0.2))
    assert ces["b"]["ce"] == pytest.approx(0.8 / 1.2)
    assert ces["b"]["relative_ce"] == pytest.approx((0.2 + 0.4) / (0.3 + 0.5))
    m = mean_corruption_error(ces, ["a", "b"])
    assert m["mce"] == pytest.approx(100 * (0.75 + 0.8 / 1.2) / 2)
    assert m["relative_mce"] == pytest.approx(100 * (1.0 + 0.75) / 2)
    # the baseline against itself is 100%
    same = mean_corruption_error(corruption_errors(base, 0.2, base, 0.2), ["a", "b"])
    assert same == {"mce": pytest.approx(100.0), "relative_mce": pytest.approx(100.0)}


def test_a_baseline_missing_a_severity_is_refused() -> None:
    with pytest.raises(ConfigError, match="baseline has no result for a at severity 2"):
        corruption_errors(rows({"a": [0.2, 0.4]}), 0.1, rows({"a": [0.3]}), 0.2)


def test_means_per_corruption_and_per_severity() -> None:
    r = rows({"a": [0.2, 0.4], "b": [0.4, 0.8]})
    assert per_corruption(r, ["accuracy"])["b"]["accuracy"] == pytest.approx(0.4)
    sev = per_severity(r, "accuracy")
    assert sev[1][0] == pytest.approx(0.7) and sev[2][0] == pytest.approx(0.4)
    assert sev[2][1] == pytest.approx(((0.6 - 0.4) ** 2 + (0.2 - 0.4) ** 2) ** 0.5)  # sample std
