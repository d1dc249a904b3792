"""Experiment trackers: names checked, TensorBoard and MLflow logs read back, failures contained."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from calikd.engine.tracking import Trackers, TrackingWarning, flatten, parse_log_targets
from calikd.errors import ConfigError

CONFIG = {"method": "kd", "tau": 4.0, "model_kwargs": {"width": 32}, "milestones": [0.5, 0.75]}


def _png(path: Path) -> Path:
    Image.fromarray(np.full((6, 9, 3), 200, np.uint8)).save(path)
    return path


def _log_a_run(names, out: Path, png: Path) -> Trackers:
    trackers = Trackers(names, out, "kd-run")
    trackers.log_config(CONFIG)
    for epoch in (1, 2):
        trackers.log_metrics(
            {"train/loss": 1.0 / epoch, "val/accuracy": 0.5 + epoch / 10, "flag": True}, epoch
        )
    trackers.log_metrics({"val/nll": float("nan"), "test/ece": 0.03})  # NaN dropped, step stays 2
    trackers.log_image("reliability", png)
    return trackers


def test_names_are_parsed_and_checked() -> None:
    assert parse_log_targets(["tensorboard,mlflow", "mlflow"]) == ("tensorboard", "mlflow")
    assert parse_log_targets("none") == () and parse_log_targets(None) == ()
    with pytest.raises(ConfigError, match=r"unknown tracker 'tensorbord'.*did you mean 'tensorboard'"):
        parse_log_targets(["tensorbord"])
    assert flatten(CONFIG) == {
        "method": "kd",
        "tau": 4.0,
        "model_kwargs.width": 32,
        "milestones": "[0.5, 0.75]",
    }


def test_tensorboard_logs_read_back(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trackers = _log_a_run(["tensorboard"], tmp_path, _png(tmp_path / "r.png"))
    log_dir = trackers.tracker("tensorboard").log_dir
    trackers.close()
    events = EventAccumulator(str(log_dir), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    loss = [(e.step, round(e.value, 6)) for e in events.Scalars("train/loss")]
    assert loss == [(1, 1.0), (2, 0.5)]
    assert [(e.step, round(e.value, 6)) for e in events.Scalars("test/ece")] == [(2, 0.03)]
    assert "val/nll" not in tags["scalars"] and "flag" not in tags["scalars"]
    image = events.Images("reliability")[0]
    assert (image.step, image.width, image.height) == (2, 9, 6)
    assert any("config" in tag for tag in tags["tensors"])


def test_mlflow_logs_read_back(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    trackers = _log_a_run(["mlflow"], tmp_path, _png(tmp_path / "r.png"))
    mlflow_tracker = trackers.tracker("mlflow")
    trackers.close()
    assert mlflow_tracker.uri == (tmp_path / "mlruns").resolve().as_uri()
    client = MlflowClient(tracking_uri=mlflow_tracker.uri)
    run = client.get_run(mlflow_tracker.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "kd-run"
    assert run.data.params["model_kwargs.width"] == "32" and run.data.params["tau"] == "4.0"
    history = client.get_metric_history(mlflow_tracker.run_id, "train/loss")
    assert sorted((m.step, m.value) for m in history) == [(1, 1.0), (2, 0.5)]
    assert run.data.metrics["test/ece"] == pytest.approx(0.03) and "val/nll" not in run.data.metrics
    assert [a.path for a in client.list_artifacts(mlflow_tracker.run_id, "images")] == ["images/r.png"]


def test_wandb_runs_offline_by_default(tmp_path: Path, monkeypatch) -> None:
    calls: dict[str, list] = {"init": [], "log": [], "finish": []}

    class FakeRun:
        config = types.SimpleNamespace(
            update=lambda values, allow_val_change: calls.setdefault("config", values)
        )

        def log(self, values, step):
            calls["log"].append((sorted(values), step))

        def finish(self, exit_code):
            calls["finish"].append(exit_code)

    fake = types.ModuleType("wandb")
    fake.init = lambda **kw: calls["init"].append(kw) or FakeRun()
    fake.Image = lambda path: ("image", path)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    with _log_a_run(["wandb"], tmp_path, _png(tmp_path / "r.png")):
        pass
    assert calls["init"][0]["mode"] == "offline" and calls["init"][0]["dir"] == str(tmp_path)
    assert calls["config"]["model_kwargs.width"] == 32
    assert calls["log"][:2] == [(["train/loss", "val/accuracy"], 1), (["train/loss", "val/accuracy"], 2)]
    assert calls["log"][-1] == (["reliability"], 2) and calls["finish"] == [0]


def test_a_missing_package_is_a_clear_error_and_a_failing_tracker_is_dropped(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ConfigError, match="--log wandb needs the 'wandb' package"):
        Trackers(["wandb"], tmp_path, "run")
    pytest.importorskip("tensorboard")
    trackers = Trackers(["tensorboard"], tmp_path, "run")
    trackers.tracker("tensorboard").log_metrics = lambda metrics, step: 1 / 0
    with pytest.warns(TrackingWarning, match=r"log_metrics failed .*ZeroDivisionError"):
        trackers.log_metrics({"a": 1.0}, 1)
    assert not trackers
    trackers.log_metrics({"a": 2.0}, 2)  # nothing left to log to, and no error
    trackers.close()


def test_a_training_run_logs_to_tensorboard_and_mlflow(tmp_path: Path, monkeypatch, run_cli) -> None:
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run = tmp_path / "teacher"
    argv = ["train-teacher", "--dataset", "synthetic", "--dataset-options", "train_size=200", "test_size=60",
            "--model", "mlp", "--model-kwargs", "width=16", "--epochs", "2", "--batch-size", "50",
            "--no-progress", "--out", str(run), "--log", "tensorboard", "mlflow"]  # fmt: skip
    code, _, err = run_cli(argv)
    assert code == 0, err
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("val/accuracy")] == [1, 2]
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2]
    assert events.Scalars("test_last/ece")[0].step == 2
    client = MlflowClient(tracking_uri=(run / "mlruns").resolve().as_uri())
    (found,) = client.search_runs([client.get_experiment_by_name("calikd").experiment_id])
    assert found.info.status == "FINISHED" and found.data.params["model"] == "mlp"
    assert [m.step for m in client.get_metric_history(found.info.run_id, "val/nll")] == [1, 2]
    assert "test_best/accuracy" in found.data.metrics
    code, _, err = run_cli([*argv[:-3], "--overwrite", "--log", "tensorbord"])
    assert code != 0 and "did you mean 'tensorboard'" in err
