"""Data-parallel training under torchrun (gloo, 2 CPU processes) against single-process runs.

Stated tolerance: with the same global batch, seed and no randomness inside the step (fp32, no augmentation,
no batch norm), a 2-process run's metrics equal the single-process run's to 1e-5 and its weights to 1e-5
(only the order of float sums differs: gradients are averaged over ranks by DDP). Metrics reduced across
ranks (gathered logits) equal the single-process metrics to 1e-6.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from calikd.data import ArrayDataset, BatchLoader
from calikd.distill import DistillConfig, distill
from calikd.engine.distributed import Distributed, distributed_session
from calikd.engine.run import check_world_size
from calikd.errors import ConfigError
from calikd.metrics import calibration_report
from calikd.teacher import TeacherConfig, train_teacher

WORKER = Path(__file__).with_name("ddp_worker.py")
SMALL = {"train_size": 640, "test_size": 200, "seed": 5}
TOL = 1e-5


def torchrun(args: list[str], cwd: Path, nproc: int = 2) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc_per_node=nproc ARGS`` with one thread per process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def run_worker(task: str, args: dict, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], dict | None]:
    args_file = tmp_path / f"{task}-args.json"
    result = tmp_path / f"{task}-result.json"
    result.unlink(missing_ok=True)
    args_file.write_text(json.dumps({**args, "result": str(result)}))
    proc = torchrun([str(WORKER), task, str(args_file)], tmp_path)
    return proc, json.loads(result.read_text()) if result.exists() else None


def teacher_args(out: Path, **overrides: object) -> dict:
    base = dict(
        dataset="synthetic",
        dataset_options=dict(SMALL),
        model="mlp",
        model_kwargs={"norm": "none", "width": 64},
        epochs=2,
        batch_size=64,
        lr=0.05,
        augment=False,
        precision="fp32",
        device="cpu",
        progress=False,
        out=str(out),
    )
    base.update(overrides)
    return base


def close(a: dict, b: dict, keys: tuple[str, ...] = ("accuracy", "nll", "ece")) -> None:
    for key in keys:
        assert a[key] == pytest.approx(b[key], abs=TOL), key


def same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(a), load_file(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], atol=TOL, rtol=0)


# ------------------------------------------------------------------ single process, no process group
def test_single_process_defaults() -> None:
    runtime = Distributed.current()
    assert (runtime.rank, runtime.world_size, runtime.enabled, runtime.is_main) == (0, 1, False, True)
    assert runtime.seed_parts() == ()
    assert runtime.shard(7) == (0, 7)
    x = torch.arange(6.0)
    assert runtime.gather_rows(x) is x
    assert torch.equal(runtime.sum(x), x)
    with distributed_session("cpu") as session:
        assert not session.enabled


def test_shards_cover_everything_once() -> None:
    for n in (0, 1, 5, 10, 101):
        for world in (1, 2, 3, 8):
            parts = [Distributed(r, world).shard(n) for r in range(world)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
            assert max(hi - lo for lo, hi in parts) - min(hi - lo for lo, hi in parts) <= 1


def test_rank_batches_together_are_the_single_process_batches() -> None:
    data = ArrayDataset(torch.zeros(50, 1, 2, 2, dtype=torch.uint8), torch.arange(50) % 3)
    kwargs = dict(shuffle=True, seed=4, drop_last=True, with_indices=True)
    single = BatchLoader(data, 12, **kwargs)
    ranks = [BatchLoader(data, 12, rank=r, world_size=3, **kwargs) for r in range(3)]
    for loader in (single, *ranks):
        loader.set_epoch(2, start_batch=1)
    assert len(ranks[0]) == len(single) == 4
    assert ranks[0].local_batch_size == 4
    for whole, *parts in zip(single, *ranks, strict=True):
        assert torch.equal(whole[2], torch.cat([p[2] for p in parts]))
        assert torch.equal(whole[1], torch.cat([p[1] for p in parts]))


def test_loader_refuses_batches_that_do_not_split() -> None:
    data = ArrayDataset(torch.zeros(20, 1, 2, 2, dtype=torch.uint8), torch.zeros(20, dtype=torch.int64))
    with pytest.raises(ConfigError, match="batch_size 10 cannot be split evenly over 3 processes"):
        BatchLoader(data, 10, shuffle=True, drop_last=True, rank=0, world_size=3)
    with pytest.raises(ConfigError, match="drop_last"):
        BatchLoader(data, 10, shuffle=True, drop_last=False, rank=0, world_size=2)
    with pytest.raises(ConfigError, match="rank 2 is not within a world of 2"):
        BatchLoader(data, 10, shuffle=True, drop_last=True, rank=2, world_size=2)


def test_resume_on_another_world_size_is_refused(tmp_path: Path) -> None:
    check_world_size({"world_size": 2}, Distributed(0, 2), tmp_path)
    check_world_size({}, Distributed(), tmp_path)  # checkpoints from before DDP: one process
    with pytest.raises(ConfigError, match="trained on 2 process\\(es\\), now 1") as info:
        check_world_size({"world_size": 2}, Distributed(), tmp_path)
    assert "--nproc_per_node=2" in str(info.value.hint)


def test_sync_bn_needs_cuda(tmp_path: Path) -> None:
    from calikd.engine.distributed import sync_batch_norm

    model = torch.nn.BatchNorm1d(3)
    assert sync_batch_norm(model, True, Distributed(), torch.device("cpu")) is model  # one process: no-op
    with pytest.raises(ConfigError, match="sync_bn needs CUDA"):
        sync_batch_norm(model, True, Distributed(0, 2), torch.device("cpu"))


def test_torchrun_environment_without_rendezvous_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    for key in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ConfigError, match="MASTER_ADDR, MASTER_PORT are not"), distributed_session("cpu"):
        pass


# ------------------------------------------------------------------ 2 processes (gloo)
def test_metrics_reduced_across_ranks_equal_single_process(tmp_path: Path) -> None:
    args = {"n": 1001, "classes": 10, "seed": 11}  # an odd count: the shards differ in size
    proc, result = run_worker("metrics", args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert result is not None and result["world_size"] == 2
    assert result["same_order"]
    gen = torch.Generator().manual_seed(11)
    logits = torch.randn(1001, 10, generator=gen) * 3
    labels = torch.randint(0, 10, (1001,), generator=gen)
    single = calibration_report(logits, labels, n_bins=15).scalars()
    for key in ("accuracy", "nll", "ece", "ace", "brier", "mce"):
        if key in single:
            assert result["metrics"][key] == pytest.approx(single[key], abs=1e-6), key
    assert result["summed_correct"] == int((logits.argmax(1) == labels).sum())


def test_teacher_cli_under_torchrun_matches_single_process(tmp_path: Path) -> None:
    flags = [
        "--dataset=synthetic",
        "--dataset-options",
        *(f"{k}={v}" for k, v in SMALL.items()),
        "--model=mlp",
        "--model-kwargs",
        "norm=none",
        "width=64",
        "--epochs=2",
        "--batch-size=64",
        "--lr=0.05",
        "--no-augment",
        "--precision=fp32",
        "--device=cpu",
        "--no-progress",
    ]
    proc = torchrun(["-m", "calikd", "train-teacher", *flags, "--out=ddp"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("test metrics") == 1  # rank 0 alone prints
    assert proc.stdout.count("epoch   2/2") == 1
    single = train_teacher(TeacherConfig(**teacher_args(tmp_path / "single")), log=None)
    ddp = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert ddp["extra"]["world_size"] == 2
    assert (
        ddp["extra"]["precision"]
        == {**single.extra["precision"]}
        == {
            "requested": "fp32",
            "chosen": "fp32",
            "source": "forced",
            "images_per_s": {},
            "reason": "",
        }
    )
    close(ddp["test_last"], single.test_last)
    for h_ddp, h_single in zip(ddp["history"], single.history, strict=True):
        for key in ("val_accuracy", "val_nll", "val_ece", "train_loss", "train_accuracy"):
            assert h_ddp[key] == pytest.approx(h_single[key], abs=TOL), key
    same_weights(tmp_path / "ddp" / "last.safetensors", tmp_path / "single" / "last.safetensors")
    assert sorted(os.listdir(tmp_path / "ddp")) == sorted(os.listdir(tmp_path / "single"))


def test_interrupted_ddp_run_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    steps_per_epoch = int(SMALL["train_size"] * 0.9) // 64
    args = teacher_args(tmp_path / "run", epochs=3)
    proc, _ = run_worker("teacher", {**args, "stop_at": steps_per_epoch + 2}, tmp_path)
    assert proc.returncode != 0 and "stopped at step" in proc.stderr
    assert json.loads((tmp_path / "run" / "last.json").read_text())["epoch"] == 1
    proc, resumed = run_worker("teacher", {**args, "resume": True}, tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc, full = run_worker("teacher", teacher_args(tmp_path / "full", epochs=3), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert resumed is not None and full is not None
    assert resumed["test_last"] == full["test_last"]  # the same processes: bit-identical
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in full["history"]]
    a, b = load_file(tmp_path / "run" / "last.safetensors"), load_file(tmp_path / "full" / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the same run on one process refuses to resume it
    with pytest.raises(ConfigError, match="trained on 2 process"):
        train_teacher(TeacherConfig(**{**args, "resume": True}), log=None)


def test_distill_cli_under_torchrun_matches_single_process(tmp_path: Path) -> None:
    teacher = train_teacher(TeacherConfig(**teacher_args(tmp_path / "teacher")), log=None)
    flags = [
        f"--teacher={teacher.out_dir / 'last'}",
        "--teacher-calibration=temperature",
        "--method=kd",
        "--student=mlp",
        "--student-kwargs",
        "norm=none",
        "width=32",
        "--epochs=2",
        "--batch-size=64",
        "--lr=0.05",
        "--no-augment",
        "--precision=fp32",
        "--device=cpu",
        "--no-progress",
        "--teacher-cache=disk",
        "--cache-dir=cache",
    ]
    proc = torchrun(["-m", "calikd", "distill", *flags, "--out=ddp"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("test metrics") == 1
    ddp = json.loads((tmp_path / "ddp" / "report.json").read_text())
    single = distill(
        DistillConfig(
            teacher=str(teacher.out_dir / "last"),
            teacher_calibration="temperature",
            method="kd",
            student="mlp",
            student_kwargs={"norm": "none", "width": 32},
            epochs=2,
            batch_size=64,
            lr=0.05,
            augment=False,
            precision="fp32",
            device="cpu",
            progress=False,
            out=str(tmp_path / "single"),
        ),
        log=None,
    )
    close(ddp["student_test_last"], single.student_test_last, ("accuracy", "nll", "ece", "ace"))
    assert ddp["teacher"]["temperature"] == pytest.approx(single.teacher["temperature"], abs=1e-6)
    same_weights(tmp_path / "ddp" / "last.safetensors", tmp_path / "single" / "last.safetensors")
    # the static teacher-logit cache: both ranks' shares merged into one table, written once by rank 0
    (folder,) = (tmp_path / "cache").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["key.json", "static.npy"]
