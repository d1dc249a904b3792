"""The `calikd` command: happy paths and bad input (clear message, exit 2, nothing half-written)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from calikd.cli import main

RunCli = Callable[[Sequence[str]], tuple[int, str, str]]
TINY = ["--dataset", "synthetic", "--dataset-options", "train_size=320", "test_size=100"]
FAST = [
    "--model",
    "mlp",
    "--model-kwargs",
    "width=32",
    "--epochs",
    "1",
    "--batch-size",
    "64",
    "--no-progress",
]


def test_python_dash_m_and_version() -> None:
    proc = subprocess.run([sys.executable, "-m", "calikd", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("calikd ")


def test_lists(run_cli: RunCli) -> None:
    code, out, _ = run_cli(["models", "list"])
    assert code == 0 and "resnet20" in out and "wrn_40_2" in out
    code, out, _ = run_cli(["data", "list"])
    assert code == 0 and "fashion-mnist" in out and "cifar100" in out


def test_train_then_evaluate(tmp_path: Path, run_cli: RunCli) -> None:
    out_dir = tmp_path / "teacher"
    code, out, err = run_cli(["train-teacher", *TINY, *FAST, "--out", str(out_dir)])
    assert code == 0, err
    assert "checkpoint:" in out and str(out_dir / "last.safetensors") in out
    assert "accuracy" in out and "ece" in out
    report = tmp_path / "eval.json"
    code, out, err = run_cli(["evaluate", str(out_dir), "--json", str(report)])
    assert code == 0, err
    result = json.loads(report.read_text())
    assert result["split"] == "test" and result["num_samples"] == 100
    assert 0 <= result["metrics"]["ece"] <= 1
    code, out, _ = run_cli(["evaluate", str(out_dir / "best.safetensors"), "--split", "val", "--json", "-"])
    assert code == 0 and json.loads(out)["num_samples"] == 32


def test_yaml_config(tmp_path: Path, run_cli: RunCli) -> None:
    cfg = tmp_path / "teacher.yaml"
    cfg.write_text(
        "dataset: synthetic\ndataset_options: {train_size: 320, test_size: 100}\nmodel: mlp\n"
        "model_kwargs: {width: 16}\nepochs: 1\nbatch_size: 64\nprogress: false\n"
    )
    code, _, err = run_cli(["train-teacher", "--config", str(cfg), "--out", str(tmp_path / "r")])
    assert code == 0, err
    meta = json.loads((tmp_path / "r" / "last.json").read_text())
    assert meta["model"]["kwargs"] == {"width": 16}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--lr", "-0.1"], "'lr' must be > 0.0"),
        (["--batch-size", "0"], "'batch_size' must be >= 1"),
        (["--model", "resent20"], "did you mean 'resnet20'"),
        (["--model", "resnet21"], "ResNet depth must be 6n+2"),
        (["--epochs", "0"], "'epochs' must be >= 1"),
        (
            ["--dataset", "cifar10", "--dataset-options", "--data-dir", "{tmp}/nothing"],
            "calikd data fetch cifar10",
        ),
    ],
)
def test_bad_train_input(extra: list[str], message: str, tmp_path: Path, run_cli: RunCli) -> None:
    out_dir = tmp_path / "out"
    argv = ["train-teacher", *TINY, *FAST, "--out", str(out_dir), *[e.format(tmp=tmp_path) for e in extra]]
    code, _, err = run_cli(argv)
    assert code == 2
    assert message in err
    assert not out_dir.exists()


def test_unknown_flag_and_yaml_key(tmp_path: Path, run_cli: RunCli) -> None:
    code, _, err = run_cli(["train-teacher", "--epoch", "3"])
    assert code == 2 and "did you mean '--epochs'" in err
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("epoch: 3\n")
    code, _, err = run_cli(["train-teacher", "--config", str(cfg), "--out", str(tmp_path / "o")])
    assert code == 2 and "unknown key 'epoch'" in err and "did you mean 'epochs'" in err
    assert not (tmp_path / "o").exists()


def test_unwritable_output(tmp_path: Path, run_cli: RunCli) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, err = run_cli(["train-teacher", *TINY, *FAST, "--out", str(blocker / "sub")])
    assert code == 2 and "not writable" in err


def test_pickle_checkpoint_is_refused(tmp_path: Path, run_cli: RunCli) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):  # would create a file if ever unpickled
            return (open, (str(marker), "w"))

    bad = tmp_path / "teacher.safetensors"
    bad.write_bytes(pickle.dumps(Payload()))
    code, _, err = run_cli(["evaluate", str(bad)])
    assert code == 2 and "pickle" in err
    assert not marker.exists()


def test_distill_command_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    teacher = tmp_path / "teacher"
    options = ["--dataset-options", "train_size=160", "test_size=64", "num_classes=3"]
    common = [
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--precision",
        "fp32",
        "--device",
        "cpu",
        "--no-progress",
    ]
    assert (
        main(
            [
                "train-teacher",
                "--dataset",
                "synthetic",
                *options,
                "--model",
                "cnn",
                "--model-kwargs",
                "width=4",
                *common,
                "--out",
                str(teacher),
            ]
        )
        == 0
    )
    capsys.readouterr()
    code = main(
        [
            "distill",
            "--teacher",
            str(teacher / "last"),
            "--student",
            "mlp",
            "--method",
            "dkd",
            "--tau",
            "2",
            "--teacher-calibration",
            "temperature",
            "--kd-augment",
            "mixup",
            *common,
            "--out",
            str(tmp_path / "student"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "student, last" in out and "teacher, calibrated" in out and "fitted now" in out
    assert (tmp_path / "student" / "report.md").exists()
    assert (
        main(["evaluate", str(tmp_path / "student" / "last"), "--precision", "fp32", "--device", "cpu"]) == 0
    )


def test_distill_command_rejects_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["distill", "--method", "kd", "--student", "cnn", "--out", str(tmp_path / "s")]) == 2
    assert "needs a teacher" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["distill", "--kd-augmnet", "mixup"])
    assert exc.value.code == 2
    assert "--kd-augment" in capsys.readouterr().err
    assert main(["distill", "--teacher", str(tmp_path / "missing"), "--out", str(tmp_path / "s")]) == 2
    assert not (tmp_path / "s").exists()


def test_methods_command_lists_and_explains(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in ("kd", "dkd", "crd", "rkd", "ctkd", "ce"):
        assert f"\n{name} " in out
    assert "Peng et al., ICCV 2019" in out and "distiller_zoo" not in out  # the paper only, in the list
    assert main(["methods", "cc"]) == 0
    assert "source: Peng et al., ICCV 2019; defaults: RepDistiller" in capsys.readouterr().out
    assert main(["methods", "dkd"]) == 0
    assert "beta" in capsys.readouterr().out
    assert main(["methods", "dkk"]) == 2
    assert "did you mean 'dkd'" in capsys.readouterr().err
