"""The Ray executor on a local Ray instance started here: same runs and store as the local executor,
failures recorded, restarts resume, the CLI flags, and a clear error without Ray."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_sweep import sweep_dict

from calikd.cli import main
from calikd.errors import ConfigError
from calikd.experiments import expand, parse_spec, run_sweep
from calikd.experiments.ray_executor import RayOptions, record_task_error, run_in_task
from calikd.store.results import ResultsStore


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """A local two-CPU Ray instance for this module's tests (which skip without Ray)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


def test_ray_sweep_matches_the_local_one_and_resumes(
    tmp_path: Path, ray_cluster: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = parse_spec(sweep_dict(tmp_path, out="sweep"))  # relative: run ids equal in both folders
    statuses: dict[str, dict[str, tuple[Any, ...]]] = {}
    for executor in ("local", "ray"):
        (tmp_path / executor).mkdir()
        monkeypatch.chdir(tmp_path / executor)  # Ray tasks work in the driver's folder too
        lines: list[str] = []
        outcome = run_sweep(spec, db_path="calikd.db", executor=executor, log=lines.append)
        assert outcome.ok and outcome.counts["finished"] == 1 + 1 + 3, lines
        progress = [line.split("]")[0].strip() for line in lines if line.startswith("  [")]
        assert progress == ["[1/1", "[1/1", "[1/3", "[2/3", "[3/3"]
        assert "ETA" in lines[-2] and "elapsed" in lines[-1]
        with ResultsStore("calikd.db") as store:
            runs = store.list_runs(sweep="tiny")
        statuses[executor] = {r.run_id: (r.kind, r.name, r.status, r.attempts) for r in runs}
        assert all(0 <= r.metrics.get("student_test_accuracy", 0) <= 1 for r in runs)
        assert (tmp_path / executor / "sweep" / "teachers").is_dir()
    assert statuses["ray"] == statuses["local"]
    assert {s[2:] for s in statuses["ray"].values()} == {("finished", 1)}
    assert outcome.db_path == str(tmp_path / "ray" / "calikd.db")  # absolute for the nodes
    again = run_sweep(spec, db_path="calikd.db", executor="ray", ray_options={"cpus_per_run": 1}, log=None)
    assert again.counts == {"done before": 5}


def test_a_failing_ray_run_is_recorded_and_the_rest_go_on(tmp_path: Path, ray_cluster: None) -> None:
    db = str(tmp_path / "calikd.db")
    missing = str(tmp_path / "missing" / "last")
    spec = parse_spec(sweep_dict(tmp_path, teachers=[{"name": "gone", "checkpoint": missing}]))
    outcome = run_sweep(spec, db_path=db, executor="ray", log=None)
    assert outcome.counts == {"finished": 1, "failed": 2, "blocked": 1}
    with ResultsStore(db) as store:
        failed = store.list_runs(sweep="tiny", status="failed")
        assert len(failed) == 2 and all("missing" in r.error for r in failed)


def test_sweep_command_with_the_ray_executor(
    tmp_path: Path, ray_cluster: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(sweep_dict(tmp_path, methods=["kd"], calibrations=["temperature"])))
    db = tmp_path / "runs.db"
    args = ["sweep", str(path), "--db", str(db), "--executor", "ray", "--ray-cpus-per-run", "1"]
    assert main(args) == 0
    assert "done: 3 finished" in capsys.readouterr().out
    assert main(["sweep", str(path), "--db", str(db), "--ray-gpus-per-run", "1"]) == 2
    assert "applies to --executor ray only" in capsys.readouterr().err
    assert main([*args, "--workers", "2"]) == 2
    assert "--workers applies to --executor local only" in capsys.readouterr().err


def test_without_ray_the_error_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    spec = parse_spec(sweep_dict(tmp_path))
    with pytest.raises(ConfigError, match="pip install 'calikd\\[ray\\]'"):
        run_sweep(spec, db_path=str(tmp_path / "x.db"), executor="ray", log=None)
    assert not (tmp_path / "x.db").exists()  # refused before anything is written
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(sweep_dict(tmp_path)))
    assert main(["sweep", str(path), "--db", str(tmp_path / "y.db"), "--executor", "ray"]) == 2
    assert "pip install 'calikd[ray]'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "options,message",
    [
        ({"cpus_per_ran": 2}, "did you mean 'cpus_per_run'"),
        ({"gpus_per_run": -1}, "must be a number >= 0"),
        ({"cpus_per_run": 0}, "must ask for some CPUs or GPUs"),
    ],
)
def test_bad_ray_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RayOptions.coerce(options)


def test_a_task_uses_its_gpu_or_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With GPUs the run's device becomes auto; without, the task sees no GPU; threads follow the CPUs."""
    seen: list[tuple[Any, ...]] = []
    monkeypatch.setattr(
        "calikd.experiments.tasks.execute",
        lambda plan, db, threads: seen.append((plan.config["device"], threads)) or "finished",
    )
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.chdir(tmp_path)
    teacher = expand(parse_spec(sweep_dict(tmp_path)))[0]  # its config says device: cpu
    assert RayOptions(cpus_per_run=2.5).threads == 2
    assert run_in_task(teacher, "db", 2, 1.0, str(tmp_path)) == "finished"
    assert run_in_task(teacher, "db", 1, 0.0, str(tmp_path)) == "finished"
    assert seen == [("auto", 2), ("cpu", 1)]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
    with pytest.raises(ConfigError, match="does not exist on node"):
        run_in_task(teacher, "db", 1, 0.0, str(tmp_path / "elsewhere"))


def test_a_dead_task_is_recorded_failed_unless_another_worker_holds_it(tmp_path: Path) -> None:
    db = str(tmp_path / "calikd.db")
    plan = expand(parse_spec(sweep_dict(tmp_path)))[0]
    with ResultsStore(db) as store:
        store.register(plan.run_id, sweep="tiny", kind=plan.kind, name=plan.name, config=plan.config)
        assert store.claim(plan.run_id, worker="node2:123/abc")  # a live heartbeat, then its worker dies
    assert record_task_error(db, plan, RuntimeError("boom"), worker_died=False) == "skipped"
    assert record_task_error(db, plan, RuntimeError("worker killed"), worker_died=True) == "failed"
    with ResultsStore(db) as store:
        run = store.get(plan.run_id)
    assert run.status == "failed" and "worker killed" in run.error
