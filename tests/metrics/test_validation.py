"""Bad input raises ConfigError with a clear message, at the boundary of every public function."""

from __future__ import annotations

import pytest
import torch

from calikd.errors import ConfigError
from calikd.metrics import (
    accuracy,
    brier_score,
    calibration_report,
    check_logits_labels,
    classwise_ece,
    expected_calibration_error,
    looks_like_probabilities,
    mass_edges,
    predictive_entropy,
    reliability_statistics,
    summary_metrics,
    top_k_accuracy,
)

LOGITS = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]])
LABELS = torch.tensor([0, 2])
PROBS_MSG = (
    r"these look like probabilities \(rows in \[0, 1\] summing to 1\); pass logits or use from_probs=True"
)


@pytest.mark.parametrize(
    "fn",
    [accuracy, brier_score, expected_calibration_error, classwise_ece, calibration_report, summary_metrics],
)
def test_probabilities_passed_as_logits(fn) -> None:
    p = torch.softmax(LOGITS, dim=1)
    with pytest.raises(ConfigError, match=PROBS_MSG):
        fn(p, LABELS)
    with pytest.raises(ConfigError, match=PROBS_MSG):
        fn(p.half(), LABELS)  # float16 rows sum to 1 only within ~1e-3
    with pytest.raises(ConfigError, match=PROBS_MSG):
        fn(p.repeat(500, 1), LABELS.repeat(500), chunk_size=7)  # every chunk checked
    fn(p, LABELS, from_probs=True)


def test_probabilities_in_some_rows_only_are_fine() -> None:
    p = torch.softmax(LOGITS, dim=1).repeat(10, 1)
    mixed = torch.cat([p, LOGITS * 3])  # later rows are clearly logits
    labels = torch.cat([LABELS.repeat(10), LABELS])
    assert 0 <= expected_calibration_error(mixed, labels, chunk_size=4) <= 1
    assert not looks_like_probabilities(mixed, chunk_size=4)


def test_from_probs_rejects_non_probabilities() -> None:
    with pytest.raises(ConfigError, match="from_probs=True but these are not probabilities"):
        accuracy(LOGITS, LABELS, from_probs=True)
    with pytest.raises(ConfigError, match="from_probs=True"):
        calibration_report(torch.tensor([[0.5, 0.3], [0.5, 0.5]]), LABELS.clamp(max=1), from_probs=True)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
def test_nan_and_inf(bad: float, dtype: torch.dtype) -> None:
    x = LOGITS.clone().to(dtype)
    x[1, 0] = bad  # -inf next to a finite maximum: caught too
    for fn in (accuracy, summary_metrics, calibration_report):
        with pytest.raises(ConfigError, match="NaN or inf"):
            fn(x, LABELS)
    with pytest.raises(ConfigError, match="NaN or inf"):
        predictive_entropy(x)
    with pytest.raises(ConfigError, match="NaN or inf"):
        check_logits_labels(x, LABELS)
    p = torch.softmax(LOGITS, 1).to(dtype)
    p[0, 1] = bad
    with pytest.raises(ConfigError, match="NaN or inf"):
        calibration_report(p, LABELS, from_probs=True)


def test_labels_and_shapes() -> None:
    with pytest.raises(ConfigError, match=r"labels must lie in \[0, 2\] for 3 classes; found 0..3"):
        accuracy(LOGITS, torch.tensor([0, 3]))
    with pytest.raises(ConfigError, match=r"found -1..2"):
        calibration_report(LOGITS, torch.tensor([-1, 2]))
    with pytest.raises(ConfigError, match="shape"):
        accuracy(LOGITS, torch.tensor([0, 1, 2]))
    with pytest.raises(ConfigError, match="shape"):
        accuracy(LOGITS[0], LABELS[:1])
    with pytest.raises(ConfigError, match="integer class indices"):
        accuracy(LOGITS, LABELS.float())
    with pytest.raises(ConfigError, match="no samples"):
        accuracy(LOGITS[:0], LABELS[:0])
    with pytest.raises(ConfigError, match="float16, bfloat16, float32 or float64"):
        accuracy(LOGITS.long(), LABELS)
    with pytest.raises(ConfigError, match="torch tensors"):
        accuracy(LOGITS.numpy(), LABELS)
    with pytest.raises(ConfigError, match="shape"):
        predictive_entropy(LOGITS[0])


def test_options() -> None:
    for n_bins in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="n_bins must be an integer >= 1"):
            expected_calibration_error(LOGITS, LABELS, n_bins)
        with pytest.raises(ConfigError, match="n_bins"):
            calibration_report(LOGITS, LABELS, n_bins)
    with pytest.raises(ConfigError, match="norm must be one of 'l1', 'l2', 'max'"):
        expected_calibration_error(LOGITS, LABELS, 15, "l3")
    with pytest.raises(ConfigError, match="binning must be one of 'width', 'mass'"):
        reliability_statistics(LOGITS, LABELS, 15, "quantile")
    for k in (0, 4):
        with pytest.raises(ConfigError, match=r"k must be an integer in \[1, 3\]"):
            top_k_accuracy(LOGITS, LABELS, k)
    with pytest.raises(ConfigError, match="chunk_size"):
        accuracy(LOGITS, LABELS, chunk_size=0)
    # ConfigError is a ValueError: callers catching ValueError keep working
    with pytest.raises(ValueError):
        expected_calibration_error(LOGITS, LABELS, 0)


def test_labels_on_another_device_or_dtype_are_accepted() -> None:
    assert accuracy(LOGITS, LABELS.to(torch.int32)) == accuracy(LOGITS, LABELS) == 1.0
    assert accuracy(LOGITS, LABELS.to(torch.uint8)) == 1.0


def test_standalone_checks() -> None:
    p = torch.softmax(LOGITS, dim=1)
    check_logits_labels(LOGITS, LABELS)
    check_logits_labels(p, LABELS, from_probs=True)
    with pytest.raises(ConfigError, match=PROBS_MSG):
        check_logits_labels(p, LABELS, chunk_size=1)
    with pytest.raises(ConfigError, match="from_probs=True"):
        check_logits_labels(LOGITS, LABELS, from_probs=True)
    assert looks_like_probabilities(p.requires_grad_(True))
    assert not looks_like_probabilities(p[:, :1])  # one class: anything "sums to 1"
    with pytest.raises(ConfigError, match="at least one confidence"):
        mass_edges(torch.empty(0), 5)
