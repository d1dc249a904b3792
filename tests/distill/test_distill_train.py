"""Distillation end to end on tiny synthetic data: outputs, calibration, cache, resume, cross-resolution."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from calikd.distill import distill
from calikd.engine import evaluate_checkpoint
from calikd.errors import ConfigError
from calikd.store import load_model, read_checkpoint
from calikd.teacher.calibrate import calibrate_checkpoint


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "last.safetensors")


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_kd_writes_student_checkpoint_and_report(distill_config, teacher_ckpt: str, tmp_path: Path) -> None:
    result = distill(distill_config(teacher_ckpt, tmp_path / "kd"), log=None)
    run = tmp_path / "kd"
    for name in ("last.safetensors", "best.safetensors", "report.json", "report.md", "reliability.png"):
        assert (run / name).exists(), name
    report = json.loads((run / "report.json").read_text())
    for key in ("accuracy", "nll", "ece", "ace", "entropy"):
        assert 0.0 <= report["student_test_last"][key] < 10
    assert set(report["teacher"]["metrics"]["full"]) == {"val", "test"}
    assert "raw" in report["teacher"]["metrics"]["full"]["test"]
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert {"train_loss_ce", "train_loss_kd"} <= set(result.history[0])
    _, meta = load_model(run / "last")
    assert meta["role"] == "student" and meta["distillation"]["method"] == "kd"
    assert meta["distillation"]["teacher"]["checkpoint_id"] == read_checkpoint(teacher_ckpt).id
    evaluated = evaluate_checkpoint(run / "last", precision="fp32", device="cpu")
    assert evaluated["metrics"]["accuracy"] == pytest.approx(result.student_test_last["accuracy"])
    assert "| student, last epoch |" in (run / "report.md").read_text()
    assert "- convergence: " in (run / "report.md").read_text()
    assert json.loads((run / "report.json").read_text())["convergence"]["epochs"] == len(result.history)


def test_teacher_calibration_temperature_fitted_on_val_and_song_yang(
    distill_config, teacher_ckpt: str, tmp_path: Path
) -> None:
    calibrated = distill(
        distill_config(teacher_ckpt, tmp_path / "ts", teacher_calibration="temperature", epochs=1), log=None
    )
    assert "fitted now on the teacher's val split" in calibrated.teacher["calibration_source"]
    temperature = calibrated.teacher["temperature"]
    assert temperature is not None and temperature > 0
    assert "calibrated" in calibrated.teacher["metrics"]["full"]["test"]
    song = distill(
        distill_config(
            teacher_ckpt,
            tmp_path / "sy",
            teacher_calibration="temperature",
            tau_from_calibration=True,
            epochs=1,
        ),
        log=None,
    )
    assert song.extra["method_options"]["tau"] == pytest.approx(temperature)
    # the two runs differ: one calibrates the teacher at tau 4, the other distils at tau = T uncalibrated
    assert not _same(_weights(tmp_path / "ts"), _weights(tmp_path / "sy"))


def test_auto_calibration_uses_the_stored_calibrator(
    distill_config, teacher_ckpt: str, tmp_path: Path
) -> None:
    calibrate_checkpoint(teacher_ckpt, ["temperature"], device="cpu", precision="fp32", plots=False)
    try:
        result = distill(
            distill_config(teacher_ckpt, tmp_path / "auto", teacher_calibration="auto", epochs=1)
        )
        assert result.teacher["calibration_source"].startswith("stored")
        none = distill(distill_config(teacher_ckpt, tmp_path / "none", teacher_calibration="none", epochs=1))
        assert "calibrated" not in none.teacher["metrics"]["full"]["test"]
    finally:
        for path in Path(teacher_ckpt).parent.glob("last.calibrat*"):
            path.unlink()


def test_static_cache_is_bit_identical_to_on_the_fly(
    distill_config, teacher_ckpt: str, tmp_path: Path
) -> None:
    plain = dict(augment=False, epochs=3)
    off = distill(distill_config(teacher_ckpt, tmp_path / "off", teacher_cache="off", **plain), log=None)
    cached = distill(
        distill_config(teacher_ckpt, tmp_path / "mem", teacher_cache="memory", **plain), log=None
    )
    assert off.cache is None
    steps = 288 // 32  # 90% of 320 samples in batches of 32
    assert cached.cache["layout"] == "static"
    assert cached.cache["misses"] == steps and cached.cache["hits"] == 2 * steps
    assert _same(_weights(tmp_path / "off"), _weights(tmp_path / "mem"))
    assert off.student_test_last == cached.student_test_last


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_per_epoch_disk_cache_is_reused_across_runs_and_identical(
    distill_config, teacher_ckpt: str, tmp_path: Path, precision: str
) -> None:
    common = dict(
        kd_augment="cutmix", cutmix_prob=1.0, precision=precision, cache_dir=str(tmp_path / "cache")
    )
    distill(distill_config(teacher_ckpt, tmp_path / "off", teacher_cache="off", **common), log=None)
    first = distill(distill_config(teacher_ckpt, tmp_path / "a", teacher_cache="disk", **common), log=None)
    second = distill(distill_config(teacher_ckpt, tmp_path / "b", teacher_cache="disk", **common), log=None)
    assert first.cache["layout"] == "per-epoch" and first.cache["hits"] == 0
    assert second.cache["misses"] == 0 and second.cache["hits"] == first.cache["misses"]
    assert _same(_weights(tmp_path / "off"), _weights(tmp_path / "a"))
    assert _same(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    folder = Path(first.cache["folder"])
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["epoch-0001.json", "epoch-0001.npy", "epoch-0002.json", "epoch-0002.npy", "key.json"]


def test_stale_or_damaged_cache_is_refused(distill_config, teacher_ckpt: str, tmp_path: Path) -> None:
    common = dict(augment=False, epochs=1, teacher_cache="disk", cache_dir=str(tmp_path / "cache"))
    first = distill(distill_config(teacher_ckpt, tmp_path / "a", **common), log=None)
    folder = Path(first.cache["folder"])
    key = json.loads((folder / "key.json").read_text())
    key["teacher"] = "0" * 64
    (folder / "key.json").write_text(json.dumps(key))
    with pytest.raises(ConfigError, match="stale teacher logits"):
        distill(distill_config(teacher_ckpt, tmp_path / "b", **common), log=None)
    assert not (tmp_path / "b" / "last.json").exists()
    key["teacher"] = read_checkpoint(teacher_ckpt).id
    (folder / "key.json").write_text(json.dumps(key))
    np.save(folder / "static.npy", np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(ConfigError, match="holds shape"):
        distill(distill_config(teacher_ckpt, tmp_path / "c", **common), log=None)


class _Stop(Exception):
    pass


@pytest.mark.parametrize(
    "method,options",
    [("kd", {}), ("crd", {"nce_k": 32, "feat_dim": 16}), ("vid", {}), ("kdpp", {"center_epochs": 2})],
)
def test_resume_after_interruption_is_exact(
    distill_config, teacher_ckpt: str, tmp_path: Path, method: str, options: dict
) -> None:
    common = dict(method=method, method_options=options, epochs=3, kd_augment="mixup")

    def stop(step: int) -> None:
        if step == 9 + 4:  # in the middle of epoch 2 (9 steps per epoch)
            raise _Stop

    with pytest.raises(_Stop):
        distill(distill_config(teacher_ckpt, tmp_path / "cut", **common), on_step=stop, log=None)
    resumed = distill(distill_config(teacher_ckpt, tmp_path / "cut", resume=True, **common), log=None)
    full = distill(distill_config(teacher_ckpt, tmp_path / "full", **common), log=None)
    assert _same(_weights(tmp_path / "cut"), _weights(tmp_path / "full"))
    assert resumed.student_test_last == full.student_test_last
    with pytest.raises(ConfigError, match="cannot resume"):
        distill(
            distill_config(teacher_ckpt, tmp_path / "cut", resume=True, **{**common, "lr": 0.3}), log=None
        )


@pytest.mark.parametrize("teacher_input", ["full", "low"])
def test_cross_resolution_student(
    distill_config, teacher_ckpt: str, tmp_path: Path, teacher_input: str
) -> None:
    result = distill(
        distill_config(
            teacher_ckpt, tmp_path / "cq", student_resolution=14, teacher_input=teacher_input, epochs=1
        ),
        log=None,
    )
    _, meta = load_model(tmp_path / "cq" / "last")
    assert meta["input_size"] == [14, 14]
    assert meta["input_resolution"]["size"] == [14, 14]
    evaluated = evaluate_checkpoint(tmp_path / "cq" / "last", precision="fp32", device="cpu")
    assert evaluated["metrics"]["accuracy"] == pytest.approx(result.student_test_last["accuracy"])
    views = set(result.teacher["metrics"])
    assert views == ({"full", "low"} if teacher_input == "low" else {"full"})


def test_student_alone_needs_no_teacher(distill_config, tmp_path: Path) -> None:
    result = distill(
        distill_config(
            None,
            tmp_path / "ce",
            method="ce",
            dataset="synthetic",
            dataset_options={"train_size": 160, "test_size": 64, "num_classes": 4},
            epochs=1,
        ),
        log=None,
    )
    assert result.teacher == {} and set(result.history[0]) >= {"train_loss_ce"}


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(method="fitnet", tau=2.0), "does not apply to method 'fitnet'"),
        (dict(method_options={"temprature": 2.0}), "did you mean 'tau'"),
        (dict(method="nope"), "unknown distillation method"),
        (dict(tau_from_calibration=True), "needs a fitted temperature"),
        (dict(dataset="mnist"), "differs from the teacher's"),
        (dict(val_fraction=0.3), "split the teacher was calibrated on"),
        (dict(teacher_input="low"), "needs a --student-resolution"),
    ],
)
def test_bad_configurations_are_refused(
    distill_config, teacher_ckpt: str, tmp_path: Path, overrides: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        distill(distill_config(teacher_ckpt, tmp_path / "bad", **overrides), log=None)
    assert not (tmp_path / "bad" / "last.json").exists()


def test_method_without_teacher_is_refused(distill_config, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs a teacher"):
        distill_config(None, tmp_path / "x", method="kd")


def test_per_epoch_cache_from_other_inputs_is_refused(
    distill_config, teacher_ckpt: str, tmp_path: Path
) -> None:
    common = dict(kd_augment="mixup", epochs=1, teacher_cache="disk", cache_dir=str(tmp_path / "cache"))
    first = distill(distill_config(teacher_ckpt, tmp_path / "a", **common), log=None)
    folder = Path(first.cache["folder"])
    (folder / "epoch-0001.json").write_text(json.dumps({"first_batch": "0" * 64}))
    with pytest.raises(ConfigError, match="computed from other inputs"):
        distill(distill_config(teacher_ckpt, tmp_path / "b", **common), log=None)
    (folder / "epoch-0001.json").unlink()
    with pytest.raises(ConfigError, match="no fingerprint"):
        distill(distill_config(teacher_ckpt, tmp_path / "c", **common), log=None)
    assert not (tmp_path / "c").exists()


def test_resume_refuses_a_changed_calibrator(distill_config, teacher_ckpt: str, tmp_path: Path) -> None:
    def stop(step: int) -> None:
        if step == 9 + 2:
            raise _Stop

    with pytest.raises(_Stop):
        distill(
            distill_config(teacher_ckpt, tmp_path / "r", epochs=2, teacher_calibration="auto"), on_step=stop
        )
    calibrate_checkpoint(teacher_ckpt, ["temperature"], device="cpu", precision="fp32", plots=False)
    try:  # a calibrator stored since the run started changes what "auto" means: refuse
        with pytest.raises(ConfigError, match=r"the teacher.s calibrator changed since the run started"):
            distill(
                distill_config(
                    teacher_ckpt, tmp_path / "r", epochs=2, teacher_calibration="auto", resume=True
                )
            )
    finally:
        for path in Path(teacher_ckpt).parent.glob("last.calibrat*"):
            path.unlink()


def test_overwrite_keeps_the_earlier_run_when_the_config_is_bad(
    distill_config, teacher_ckpt: str, tmp_path: Path
) -> None:
    distill(distill_config(teacher_ckpt, tmp_path / "r", epochs=1), log=None)
    with pytest.raises(ConfigError, match="exceeds"):
        distill(distill_config(teacher_ckpt, tmp_path / "r", batch_size=100000, overwrite=True), log=None)
    assert (tmp_path / "r" / "last.safetensors").exists()


def test_contradicting_options_are_refused(distill_config, teacher_ckpt: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="contradicts"):
        distill_config(teacher_ckpt, tmp_path / "x", kd_weight=0.9, method_options={"kd-weight": 0.1})
    with pytest.raises(ConfigError, match="drop one of them"):
        distill_config(
            teacher_ckpt,
            tmp_path / "x",
            teacher_calibration="temperature",
            tau_from_calibration=True,
            method_options={"tau": 2.0},
        )
    with pytest.raises(ConfigError, match="dataset options"):
        distill(distill_config(teacher_ckpt, tmp_path / "x", dataset_options={"train_size": 100}), log=None)


@pytest.mark.parametrize("path", ["channels_last", "compiled"])
def test_cache_is_bit_identical_to_on_the_fly_under_a_fast_teacher_path(
    distill_config, teacher_ckpt: str, tmp_path: Path, path: str
) -> None:
    from calikd.engine.frozen import can_compile

    if path == "compiled" and not can_compile(torch.device("cpu")):
        pytest.skip("torch.compile needs a C++ compiler")
    plain = dict(augment=False, epochs=2, teacher_path=path)
    off = distill(distill_config(teacher_ckpt, tmp_path / "off", teacher_cache="off", **plain), log=None)
    cached = distill(
        distill_config(teacher_ckpt, tmp_path / "mem", teacher_cache="memory", **plain), log=None
    )
    assert off.extra["teacher_path"]["path"] == path == cached.extra["teacher_path"]["path"]
    assert _same(_weights(tmp_path / "off"), _weights(tmp_path / "mem"))
    eager = distill(
        distill_config(teacher_ckpt, tmp_path / "eager", teacher_cache="off", augment=False, epochs=2),
        log=None,
    )
    assert eager.extra["teacher_path"]["path"] == "eager"
    # the fast path's logits are within the tolerance of eager, so training ends close to it
    for key, value in _weights(tmp_path / "eager").items():
        if value.is_floating_point():
            torch.testing.assert_close(_weights(tmp_path / "off")[key], value, rtol=1e-3, atol=1e-3)


def test_precision_choice_is_in_summary_report_and_checkpoint(
    distill_config, teacher_ckpt: str, tmp_path: Path
) -> None:
    result = distill(distill_config(teacher_ckpt, tmp_path / "run", precision="auto", epochs=1), log=None)
    choice = result.extra["precision"]
    assert choice["requested"] == "auto" and choice["chosen"] == result.precision
    assert choice["source"] == "static"  # a 9-step run is too short to measure
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["extra"]["precision"]["chosen"] == result.precision
    assert f"- precision: {result.precision} (static" in (tmp_path / "run" / "report.md").read_text()
    assert "- teacher path: eager" in (tmp_path / "run" / "report.md").read_text()
    assert read_checkpoint(tmp_path / "run" / "last").meta["precision"]["chosen"] == result.precision


def test_resume_keeps_the_measured_precision(
    distill_config, teacher_ckpt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import calikd.engine.precision as precision_module

    monkeypatch.setattr(precision_module, "PROBE_MIN_STEPS", 1)
    monkeypatch.setattr(precision_module, "fast_bf16", lambda _device: False)
    monkeypatch.setattr(precision_module, "measure", lambda names, timer: {"fp32": 1.0, "fp32-cl": 0.5})
    monkeypatch.setattr(precision_module.probe_cache, "busy_load", lambda: None)
    common = dict(epochs=2, precision="auto", teacher_cache="off")

    def stop(step: int) -> None:
        if step == 9 + 2:
            raise _Stop

    with pytest.raises(_Stop):
        distill(distill_config(teacher_ckpt, tmp_path / "run", **common), on_step=stop, log=None)
    assert read_checkpoint(tmp_path / "run" / "last").meta["precision"]["chosen"] == "fp32-cl"
    monkeypatch.setattr(precision_module, "measure", lambda names, timer: {"fp32": 0.5, "fp32-cl": 1.0})
    resumed = distill(distill_config(teacher_ckpt, tmp_path / "run", resume=True, **common), log=None)
    assert (resumed.precision, resumed.extra["precision"]["source"]) == ("fp32-cl", "resumed")
    fresh = distill(distill_config(teacher_ckpt, tmp_path / "fresh", **common), log=None)
    assert (fresh.precision, fresh.extra["precision"]["source"]) == ("fp32-cl", "cached")  # remembered


def test_raw_and_calibrated_students_of_one_seed_are_paired(
    distill_config, teacher_ckpt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Students compared with each other (raw vs calibrated teacher) start from the same weights and see the
    same batches, so their paired difference carries no sampling noise of its own (issue 15's protocol)."""
    import calikd.distill.train as train_module

    made: list[tuple[dict[str, torch.Tensor], list[torch.Tensor]]] = []  # (initial weights, inputs seen)
    original = train_module.create_model

    def recording(*args, **kwargs):
        model = original(*args, **kwargs)
        seen: list[torch.Tensor] = []
        made.append(({k: v.clone() for k, v in model.state_dict().items()}, seen))
        model.register_forward_pre_hook(lambda _m, inp: seen.append(inp[0].detach().clone()))
        return model

    monkeypatch.setattr(train_module, "create_model", recording)
    students = []
    for calibration in ("none", "temperature"):
        made.clear()
        cfg = distill_config(teacher_ckpt, tmp_path / calibration, teacher_calibration=calibration, epochs=1)
        distill(cfg, log=None)
        students.append(max(made, key=lambda entry: len(entry[1])))  # the model that was trained
    (w0, seen0), (w1, seen1) = students
    assert _same(w0, w1)  # same initial weights
    assert len(seen0) == len(seen1) > 0
    assert all(torch.equal(a, b) for a, b in zip(seen0, seen1, strict=True))  # same batches, same order


def test_reliability_plot_off_writes_no_image_and_says_why(
    distill_config, teacher_ckpt: str, tmp_path: Path
) -> None:
    from calikd.report.run import write_run_report

    run = tmp_path / "noplot"
    distill(distill_config(teacher_ckpt, run, epochs=1, reliability_plot=False), log=None)
    assert not (run / "reliability.png").exists()
    text = (run / "report.md").read_text()
    assert "reliability.png" not in text and "not drawn for this run, `reliability_plot` off" in text
    report = json.loads((run / "report.json").read_text())
    (run / "reliability.png").write_bytes(b"an earlier attempt's")  # never outlives a report without it
    written = write_run_report(report, {}, run, plot=False)
    assert not (run / "reliability.png").exists() and [p.name for p in written] == [
        "report.json",
        "report.md",
    ]


def test_best_checkpoint_tested_again_only_when_it_is_not_the_last_epoch(
    distill_config, teacher_ckpt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from calikd.engine import fit as fit_module

    reads: list[str] = []
    real = fit_module.read_checkpoint
    monkeypatch.setattr(fit_module, "read_checkpoint", lambda p: reads.append(Path(p).name) or real(p))
    last = distill(distill_config(teacher_ckpt, tmp_path / "one", epochs=1), log=None)
    assert last.best_epoch == 1 and reads == []  # the last epoch is the best: its test numbers are reused
    assert last.student_test_best == last.student_test_last
    monkeypatch.setattr(fit_module, "is_better", lambda val, best: best is None)  # epoch 1 stays the best
    earlier = distill(distill_config(teacher_ckpt, tmp_path / "two", epochs=2), log=None)
    assert earlier.best_epoch == 1 and reads == ["best"]
    evaluated = evaluate_checkpoint(tmp_path / "two" / "best", precision="fp32", device="cpu")
    assert earlier.student_test_best["accuracy"] == pytest.approx(evaluated["metrics"]["accuracy"])
