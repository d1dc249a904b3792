"""CalibrationReport and ReliabilityStats: fields, JSON round trip, immutability."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from calikd.errors import ConfigError
from calikd.metrics import CalibrationReport, ReliabilityStats, calibration_report, reliability_statistics


def data(n: int = 800, c: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, c, generator=gen) * 2, torch.randint(0, c, (n,), generator=gen)


def test_report_fields_and_json_round_trip() -> None:
    rep = calibration_report(*data(), n_bins=12)
    expected = {
        "accuracy", "top5", "nll", "brier", "entropy", "ece", "ace", "mce", "ece_l2", "classwise_ece", "oe",
        "ece_over", "ece_under", "n_samples", "num_classes", "n_bins", "reliability", "reliability_adaptive",
    }  # fmt: skip
    assert {f.name for f in dataclasses.fields(CalibrationReport)} == expected
    assert (rep.n_samples, rep.num_classes, rep.n_bins) == (800, 10, 12)
    text = json.dumps(rep.to_dict(), allow_nan=False)  # strict JSON: no NaN anywhere
    back = CalibrationReport.from_dict(json.loads(text))
    assert back == rep
    assert back.to_dict() == rep.to_dict()
    with pytest.raises(dataclasses.FrozenInstanceError):
        rep.ece = 0.0  # type: ignore[misc]
    assert rep.ece_over + rep.ece_under == pytest.approx(rep.ece, abs=1e-15)
    assert rep.reliability.n_bins == rep.reliability_adaptive.n_bins == 12
    assert rep.reliability.n_samples == rep.reliability_adaptive.n_samples == 800


def test_from_dict_rejects_wrong_keys() -> None:
    d = calibration_report(*data(100, 3)).to_dict()
    assert d["top5"] is None
    with pytest.raises(ConfigError, match="missing keys"):
        CalibrationReport.from_dict({k: v for k, v in d.items() if k != "ece"})
    with pytest.raises(ConfigError, match="unknown keys"):
        CalibrationReport.from_dict({**d, "extra": 1})
    with pytest.raises(ConfigError, match=r"ReliabilityStats\.from_dict"):
        ReliabilityStats.from_dict({**d["reliability"], "gap": []})


def test_reliability_statistics_empty_bins_are_nan_and_none_in_json() -> None:
    logits = torch.tensor([[3.0, 0.0], [0.0, 3.0], [0.1, 0.0]])
    stats = reliability_statistics(logits, torch.tensor([0, 0, 0]), n_bins=10)
    assert stats.count == (0, 0, 0, 0, 0, 1, 0, 0, 0, 2)
    assert math.isnan(stats.mean_confidence[0]) and math.isnan(stats.accuracy[0])
    assert stats.accuracy[9] == 0.5 and stats.accuracy[5] == 1.0
    d = stats.to_dict()
    assert d["accuracy"][0] is None and d["mean_confidence"][9] == pytest.approx(1 / (1 + math.exp(-3)))
    json.dumps(d, allow_nan=False)
    assert ReliabilityStats.from_dict(d) == stats
    assert stats.lo[0] == 0.0 and stats.hi[-1] == 1.0 and stats.hi[:-1] == stats.lo[1:]
    assert len({stats, ReliabilityStats.from_dict(d)}) == 1  # hashable, NaN-aware equality
