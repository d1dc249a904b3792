"""Agreement with a dense float64 reference, and invariances: sample order, per-row logit shifts, chunking,
dtypes; summary_metrics consistent with the report."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from metrics_reference import classwise, ece_family, others, probs_of

from calikd.metrics import (
    CalibrationReport,
    accuracy,
    adaptive_calibration_error,
    brier_score,
    calibration_report,
    classwise_ece,
    ece_decomposition,
    expected_calibration_error,
    negative_log_likelihood,
    overconfidence_error,
    per_sample_entropy,
    predictive_entropy,
    reliability_statistics,
    summary_metrics,
    top_k_accuracy,
)


def make(n: int, c: int, seed: int, dtype: torch.dtype = torch.float64, scale: float = 3.0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=gen, dtype=torch.float64) * scale
    labels = torch.randint(0, c, (n,), generator=gen)
    labels = torch.where(torch.rand(n, generator=gen) < 0.5, logits.argmax(dim=1), labels)
    return logits.to(dtype), labels


def scalars(rep: CalibrationReport) -> dict[str, float]:
    return {k: v for k, v in rep.scalars().items() if isinstance(v, float)}


def assert_reports_close(a: CalibrationReport, b: CalibrationReport, tol: float) -> None:
    sa, sb = scalars(a), scalars(b)
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key] == pytest.approx(sb[key], abs=tol), key
    for name in ("reliability", "reliability_adaptive"):
        ra, rb = getattr(a, name), getattr(b, name)
        assert ra.count == rb.count
        assert ra.hi == pytest.approx(rb.hi, abs=tol)
        assert torch.allclose(torch.tensor(ra.accuracy), torch.tensor(rb.accuracy), atol=tol, equal_nan=True)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("n", "c"), [(2000, 10), (500, 3), (300, 1), (200, 1000)])
def test_report_matches_dense_reference(dtype: torch.dtype, n: int, c: int) -> None:
    logits, labels = make(n, c, seed=n + c, dtype=dtype)
    rep = calibration_report(logits, labels, 15, chunk_size=97)
    p, y = probs_of(logits), labels.numpy()
    ref = {
        **ece_family(p, y, 15),
        **others(p, y, logits),
        "classwise_ece": classwise(p, y, 15),
        "ace": ece_family(p, y, 15, "mass")["ece"],
    }
    # float64 is exact to rounding; lower precisions compute the softmax in float32 (rows identical to
    # the reference's up to ~1e-7 relative)
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    for key, value in ref.items():
        got = getattr(rep, key)
        if value is None:
            assert got is None
        else:
            assert got == pytest.approx(value, abs=tol), key


def test_individual_functions_equal_the_report() -> None:
    logits, labels = make(1500, 7, seed=3)
    rep = calibration_report(logits, labels, 10)
    assert accuracy(logits, labels) == rep.accuracy
    assert top_k_accuracy(logits, labels, 5) == rep.top5
    assert negative_log_likelihood(logits, labels) == rep.nll
    assert brier_score(logits, labels) == rep.brier
    assert predictive_entropy(logits) == rep.entropy
    assert float(per_sample_entropy(logits).mean()) == pytest.approx(rep.entropy, abs=1e-15)
    assert expected_calibration_error(logits, labels, 10) == rep.ece
    assert expected_calibration_error(logits, labels, 10, "max") == rep.mce
    assert expected_calibration_error(logits, labels, 10, "l2") == rep.ece_l2
    assert adaptive_calibration_error(logits, labels, 10) == rep.ace
    assert classwise_ece(logits, labels, 10) == rep.classwise_ece
    assert overconfidence_error(logits, labels, 10) == rep.oe
    assert tuple(ece_decomposition(logits, labels, 10)) == (rep.ece_over, rep.ece_under)
    assert reliability_statistics(logits, labels, 10) == rep.reliability
    assert reliability_statistics(logits, labels, 10, "mass").to_dict() == rep.reliability_adaptive.to_dict()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_summary_metrics_is_bit_identical_to_the_report(dtype: torch.dtype) -> None:
    logits, labels = make(3000, 12, seed=4, dtype=dtype)
    for chunk in (None, 111):
        summary = summary_metrics(logits, labels, chunk_size=chunk)
        assert summary == calibration_report(logits, labels, chunk_size=chunk).summary()
        assert set(summary) == {"accuracy", "nll", "ece"}


def test_permuting_samples_changes_nothing() -> None:
    logits, labels = make(2000, 10, seed=5)
    perm = torch.randperm(2000, generator=torch.Generator().manual_seed(0))
    before, after = calibration_report(logits, labels), calibration_report(logits[perm], labels[perm])
    assert_reports_close(before, after, 1e-12)
    # equal-mass bins with many ties: still order-independent
    tied = (logits * 2).round() / 2
    before, after = calibration_report(tied, labels), calibration_report(tied[perm], labels[perm])
    assert_reports_close(before, after, 1e-12)


def test_adding_a_per_row_constant_changes_nothing() -> None:
    logits, labels = make(2000, 10, seed=6)
    shift = torch.randn(2000, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 50
    assert_reports_close(calibration_report(logits, labels), calibration_report(logits + shift, labels), 1e-9)


@pytest.mark.parametrize("chunk", [1, 7, 64, 599])
def test_chunk_size_changes_nothing_in_float64(chunk: int) -> None:
    logits, labels = make(600, 10, seed=7)
    whole = calibration_report(logits, labels, chunk_size=600)
    assert_reports_close(whole, calibration_report(logits, labels, chunk_size=chunk), 1e-12)


def test_chunk_size_float32_and_half_agree_closely() -> None:
    logits, labels = make(3000, 50, seed=8, dtype=torch.float16)
    a = calibration_report(logits, labels, chunk_size=3000)
    b = calibration_report(logits, labels, chunk_size=97)
    assert_reports_close(a, b, 1e-6)
    c = calibration_report(logits.double(), labels)
    assert_reports_close(a, c, 1e-5)


def test_from_probs_equals_logits() -> None:
    logits, labels = make(1000, 6, seed=9)
    p = torch.softmax(logits, dim=1)
    from_probs = calibration_report(p, labels, from_probs=True)
    assert_reports_close(calibration_report(logits, labels), from_probs, 1e-9)
    half = calibration_report(p.half(), labels, from_probs=True)
    assert half.accuracy == pytest.approx(calibration_report(logits, labels).accuracy, abs=0.01)


def test_noncontiguous_and_grad_inputs() -> None:
    logits, labels = make(500, 8, seed=10)
    t = logits.t().contiguous().t().requires_grad_(True)  # column-major, requires grad
    assert not t.is_contiguous()
    assert_reports_close(calibration_report(logits, labels), calibration_report(t, labels.int()), 1e-12)
    p = torch.softmax(logits, 1).t().contiguous().t()
    from_probs = calibration_report(p, labels, from_probs=True)
    assert_reports_close(calibration_report(logits, labels), from_probs, 1e-9)


def test_huge_finite_logits_do_not_overflow() -> None:
    # float32 differences overflow to -inf inside the softmax; the result must stay finite and right
    logits = torch.tensor([[3e38, -3e38, 0.0], [1.0, 2.0, 3.0]], dtype=torch.float32)
    labels = torch.tensor([0, 2])
    rep = calibration_report(logits, labels, n_bins=5)
    ref = calibration_report(logits.double(), labels, n_bins=5)
    assert rep.accuracy == 1.0
    assert all(v == pytest.approx(getattr(ref, k), rel=1e-6) for k, v in scalars(rep).items())
    # the label's own difference overflows too: a huge, finite NLL, the same in every function
    labels = torch.tensor([1, 2])
    rep = calibration_report(logits, labels, n_bins=5)
    assert 1e38 < rep.nll < float("inf")
    assert summary_metrics(logits, labels, 5) == rep.summary()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
def test_cuda_matches_cpu(dtype: torch.dtype) -> None:
    logits, labels = make(5000, 20, seed=11, dtype=dtype)
    cpu = calibration_report(logits, labels)
    gpu = calibration_report(logits.cuda(), labels.cuda())
    assert_reports_close(cpu, gpu, 1e-6 if dtype != torch.float64 else 1e-12)
    assert dataclasses.asdict(gpu)["n_samples"] == 5000


def test_a_report_reads_as_a_mapping_of_its_scalar_metrics() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.5], [0.2, 0.1, 3.0], [1.0, 2.0, 0.0]])
    labels = torch.tensor([0, 2, 2, 1])
    rep = calibration_report(logits, labels, n_bins=5)
    assert rep["accuracy"] == rep.accuracy == 0.75 and rep["top5"] is None
    as_dict = dict(rep)
    assert as_dict == rep.scalars() and "reliability" not in as_dict and set(rep.keys()) == set(as_dict)
    with pytest.raises(KeyError, match="'eec' is not a metric of the report"):
        rep["eec"]
