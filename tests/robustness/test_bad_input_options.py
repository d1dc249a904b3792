"""Bad YAML configs, sweep files and command-line arguments: each is refused before any work with a message
naming the key or flag (and the nearest valid one), exit code 2, and no output folder, results store or file
written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from bad_input_helpers import DATA, EVAL, FAST, MODEL, RunCli, assert_refused, copy_run, train_tiny_teacher

from calikd.engine.run import prepare_run_dir
from calikd.errors import ConfigError, TrainingDivergedError
from calikd.teacher import TeacherConfig, train_teacher
from calikd.utils.run_lock import LOCK_NAME, run_dir_lock_scope

TRAIN = ["train-teacher", *DATA, *MODEL, *FAST]


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_teacher(tmp_path_factory.mktemp("teacher") / "run")


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Default outputs (runs/..., runs/calikd.db) would land in ``tmp_path``, where they are looked for."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.chdir(tmp_path)


def _yaml(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize(
    ("command", "text", "messages"),
    [
        (
            "train-teacher",
            "dataset: synthetic\nwarmup_epoch: 1\n",
            ["unknown key 'warmup_epoch' in config file", "(did you mean 'warmup_epochs'?)", "valid keys:"],
        ),
        (
            "distill",
            "method: kd\nstudnet: mlp\n",
            ["unknown key 'studnet' in config file", "(did you mean 'student'?)"],
        ),
        (
            "train-teacher",
            "dataset: synthetic\nepochs: three\n",
            ["config key 'epochs' must be an integer; got 'three'"],
        ),
        (
            "train-teacher",
            "augment: yes please\n",
            ["config key 'augment' must be true or false; got 'yes please'"],
        ),
        ("train-teacher", "model_kwargs: 16\n", ["config key 'model_kwargs' must be a mapping; got 16"]),
        ("train-teacher", "momentum: 1.5\n", ["config key 'momentum' must be <= 0.999; got 1.5"]),
        ("train-teacher", "val_fraction: -0.1\n", ["config key 'val_fraction' must be >= 0.0; got -0.1"]),
        ("distill", "method: ce\ntau: 0\n", ["config key 'tau' must be > 0.0; got 0.0"]),
        (
            "train-teacher",
            "schedule: cosinee\n",
            ["config key 'schedule' has invalid value 'cosinee' (did you mean 'cosine'?)"],
        ),
        (
            "train-teacher",
            "epochs: 5\nwarmup_epochs: 8\n",
            ["warmup_epochs (8.0) must not exceed epochs (5)"],
        ),
        ("train-teacher", "dataset: [synthetic\n", ["is not valid YAML"]),
        ("train-teacher", "- dataset\n- synthetic\n", ["must hold a mapping of keys to values, not list"]),
    ],
    ids=[
        "unknown-key",
        "unknown-key-distill",
        "int-type",
        "bool-type",
        "mapping-type",
        "above-max",
        "below-min",
        "zero-tau",
        "bad-choice",
        "inconsistent",
        "not-yaml",
        "not-a-mapping",
    ],
)
def test_bad_yaml_config(
    command: str, text: str, messages: list[str], tmp_path: Path, run_cli: RunCli
) -> None:
    config = _yaml(tmp_path, text)
    out = tmp_path / "run"
    err = assert_refused(run_cli, [command, "--config", config, "--out", out], *messages, root=tmp_path)
    assert "error: " in err


def test_a_missing_config_file(tmp_path: Path, run_cli: RunCli) -> None:
    missing = tmp_path / "teacher.yaml"
    assert_refused(
        run_cli,
        ["train-teacher", "--config", missing],
        f"cannot read config file '{missing}': No such file or directory",
        root=tmp_path,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "name: s\ndataset: synthetic\nteachers: [{name: a, model: mlp}]\nstudnets: [mlp]\n",
            "unknown key 'studnets' in the sweep file (did you mean 'students'?)",
        ),
        (
            "name: s\ndataset: synthetic\nteachers: [{name: a, model: mlp, epohcs: 3}]\nstudents: [mlp]\n",
            "unknown key 'epohcs' in teacher 'a' of the sweep (did you mean 'epochs'?)",
        ),
    ],
    ids=["top-level", "teacher-entry"],
)
def test_sweep_file_with_an_unknown_key(text: str, message: str, tmp_path: Path, run_cli: RunCli) -> None:
    spec = _yaml(tmp_path, text, "study.yaml")
    assert_refused(run_cli, ["sweep", spec, "--db", tmp_path / "calikd.db"], message, root=tmp_path)


# ---------------------------------------------------------------------------------------- unknown names
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["train-teacher", "--dataset", "fashoin-mnist"],
            "unknown dataset 'fashoin-mnist' (did you mean 'fashion-mnist'?)",
        ),
        (
            ["train-teacher", *DATA, "--model", "resnt20"],
            "unknown model 'resnt20' (did you mean 'resnet20'?)",
        ),
        (
            ["train-teacher", *DATA, "--model", "mlp", "--model-kwargs", "widht=8"],
            "has no argument 'widht' (did you mean 'width'?)",
        ),
        (
            ["train-teacher", *DATA, "train_sizee=9"],
            "has no option 'train_sizee' (did you mean 'train_size'?)",
        ),
        (["distill", "--method", "dkdd"], "unknown distillation method 'dkdd' (did you mean 'dkd'?)"),
        (
            ["distill", "--teacher", "nowhere/last", "--method", "dkd", "--method-options", "betta=8"],
            "unknown key 'betta' in options of method 'dkd'",
        ),
        (
            ["distill", "--method", "ce", *DATA, "--student", "mlpp"],
            "unknown model 'mlpp' (did you mean 'mlp'?)",
        ),
        (["data", "fetch", "cifr10"], "unknown dataset 'cifr10' (did you mean 'cifar10'?)"),
        (["methods", "dkdd"], "unknown distillation method 'dkdd' (did you mean 'dkd'?)"),
        (["train-teacher", "--lr-schedule", "cosine"], "unrecognized arguments: --lr-schedule"),
        (
            ["distill", "--tau", "4", "--teacher-calbration", "none"],
            "(did you mean '--teacher-calibration'?)",
        ),
    ],
    ids=[
        "dataset",
        "model",
        "model-kwarg",
        "dataset-option",
        "method",
        "method-option",
        "student",
        "fetch",
        "methods",
        "flag",
        "flag-did-you-mean",
    ],
)
def test_unknown_names(argv: list[str], message: str, tmp_path: Path, run_cli: RunCli) -> None:
    out = ["--out", tmp_path / "run"] if argv[0] in ("train-teacher", "distill") else []
    assert_refused(run_cli, [*argv, *out], message, root=tmp_path)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["calibrate", "{run}", "--method", "temprature"],
            "unknown calibration method 'temprature' (did you mean 'temperature'?)",
        ),
        (["calibrate", "{run}", "--fit-split", "test"], "refusing to fit calibration on the 'test' split"),
        (["evaluate", "{run}", "--dataset", "mnistt"], "unknown dataset 'mnistt' (did you mean 'mnist'?)"),
        (["evaluate", "{run}", "--corruptions", "gaussian_nosie"], "(did you mean 'gaussian_noise'?)"),
        (["evaluate", "{run}", "--n-bin", "10"], "(did you mean '--n-bins'?)"),
        (["evaluate", "{run}", "--batch-size", "0"], "--batch-size must be >= 1; got 0"),
        (["calibrate", "{run}", "--n-bins", "0"], "--n-bins must be >= 1; got 0"),
        (["evaluate", "{run}", "--calibration", "auto"], "has no calibrator next to it"),
    ],
    ids=[
        "calibrator",
        "fit-on-test",
        "dataset",
        "corruption",
        "flag",
        "batch-size",
        "n-bins",
        "no-calibrator",
    ],
)
def test_bad_arguments_for_a_checkpoint(
    argv: list[str], message: str, teacher_run: Path, tmp_path: Path, run_cli: RunCli
) -> None:
    run = copy_run(teacher_run, tmp_path / "t")  # `calibrate` would write here, where changes are seen
    assert_refused(run_cli, [a.format(run=run) for a in argv] + EVAL, message, root=tmp_path)


# -------------------------------------------------------------------------------------------------- numbers
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--epochs", "-1"], "config key 'epochs' must be >= 1; got -1"),
        (["--batch-size", "0"], "config key 'batch_size' must be >= 1; got 0"),
        (["--batch-size", "1000"], "batch_size 1000 exceeds the 144 training samples"),
        (["--lr", "0"], "config key 'lr' must be > 0.0; got 0.0"),
        (["--label-smoothing", "1"], "config key 'label_smoothing' must be <= 0.99; got 1.0"),
        (["--lr", "1e30"], "training diverged: the loss is nan"),
        (["--resume", "--overwrite"], "resume and overwrite exclude each other"),
    ],
    ids=[
        "negative-epochs",
        "zero-batch",
        "batch-above-train-size",
        "zero-lr",
        "label-smoothing",
        "diverges",
        "resume-overwrite",
    ],
)
def test_bad_training_numbers(extra: list[str], message: str, tmp_path: Path, run_cli: RunCli) -> None:
    out = tmp_path / "run"
    assert_refused(run_cli, [*TRAIN, *extra, "--out", out], message, root=tmp_path)
    assert not out.exists()


def test_distillation_that_diverges(teacher_run: Path, tmp_path: Path, run_cli: RunCli) -> None:
    out = tmp_path / "student"
    argv = ["distill", "--teacher", teacher_run, "--student", "mlp", *FAST, "--lr", "1e30", "--out", out]
    err = assert_refused(run_cli, argv, "distillation diverged: the loss is not finite", root=tmp_path)
    assert "lower the learning rate (--lr)" in err and not out.exists()


# ------------------------------------------------------------------------------------------ output folders
def test_resume_in_an_empty_folder(tmp_path: Path, run_cli: RunCli) -> None:
    out = tmp_path / "run"
    out.mkdir()
    assert_refused(
        run_cli,
        [*TRAIN, "--resume", "--out", out],
        f"--resume given but '{out}' holds no checkpoint (last.json) to resume from",
        root=tmp_path,
    )
    assert list(out.iterdir()) == []


def test_run_into_a_folder_holding_a_run(teacher_run: Path, tmp_path: Path, run_cli: RunCli) -> None:
    out = copy_run(teacher_run, tmp_path / "run")
    message = f"output folder '{out}' already holds a checkpoint"
    assert_refused(run_cli, [*TRAIN, "--out", out], message, "--resume", "--overwrite", root=tmp_path)


@pytest.mark.parametrize("where", ["{file}", "{file}/sub"])
def test_out_pointing_at_a_file(where: str, teacher_run: Path, tmp_path: Path, run_cli: RunCli) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("not a folder")
    out = where.format(file=blocker)
    message = "it is a file, not a folder" if out == str(blocker) else f"'{blocker}' is a file, not a folder"
    for argv in (
        [*TRAIN, "--out", out],
        ["distill", "--teacher", str(teacher_run), "--student", "mlp", *FAST, "--out", out],
        ["corrupt", *DATA, "--corruptions", "contrast", "--out", out],
        ["evaluate", str(teacher_run), *EVAL, "--corruptions", "contrast", "--out", out],
        ["evaluate", str(teacher_run), *EVAL, "--json", f"{out}/result.json"],
    ):
        assert_refused(run_cli, argv, f"output folder '{out}", message, root=tmp_path)
    assert blocker.read_text() == "not a folder"


def test_json_output_pointing_at_a_folder(teacher_run: Path, tmp_path: Path, run_cli: RunCli) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    assert_refused(
        run_cli,
        ["evaluate", teacher_run, *EVAL, "--json", folder],
        f"--json '{folder}' is a folder; give the path of a file to write",
        root=tmp_path,
    )


# ---------------------------------------------------------------------------------------------------- API
def test_api_divergence_is_a_calikd_error_and_leaves_no_folder(tmp_path: Path) -> None:
    config = TeacherConfig(
        dataset="synthetic",
        dataset_options={"train_size": 160, "test_size": 64, "num_classes": 4},
        model="mlp",
        model_kwargs={"width": 8},
        epochs=1,
        batch_size=32,
        lr=1e30,
        device="cpu",
        precision="fp32",
        progress=False,
        out=str(tmp_path / "run"),
    )
    with pytest.raises(TrainingDivergedError, match="training diverged") as exc:
        train_teacher(config, log=None)
    assert isinstance(exc.value, FloatingPointError) and exc.value.exit_code == 2
    assert not (tmp_path / "run").exists()


def test_api_prepare_run_dir_checks_without_creating(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    with run_dir_lock_scope():  # the run's lock creates the folder; nothing written, nothing is left
        prepare_run_dir(out, resume=False, overwrite=False, run_files=())
        assert (out / LOCK_NAME).is_file()
    assert not (tmp_path / "a").exists() and list(tmp_path.iterdir()) == []
    (tmp_path / "a").write_text("x")
    message = f"output folder '{out}' is not writable: '{tmp_path / 'a'}' is a file, not a folder"
    with pytest.raises(ConfigError, match=re.escape(message)), run_dir_lock_scope():
        prepare_run_dir(out, resume=False, overwrite=False, run_files=())
