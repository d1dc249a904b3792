"""The CRD benchmark study (tian2020): the four pairs only, published numbers beside ours, paired to KD."""

from __future__ import annotations

import pytest

from calikd.analysis import paired_difference
from calikd.distill import list_distillers
from calikd.experiments import expand, parse_spec
from calikd.experiments.report import SweepResults
from calikd.experiments.studies import build_spec
from calikd.experiments.studies.tian2020 import METHODS, PAIRS, PUBLISHED, SOURCES, verdict
from calikd.results import RunRecord


def _run(kind: str, name: str, config: dict, metrics: dict, wall: float | None = None) -> RunRecord:
    return RunRecord(
        run_id=name, sweep="b", kind=kind, name=name, status="finished", config=config, hashes={},
        out_dir=None, created_at=0.0, started_at=None, finished_at=None, heartbeat_at=None, worker=None,
        attempts=1, error=None, wall_time_s=wall, metrics=metrics,
    )  # fmt: skip


def test_paper_preset_runs_each_teacher_with_its_own_student_only() -> None:
    plans = expand(parse_spec(build_spec("tian2020", "paper")))
    pairs = {
        (p.config["teacher"].split("/")[-2].rsplit("-", 1)[0], p.config["student"])
        for p in plans
        if p.kind == "distill" and p.config["method"] != "ce"
    }
    assert pairs == set(PAIRS)
    kd = [p for p in plans if p.kind == "distill" and p.config["method"] == "dkd"]
    assert all(p.config["method_preset"] == "paper" for p in kd)
    assert len([p for p in plans if p.kind == "distill"]) == len(PAIRS) * (len(METHODS) + 1) * 3


def test_every_method_exists_and_every_published_number_has_a_source() -> None:
    assert set(METHODS) <= set(list_distillers())
    for pair, numbers in PUBLISHED.items():
        assert {"teacher", "student"} <= set(numbers)
        assert set(numbers) - {"teacher", "student"} == set(SOURCES[pair])
        assert all(50 < v < 90 for v in numbers.values())
    assert PUBLISHED["resnet32x4->resnet8x4"]["dkd"] == 76.32  # mdistiller README
    assert PUBLISHED["resnet56->resnet20"]["crd"] == 71.16  # RepDistiller README


def test_verdict_puts_the_published_number_beside_ours_and_pairs_with_kd() -> None:
    ckpt = "runs/t/resnet56-x/last"
    runs = [_run("calibrate", "resnet56-calibrate", {"checkpoint": ckpt}, {"test_raw_accuracy": 0.7201})]
    kd, dkd = [0.700, 0.705, 0.702], [0.712, 0.715, 0.716]
    kd_ece, dkd_ece = [0.05, 0.06, 0.07], [0.04, 0.04, 0.05]
    for method, accs in (("kd", kd), ("dkd", dkd), ("ce", [0.69, 0.691, 0.689])):
        for seed, acc in enumerate(accs):
            config = {"teacher": None if method == "ce" else ckpt, "student": "resnet20", "method": method}
            metrics = {"student_test_accuracy": acc}
            if method == "dkd":  # the full set of numbers a finished run records
                metrics |= {"student_test_ece": dkd_ece[seed], "student_test_nll": 1.0 + seed / 10}
                metrics |= {"converged": float(seed < 2)}
            elif method == "kd":
                metrics |= {"student_test_ece": kd_ece[seed]}
            runs.append(
                _run("distill", f"{method}{seed}", {**config, "seed": seed}, metrics, 80.0 + 10 * seed)
            )
    rows = dict(verdict(SweepResults(runs)))
    assert rows["resnet56->resnet20: teacher"] == "published 72.34; ours 72.01"
    assert rows["resnet56->resnet20: student alone"].startswith("published 69.06; ours 69.00 ± 0.10 (n = 3)")
    assert rows["resnet56->resnet20: kd"] == "published 70.66; ours 70.23 ± 0.25 (n = 3); 90 s per run"
    d = paired_difference([100 * v for v in kd], [100 * v for v in dkd])
    e = paired_difference([100 * v for v in kd_ece], [100 * v for v in dkd_ece])
    assert rows["resnet56->resnet20: dkd"] == (
        "published 71.97; ours 71.43 ± 0.21 (n = 3); ECE 4.33 ± 0.58, NLL 1.100 ± 0.100; 2/3 converged; "
        f"90 s per run; accuracy minus KD {d.mean:+.2f} [95% CI {d.ci[0]:+.2f}, {d.ci[1]:+.2f}], "
        f"MDE {d.mde:.2f}; ECE minus KD {e.mean:+.2f} [95% CI {e.ci[0]:+.2f}, {e.ci[1]:+.2f}], "
        f"MDE {e.mde:.2f}"
    )
    assert d.mean == pytest.approx(1.2, abs=1e-9)
    assert e.mean == pytest.approx(-1.667, abs=1e-3)
