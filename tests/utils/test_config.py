"""Typed configs: unknown keys, types, bounds, YAML + flag precedence."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pytest

from calikd.errors import ConfigError
from calikd.utils.config import add_config_arguments, config_from_args, config_from_dict, option


@dataclass
class Demo:
    lr: float = option(0.1, "learning rate", min=0.0, exclusive_min=True)
    epochs: int = option(3, "epochs", min=1)
    schedule: str = option("cosine", "schedule", choices=("cosine", "multistep"))
    milestones: list[float] = option([], "milestones", min=0.0)
    clip: float | None = option(None, "clip")
    flag: bool = option(True, "a switch")
    kwargs: dict = option({}, "extra")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    add_config_arguments(parser, Demo)
    return parser.parse_args(argv)


def test_unknown_key_names_nearest() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'epoch' in test \(did you mean 'epochs'\?\)"):
        config_from_dict(Demo, {"epoch": 3}, source="test")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"lr": -1.0}, "'lr' must be > 0.0"),
        ({"lr": 0}, "'lr' must be > 0.0"),
        ({"epochs": 0}, "'epochs' must be >= 1"),
        ({"epochs": 2.5}, "'epochs' must be an integer"),
        ({"schedule": "cosin"}, "did you mean 'cosine'"),
        ({"flag": "yes"}, "'flag' must be true or false"),
        ({"milestones": [1, -2]}, "'milestones' must be >= 0.0"),
        ({"lr": None}, "'lr' must not be empty"),
    ],
)
def test_bad_values(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config_from_dict(Demo, data)


def test_yaml_then_flags_precedence(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("lr: 0.5\nepochs: 7\nmilestones: [2, 4]\nkwargs: {width: 8}\n")
    cfg = config_from_args(
        Demo, parse(["--config", str(path), "--epochs", "9", "--no-flag"]), config_file=str(path)
    )
    assert cfg == Demo(lr=0.5, epochs=9, milestones=[2.0, 4.0], flag=False, kwargs={"width": 8})
    cfg = config_from_args(Demo, parse(["--kwargs", "width=16", "norm=bn", "--clip", "1.5"]))
    assert cfg.kwargs == {"width": 16, "norm": "bn"} and cfg.clip == 1.5 and cfg.epochs == 3


def test_yaml_unknown_key_and_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 0.5\n")
    with pytest.raises(ConfigError, match=f"unknown key 'learning_rate' in config file '{path}'"):
        config_from_args(Demo, parse([]), config_file=str(path))
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        config_from_args(Demo, parse([]), config_file=str(path))
    path.write_text("lr: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config_from_args(Demo, parse([]), config_file=str(path))
    with pytest.raises(ConfigError, match="cannot read config file"):
        config_from_args(Demo, parse([]), config_file=str(tmp_path / "missing.yaml"))
