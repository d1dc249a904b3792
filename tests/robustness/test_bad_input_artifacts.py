"""Bad checkpoints, calibrator files, pickles and unusable logits through the CLI (and the API where noted):
each is refused with a message naming the file and the problem, exit code 2, nothing written, and a planted
pickle payload never runs."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from bad_input_helpers import (
    DATA,
    EVAL,
    FAST,
    NUM_CLASSES,
    Payload,
    RunCli,
    assert_refused,
    copy_run,
    edit_meta,
    pickle_payload,
    replace_weights,
    resign,
    safetensors_header,
    train_tiny_teacher,
    write_safetensors,
)

from calikd.cli import main
from calikd.engine import evaluate_checkpoint
from calikd.engine.evaluate import checkpoint_logits
from calikd.errors import CheckpointError, ConfigError


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny trained teacher per module, with a temperature calibrator fitted on its val split."""
    run = train_tiny_teacher(tmp_path_factory.mktemp("teacher") / "run")
    assert main(["calibrate", str(run), *EVAL, "--no-plots"]) == 0
    return run


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.chdir(tmp_path)


def _distill(teacher: Path, out: Path, *extra: str) -> list[str]:
    return ["distill", "--teacher", str(teacher), "--student", "mlp", *FAST, "--out", str(out), *extra]


# --------------------------------------------------------------------------------------------- checkpoints
def test_truncated_weights(teacher_run: Path, tmp_path: Path, run_cli: RunCli) -> None:
    run = copy_run(teacher_run, tmp_path / "t")
    weights = run / "last.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    assert_refused(
        run_cli,
        ["evaluate", run, *EVAL],
        f"'{weights}' is corrupt or truncated",
        f"its header describes {len(data)} bytes but the file has {len(data) // 2}",
        root=tmp_path,
    )


def test_metadata_that_is_not_json(teacher_run: Path, tmp_path: Path, run_cli: RunCli) -> None:
    run = copy_run(teacher_run, tmp_path / "t")
    (run / "last.json").write_text('{"format": "calikd-checkpoint", "model": ')
    assert_refused(
        run_cli,
        ["calibrate", run, *EVAL],
        f"metadata file '{run / 'last.json'}' is corrupt or truncated: invalid JSON",
        root=tmp_path,
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model": None}, "does not say which model it holds (its metadata has no model.name)"),
        ({"num_classes": None}, "has malformed model metadata: it needs integer num_classes and in_channels"),
        ({"weights_sha256": None}, "is corrupt: it has no weights_sha256"),
        (
            {"format": "something-else"},
            'is not calikd checkpoint metadata (no "format": "calikd-checkpoint")',
        ),
        ({"dataset": None}, "does not record its dataset"),
    ],
    ids=["no-model", "no-num-classes", "no-sha256", "wrong-format", "no-dataset"],
)
def test_metadata_missing_keys(
    changes: dict, message: str, teacher_run: Path, tmp_path: Path, run_cli: RunCli
) -> None:
    run = copy_run(teacher_run, tmp_path / "t")
    edit_meta(run, **changes)
    err = assert_refused(
        run_cli, ["evaluate", run, *EVAL, "--json", tmp_path / "r.json"], message, root=tmp_path
    )
    assert str(run) in err


def test_metadata_naming_an_unknown_model(teacher_run: Path, tmp_path: Path, run_cli: RunCli) -> None:
    run = copy_run(teacher_run, tmp_path / "t")
    meta = json.loads((run / "last.json").read_text())
    edit_meta(run, model={**meta["model"], "name": "mlq"})
    out = tmp_path / "student"
    assert_refused(run_cli, _distill(run, out), "unknown model 'mlq' (did you mean 'mlp'?)", root=tmp_path)


def test_safetensors_header_lying_about_the_file_size(
    teacher_run: Path, tmp_path: Path, run_cli: RunCli
) -> None:
    run = copy_run(teacher_run, tmp_path / "t")
    weights = run / "last.safetensors"
    header, body = safetensors_header(weights)
    tensors = [k for k in header if k != "__metadata__"]
    last = max(tensors, key=lambda k: header[k]["data_offsets"][1])
    header[last]["data_offsets"][1] += 4096  # claims 4 KiB more data than the file holds
    write_safetensors(weights, header, body)
    resign(run)  # a consistent but lying file: the SHA-256 check alone would not catch it
    assert_refused(
        run_cli,
        ["evaluate", run, *EVAL],
        f"'{weights}' is corrupt or truncated",
        "its header describes",
        root=tmp_path,
    )


def test_safetensors_header_lying_about_a_shape(teacher_run: Path, tmp_path: Path, run_cli: RunCli) -> None:
    run = copy_run(teacher_run, tmp_path / "t")
    weights = run / "last.safetensors"
    header, body = safetensors_header(weights)
    header["fc.weight"]["shape"] = [NUM_CLASSES * 2, 8]  # twice the elements its byte range holds
    write_safetensors(weights, header, body)
    resign(run)
    assert_refused(
        run_cli,
        ["evaluate", run, *EVAL],
        f"'{weights}' is corrupt or truncated",
        "invalid shape, data type, or offset for tensor",
        root=tmp_path,
    )


def test_weights_of_the_wrong_shape_for_their_model(
    teacher_run: Path, tmp_path: Path, run_cli: RunCli
) -> None:
    run = copy_run(teacher_run, tmp_path / "t")
    replace_weights(run, {"fc.weight": torch.zeros(3, 8), "fc.bias": torch.zeros(3)})
    assert_refused(
        run_cli,
        ["calibrate", run, *EVAL],
        f"checkpoint '{run}' (a mlp for 4 classes, 1 input channels) does not fit the MLP model built for it",
        "fc.weight (3, 8) in the checkpoint vs (4, 8) in the model",
        root=tmp_path,
    )


# ------------------------------------------------------------------------------------------------- pickles
def test_the_planted_payload_really_runs(tmp_path: Path) -> None:
    """The payload below is live: unpickling it creates the marker, so its absence in the tests means
    calikd never unpickled it."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle_payload(marker))
    assert marker.exists()


@pytest.mark.parametrize("planted", ["last.safetensors", "last.json"])
def test_pickle_disguised_as_a_checkpoint_file(
    planted: str, teacher_run: Path, tmp_path: Path, run_cli: RunCli
) -> None:
    run = copy_run(teacher_run, tmp_path / "t")
    marker = tmp_path / "pwned"
    (run / planted).write_bytes(pickle_payload(marker))
    for argv in (["calibrate", run, *EVAL], _distill(run, tmp_path / "student")):
        assert_refused(
            run_cli, argv, f"'{run / planted}' is a pickle/torch.save file", "never unpickles", root=tmp_path
        )
    assert not marker.exists()


def test_pickle_disguised_as_a_calibrator(teacher_run: Path, tmp_path: Path, run_cli: RunCli) -> None:
    run = copy_run(teacher_run, tmp_path / "t")
    marker = tmp_path / "pwned"
    stored = run / "last.calibrator.json"  # the file `--calibration auto` and distillation pick up
    stored.write_bytes(pickle_payload(marker))
    message = f"'{stored}' is a pickle/torch.save file"
    assert_refused(run_cli, ["evaluate", run, *EVAL, "--calibration", "auto"], message, root=tmp_path)
    assert_refused(run_cli, _distill(run, tmp_path / "student"), message, root=tmp_path)
    given = tmp_path / "cal.pt"
    given.write_bytes(pickle_payload(marker))
    assert_refused(
        run_cli,
        _distill(run, tmp_path / "student", "--teacher-calibration", str(given)),
        f"'{given}' is a pickle/torch.save file",
        root=tmp_path,
    )
    assert not marker.exists()


def test_pickle_inside_a_corrupted_set_labels_file(
    teacher_run: Path, tmp_path: Path, run_cli: RunCli
) -> None:
    folder = tmp_path / "synthetic-C"
    folder.mkdir()
    np.save(folder / "contrast.npy", np.zeros((5 * 64, 28, 28, 1), np.uint8))
    marker = tmp_path / "pwned"
    labels = np.empty(5 * 64, dtype=object)
    labels[:] = [Payload(marker)] * len(labels)
    np.save(folder / "labels.npy", labels, allow_pickle=True)
    assert_refused(
        run_cli,
        ["evaluate", teacher_run, *EVAL, "--corrupted-dir", folder],
        f"'{folder / 'labels.npy'}' is not a readable .npy array",
        root=tmp_path,
    )
    assert not marker.exists()


# ------------------------------------------------------------------------------------------ calibrator JSON
def _calibrator(teacher: Path, dest: Path, **changes: object) -> Path:
    doc = json.loads((teacher / "last.calibrator.json").read_text())
    doc.update(changes)
    dest.write_text(json.dumps(doc))  # json writes float("nan") as NaN, which Python's json reads back
    return dest


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"method": "temprature"},
            "holds an unknown calibrator method 'temprature' (did you mean 'temperature'?)",
        ),
        (
            {"params": {"temperature": float("nan")}},
            "'params' must map names to finite numbers; got {'temperature': nan}",
        ),
        ({"params": {"temperature": 0.0}}, "'temperature' must be a positive finite number; got 0.0"),
    ],
    ids=["method", "nan", "zero"],
)
def test_bad_calibrator_json(
    changes: dict, message: str, teacher_run: Path, tmp_path: Path, run_cli: RunCli
) -> None:
    cal = _calibrator(teacher_run, tmp_path / "cal.json", **changes)
    assert_refused(
        run_cli, ["evaluate", teacher_run, *EVAL, "--calibration", cal], f"'{cal}'", message, root=tmp_path
    )
    assert_refused(
        run_cli,
        _distill(teacher_run, tmp_path / "student", "--teacher-calibration", str(cal)),
        message,
        root=tmp_path,
    )


def test_calibrator_for_another_class_count(teacher_run: Path, tmp_path: Path, run_cli: RunCli) -> None:
    cal = _calibrator(teacher_run, tmp_path / "cal.json", num_classes=10)
    message = f"calibrator '{cal}' was fitted on 10 classes, but checkpoint '{teacher_run}' predicts 4"
    assert_refused(run_cli, ["evaluate", teacher_run, *EVAL, "--calibration", cal], message, root=tmp_path)
    out = tmp_path / "student"
    assert_refused(
        run_cli, _distill(teacher_run, out, "--teacher-calibration", str(cal)), message, root=tmp_path
    )
    with pytest.raises(ConfigError, match="was fitted on 10 classes"):  # the API says the same
        evaluate_checkpoint(teacher_run, calibration=cal, device="cpu", precision="fp32")


# ------------------------------------------------------------------------------------------- unusable logits
def test_checkpoint_with_nan_weights(teacher_run: Path, tmp_path: Path, run_cli: RunCli) -> None:
    run = copy_run(teacher_run, tmp_path / "t")
    replace_weights(run, {"fc.bias": torch.full((NUM_CLASSES,), float("nan"))})
    assert_refused(
        run_cli,
        ["calibrate", run, *EVAL],
        f"checkpoint '{run}' gives NaN or inf logits for 16 of the 16 val samples",
        root=tmp_path,
    )
    assert_refused(
        run_cli,
        _distill(run, tmp_path / "student"),
        f"teacher checkpoint '{run}' has NaN or inf weights (fc.bias)",
        root=tmp_path,
    )


def test_checkpoint_whose_outputs_are_probabilities(
    teacher_run: Path, tmp_path: Path, run_cli: RunCli
) -> None:
    """A model ending in a softmax: logits files holding probabilities where logits are expected."""
    run = copy_run(teacher_run, tmp_path / "t")
    replace_weights(
        run, {"fc.weight": torch.zeros(NUM_CLASSES, 8), "fc.bias": torch.tensor([0.1, 0.2, 0.3, 0.4])}
    )
    message = f"checkpoint '{run}' outputs probabilities"
    assert_refused(run_cli, ["calibrate", run, *EVAL], message, "every val row", root=tmp_path)
    assert_refused(run_cli, ["evaluate", run, *EVAL, "--json", tmp_path / "r.json"], message, root=tmp_path)
    with pytest.raises(CheckpointError, match="remove the softmax from the model"):
        checkpoint_logits(run, ("val",), device="cpu", precision="fp32")


def test_corrupted_set_with_labels_out_of_range(teacher_run: Path, tmp_path: Path, run_cli: RunCli) -> None:
    folder = tmp_path / "synthetic-C"
    code, _, err = run_cli(["corrupt", *DATA, "--corruptions", "contrast", "--out", str(folder)])
    assert code == 0, err
    (folder / "manifest.json").unlink()  # a released-style -C folder: no manifest to vouch for the labels
    labels = np.load(folder / "labels.npy")
    labels[7] = 9
    np.save(folder / "labels.npy", labels)
    assert_refused(
        run_cli,
        ["evaluate", teacher_run, *EVAL, "--corrupted-dir", folder, "--out", tmp_path / "report"],
        f"'{folder / 'labels.npy'}' holds labels 0..9, but the checkpoint has 4 classes (0..3)",
        root=tmp_path,
    )
