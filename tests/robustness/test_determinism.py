"""Determinism on CPU: the same config and seed twice give bit-identical weights and metrics; another seed
gives other weights. Teacher training (with augmentation), every calibrator, distillation (logit, feature and
contrastive methods, KD augmentation, cross-resolution), the corruption generator and a sweep's store rows.

Everything runs on one torch thread (robust_helpers.THREADS): CPU float reductions depend on the thread
count, so runs are bit-identical for the same thread count. Speed measurements (img/s, seconds) are left out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from robust_helpers import (
    CPU_FP32,
    DATA,
    VAL_FRACTION,
    checkpoint_tensors,
    copy_checkpoint,
    distill_config,
    history_without_timings,
    no_plots,
    same_tensors,
    store_rows,
    teacher_config,
)

from calikd.cli import main
from calikd.corruptions import corrupt, list_corruptions
from calikd.distill import DistillResult, distill
from calikd.experiments import expand, load_spec
from calikd.teacher import train_teacher
from calikd.utils.config import config_to_dict


@pytest.fixture(autouse=True, scope="module")
def _no_plots() -> Iterator[None]:
    with no_plots():
        yield


@pytest.fixture(autouse=True)
def _threads(one_thread: None) -> None:
    """Every test on one torch thread, as the shared teacher and sweep fixtures."""


def _summary(folder: str | Path) -> dict[str, Any]:
    summary = json.loads((Path(folder) / "summary.json").read_text())
    return {
        "history": history_without_timings(summary["history"]),
        **{k: summary[k] for k in ("best_epoch", "test_last", "test_best")},
    }


def test_train_teacher_twice_is_identical_and_another_seed_differs(teacher: str, tmp_path: Path) -> None:
    first = Path(teacher).parent  # trained by the API (conftest.py); now the same config by the CLI
    config = {k: v for k, v in config_to_dict(teacher_config(tmp_path / "x")).items() if k != "out"}
    assert config["augment"] and config["seed"] == 0 and config["val_fraction"] == VAL_FRACTION
    (tmp_path / "teacher.yaml").write_text(yaml.safe_dump(config | {"progress": False}))
    argv = ["train-teacher", "--config", str(tmp_path / "teacher.yaml"), "--out", str(tmp_path / "cli")]
    assert main(argv) == 0
    assert same_tensors(checkpoint_tensors(tmp_path / "cli"), checkpoint_tensors(first))
    assert _summary(tmp_path / "cli") == _summary(first)
    for stem in ("last", "best"):
        ours, theirs = (json.loads((d / f"{stem}.json").read_text()) for d in (tmp_path / "cli", first))
        assert ours["weights_sha256"] == theirs["weights_sha256"] and ours["metrics"] == theirs["metrics"]

    train_teacher(teacher_config(tmp_path / "seed1", seed=1), log=None)
    other = checkpoint_tensors(tmp_path / "seed1")
    assert other.keys() == checkpoint_tensors(first).keys()
    assert not any(
        torch.equal(other[k], v) for k, v in checkpoint_tensors(first).items() if v.is_floating_point()
    )


@pytest.mark.filterwarnings("ignore::calikd.calibration.base.CalibrationConvergenceWarning")
def test_calibrate_every_calibrator_twice_is_identical(teacher: str, tmp_path: Path) -> None:
    files = {}
    for name in ("a", "b"):
        checkpoint = copy_checkpoint(teacher, tmp_path / name)
        assert main(["calibrate", checkpoint, "--method", "all", *CPU_FP32]) == 0
        files[name] = {p.name: p.read_bytes() for p in sorted((tmp_path / name).glob("last.calibrat*"))}
    methods = ("temperature", "dirichlet", "histogram", "isotonic", "matrix", "vector")  # primary first
    expected = {"last.calibrator.json", *(f"last.calibrator-{m}.json" for m in methods[1:])}
    assert expected <= files["a"].keys() and files["a"].keys() == files["b"].keys()
    a_dir, b_dir = (str(tmp_path / name).encode() for name in "ab")
    for name, data in files["a"].items():
        if ".calibration." in name:  # the report names the checkpoint and its files by path
            assert a_dir in data and data.replace(a_dir, b_dir) == files["b"][name], name
        else:  # the calibrators (JSON + tensors), byte for byte
            assert data == files["b"][name], name
    report = json.loads(files["a"]["last.calibration.json"])
    assert report["methods"] == list(methods)


DISTILL_CASES = {
    "kd": {},  # from the temperature-calibrated teacher (teacher_calibration auto)
    "dkd": {"method": "dkd"},
    "at": {"method": "at"},  # feature maps through forward hooks
    "crd": {"method": "crd", "method_options": {"nce_k": 16, "feat_dim": 8}},  # sampled negatives, memory
    "cutmix": {"kd_augment": "cutmix", "cutmix_prob": 1.0},
    "augmix-js": {"kd_augment": "augmix", "augmix_js": True},
    "cross-resolution": {"student_resolution": 8, "teacher_input": "low"},
}


def _distill_twice(teacher: str, root: Path, **options: Any) -> tuple[DistillResult, DistillResult]:
    return tuple(distill(distill_config(teacher, root / name, **options), log=None) for name in "ab")


@pytest.mark.parametrize("case", list(DISTILL_CASES))
def test_distill_twice_is_identical(teacher: str, tmp_path: Path, case: str) -> None:
    a, b = _distill_twice(teacher, tmp_path, **DISTILL_CASES[case])
    assert same_tensors(checkpoint_tensors(a.out_dir), checkpoint_tensors(b.out_dir))
    assert history_without_timings(a.history) == history_without_timings(b.history)
    assert len(a.history) == 2 and a.history[-1]["train_loss"] > 0
    assert a.student_test_last == b.student_test_last and a.student_test_best == b.student_test_best
    assert a.best_epoch == b.best_epoch and a.teacher == b.teacher
    assert a.extra["method_options"] == b.extra["method_options"]
    if case == "kd":
        assert a.teacher["calibrator_applied"] and a.teacher["temperature"] is not None
    seeded = distill(distill_config(teacher, tmp_path / "seed1", seed=1, **DISTILL_CASES[case]), log=None)
    ours, other = checkpoint_tensors(a.out_dir), checkpoint_tensors(seeded.out_dir)
    assert not any(torch.equal(ours[k], other[k]) for k in ours if k.startswith("last/") and "weight" in k)


@pytest.mark.parametrize("channels", [1, 3])
def test_corruptions_are_a_function_of_images_and_seed(channels: int) -> None:
    images = torch.rand(6, channels, 16, 16, generator=torch.Generator().manual_seed(channels))
    random = {"gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "glass_blur", "spatter"}
    assert random <= set(list_corruptions())
    for name in list_corruptions():
        for severity in (1, 5):
            first = corrupt(images, name, severity, seed=0)
            assert torch.equal(first, corrupt(images.clone(), name, severity, seed=0)), (name, severity)
            if name in random:
                assert not torch.equal(first, corrupt(images, name, severity, seed=1)), (name, severity)


def test_corrupt_command_twice_writes_identical_files(tmp_path: Path) -> None:
    options = [f"{k}={v}" for k, v in {**DATA, "test_size": 12}.items()]
    for name in ("a", "b"):
        argv = [
            "corrupt",
            "--dataset",
            "synthetic",
            "--dataset-options",
            *options,
            "--out",
            str(tmp_path / name),
        ]
        assert main(argv) == 0
    manifests = [json.loads((tmp_path / name / "manifest.json").read_text()) for name in "ab"]
    assert manifests[0] == manifests[1] and len(manifests[0]["corruptions"]) == len(list_corruptions())
    for file in manifests[0]["files"]:
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes(), file


def test_sweep_twice_records_identical_metrics(reference_sweep: tuple[Path, Path], tmp_path: Path) -> None:
    ref_spec, ref_db = reference_sweep
    data = load_spec(ref_spec).raw | {"out": str(tmp_path / "sweep")}
    data["distill"] = data["distill"] | {"cache_dir": str(tmp_path / "sweep" / "cache")}
    spec, db = tmp_path / "tiny.yaml", tmp_path / "calikd.db"
    spec.write_text(yaml.safe_dump(data))
    assert main(["sweep", str(spec), "--db", str(db)]) == 0
    ours, reference = store_rows(db), store_rows(ref_db)
    assert len(ours) == 8 and ours.keys() == reference.keys()
    for key, (metrics, artifacts) in ours.items():
        assert (metrics, artifacts) == reference[key], key
        assert metrics and all(v is None or isinstance(v, float | int) for v in metrics.values())
    ref_dirs = {p.name: p.out_dir for p in expand(load_spec(ref_spec))}
    for plan in expand(load_spec(spec)):
        if plan.kind in ("teacher", "distill"):
            assert same_tensors(checkpoint_tensors(plan.out_dir), checkpoint_tensors(ref_dirs[plan.name]))
            assert os.path.exists(os.path.join(plan.out_dir, "last.json"))
