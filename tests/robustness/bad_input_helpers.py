"""Helpers of the bad-input suite: a tiny teacher, planted files, and the check that a refusal is clean.

A clean refusal: exit code 2, ``stderr`` names the problem (no traceback), and no file or folder was added,
removed or changed under the test's folder (which is also the working directory, so default output paths
are covered too).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from calikd.cli import main

RunCli = Callable[[Sequence[str]], tuple[int, str, str]]

NUM_CLASSES = 4
DATA = [
    "--dataset",
    "synthetic",
    "--dataset-options",
    "train_size=160",
    "test_size=64",
    f"num_classes={NUM_CLASSES}",
]
FAST = ["--epochs", "1", "--batch-size", "32", "--precision", "fp32", "--device", "cpu", "--no-progress"]
MODEL = ["--model", "mlp", "--model-kwargs", "width=8"]
EVAL = ["--device", "cpu", "--precision", "fp32"]


def train_tiny_teacher(out: Path) -> Path:
    """A 1-epoch MLP teacher on 160 synthetic images of 4 classes (about a second on one core)."""
    assert main(["train-teacher", *DATA, *MODEL, *FAST, "--out", str(out)]) == 0
    return out


def copy_run(run: Path, dest: Path) -> Path:
    """A private copy of a run folder, to damage."""
    shutil.copytree(run, dest)
    return dest


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with a digest of its content (``"dir"`` for folders)."""
    return {
        str(p.relative_to(root)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
    }


def assert_refused(run_cli: RunCli, argv: Sequence[str], *messages: str, root: Path) -> str:
    """Run ``calikd ARGV``: exit code 2, each of ``messages`` in stderr, nothing under ``root`` changed."""
    before = snapshot(root)
    code, _, err = run_cli([str(a) for a in argv])
    assert code == 2, f"exit code {code}; stderr:\n{err}"
    assert "Traceback" not in err
    for message in messages:
        assert message in err, f"{message!r} not in stderr:\n{err}"
    after = snapshot(root)
    assert after == before, f"files changed: {sorted(set(after.items()) ^ set(before.items()))}"
    return err


def edit_meta(run: Path, stem: str = "last", **changes: Any) -> None:
    """Change (``None``: delete) top-level keys of a checkpoint's metadata JSON."""
    path = run / f"{stem}.json"
    meta = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    path.write_text(json.dumps(meta))


def resign(run: Path, stem: str = "last") -> None:
    """Record the SHA-256 of the (tampered) weights in the metadata, as a consistent but wrong file would."""
    digest = hashlib.sha256((run / f"{stem}.safetensors").read_bytes()).hexdigest()
    edit_meta(run, stem, weights_sha256=digest)


def replace_weights(run: Path, changes: dict[str, torch.Tensor]) -> None:
    """Overwrite tensors of a checkpoint's weights (a valid safetensors file) and re-sign it."""
    path = run / "last.safetensors"
    tensors = st_load(path.read_bytes())
    tensors.update(changes)
    path.write_bytes(st_save(tensors))
    resign(run)


def safetensors_header(path: Path) -> tuple[dict[str, Any], bytes]:
    """The JSON header of a safetensors file and its data bytes."""
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + size]), data[8 + size :]


def write_safetensors(path: Path, header: dict[str, Any], body: bytes) -> None:
    """A safetensors file with the given (possibly lying) header."""
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + body)


class Payload:
    """Unpickling this calls ``open(marker, "w")``: the marker file appearing proves that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def pickle_payload(marker: Path) -> bytes:
    """Pickle bytes that create ``marker`` when unpickled (protocol 2+, as torch.save writes)."""
    return pickle.dumps(Payload(marker), protocol=pickle.HIGHEST_PROTOCOL)
