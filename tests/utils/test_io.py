"""Atomic writes; output-folder checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from calikd.errors import ConfigError
from calikd.utils.io import atomic_write_json, check_writable_dir, ensure_writable_dir


def test_atomic_writes_get_normal_file_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "x.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o644
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


@pytest.mark.parametrize("check", [check_writable_dir, ensure_writable_dir])
def test_a_folder_created_by_another_process_during_the_check_is_not_taken_for_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, check
) -> None:
    """Under DDP rank 0 creates the run folder while the other ranks check it: the check must not see
    'missing' and then 'exists' and conclude that a file is in the way."""
    target = tmp_path / "ddp"
    real_stat = Path.stat

    def stat_then_another_process_creates_it(self: Path, *args, **kwargs):
        try:
            return real_stat(self, *args, **kwargs)
        finally:
            if self == target and not os.path.isdir(target):
                os.mkdir(target)

    monkeypatch.setattr(Path, "stat", stat_then_another_process_creates_it)
    assert check(target) == target


@pytest.mark.parametrize("check", [check_writable_dir, ensure_writable_dir])
def test_a_file_in_the_way_is_named(tmp_path: Path, check) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="it is a file, not a folder"):
        check(tmp_path / "f")
    with pytest.raises(ConfigError, match="f' is a file, not a folder"):
        check(tmp_path / "f" / "sub")
