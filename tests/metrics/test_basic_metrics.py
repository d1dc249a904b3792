"""Accuracy, NLL and ECE against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from calikd.errors import ConfigError
from calikd.metrics import (
    accuracy,
    bin_indices,
    expected_calibration_error,
    negative_log_likelihood,
    summary_metrics,
)


def logits_for(probs: list[list[float]]) -> torch.Tensor:
    return torch.tensor(probs, dtype=torch.float64).log()


def test_accuracy_and_nll_by_hand() -> None:
    logits = logits_for([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.5, 0.25, 0.25]])
    labels = torch.tensor([0, 2, 1])
    assert accuracy(logits, labels) == pytest.approx(1 / 3)
    expected = -(math.log(0.7) + math.log(0.3) + math.log(0.25)) / 3
    assert negative_log_likelihood(logits, labels) == pytest.approx(expected, abs=1e-12)


def test_ece_by_hand() -> None:
    # confidences 0.7 (correct), 0.6 (wrong), 0.5 (wrong), 0.9 (correct); 10 bins
    logits = logits_for([[0.7, 0.3], [0.4, 0.6], [0.5, 0.5], [0.9, 0.1]])
    labels = torch.tensor([0, 0, 1, 0])
    # sample 3: argmax of a tie is class 0 -> wrong
    # bins: 0.7 -> (0.6,0.7], 0.6 -> (0.5,0.6], 0.5 -> (0.4,0.5]
    expected = (abs(0.7 - 1) + abs(0.6 - 0) + abs(0.5 - 0) + abs(0.9 - 1)) / 4
    assert expected_calibration_error(logits, labels, n_bins=10) == pytest.approx(expected, abs=1e-9)
    # one bin: |mean conf - mean acc|
    one = abs((0.7 + 0.6 + 0.5 + 0.9) / 4 - 0.5)
    assert expected_calibration_error(logits, labels, n_bins=1) == pytest.approx(one, abs=1e-9)


def test_bin_edges_convention() -> None:
    conf = torch.tensor([0.0, 1 / 15, 1 / 15 + 1e-9, 0.5, 1.0], dtype=torch.float64)
    assert bin_indices(conf, 15).tolist() == [0, 0, 1, 7, 14]


def test_bad_inputs_are_clear() -> None:
    labels = torch.tensor([0, 1])
    with pytest.raises(ConfigError, match="look like probabilities"):
        accuracy(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), labels)
    with pytest.raises(ConfigError, match="NaN"):
        accuracy(torch.tensor([[float("nan"), 0.0], [1.0, 2.0]]), labels)
    with pytest.raises(ConfigError, match=r"labels must lie in \[0, 1\]"):
        accuracy(torch.zeros(2, 2) + torch.tensor([[1.0, 3.0]]), torch.tensor([0, 2]))
    with pytest.raises(ConfigError, match="shape"):
        accuracy(torch.zeros(3, 2), labels)


def test_summary_is_json_ready_and_shift_invariant() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(200, 5, generator=gen) * 3
    labels = torch.randint(0, 5, (200,), generator=gen)
    a = summary_metrics(logits, labels)
    b = summary_metrics(logits + torch.randn(200, 1, generator=gen), labels)
    assert set(a) == {"accuracy", "nll", "ece"}
    for key in a:
        assert isinstance(a[key], float)
        assert a[key] == pytest.approx(b[key], abs=1e-5)
