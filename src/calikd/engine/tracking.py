"""Experiment trackers: TensorBoard, MLflow and Weights & Biases, each an optional extra (``calikd[track]``).

A run opens the trackers named by ``--log`` (several allowed) and sends them the same things: its config
(flattened to ``a.b`` keys), per-epoch numbers (``train/...``, ``val/...``, ``lr``), the teacher's numbers
before and after calibration, images (reliability diagrams) and the final metrics. Everything works offline:
TensorBoard writes event files under ``<run>/tensorboard``; MLflow logs to ``$MLFLOW_TRACKING_URI`` when set,
else to a local file store ``<run>/mlruns``; W&B runs in offline mode unless ``$WANDB_MODE`` says otherwise
(``wandb sync`` uploads it later). A tracker that fails to start is a clear error before training starts;
one that fails while logging is reported once and then left alone (training never stops for a tracker).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from calikd.errors import ConfigError, did_you_mean

TRACKERS = ("tensorboard", "mlflow", "wandb")
EXTRAS = {"tensorboard": "tensorboard", "mlflow": "mlflow-skinny", "wandb": "wandb"}


class TrackingWarning(UserWarning):
    """A tracker failed while logging; the run goes on without it."""


def parse_log_targets(values: str | Iterable[str] | None) -> tuple[str, ...]:
    """Tracker names from ``--log`` values (``a,b`` or several values; ``none`` for none), checked."""
    if values is None:
        return ()
    items = [values] if isinstance(values, str) else list(values)
    names: list[str] = []
    for item in items:
        for part in str(item).split(","):
            name = part.strip().lower()
            if not name or name == "none":
                continue
            if name not in TRACKERS:
                raise ConfigError(
                    f"unknown tracker '{name}'{did_you_mean(name, TRACKERS)}",
                    hint=f"--log takes {', '.join(TRACKERS)} (several allowed)",
                )
            if name not in names:
                names.append(name)
    return tuple(names)


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists become strings (trackers take scalars)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            out[name] = str(list(value))
        else:
            out[name] = value
    return out


def _finite(metrics: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(float(value)):
            out[key] = float(value)
    return out


def _missing(name: str) -> ConfigError:
    return ConfigError(
        f"--log {name} needs the '{EXTRAS[name]}' package",
        hint=f"pip install '{EXTRAS[name]}' (or pip install 'calikd[track]')",
    )


class _TensorBoard:
    name = "tensorboard"

    def __init__(self, out_dir: Path, run_name: str) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise _missing(self.name) from None
        self.log_dir = out_dir / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def log_config(self, config: Mapping[str, Any]) -> None:
        text = "\n".join(f"    {k}: {v}" for k, v in sorted(flatten(config).items()))
        self.writer.add_text("config", text, 0)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def log_image(self, name: str, png: Path, step: int) -> None:
        import numpy as np
        from PIL import Image

        with Image.open(png) as im:
            self.writer.add_image(name, np.asarray(im.convert("RGB")), step, dataformats="HWC")
        self.writer.flush()

    def close(self, failed: bool) -> None:
        self.writer.close()


class _MLflow:
    name = "mlflow"

    def __init__(self, out_dir: Path, run_name: str) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise _missing(self.name) from None
        uri = os.environ.get("MLFLOW_TRACKING_URI") or (out_dir / "mlruns").resolve().as_uri()
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # the offline store: a folder
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME", "calikd")
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
        self.run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id

    def log_config(self, config: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        params = [Param(k, str(v)[:500]) for k, v in sorted(flatten(config).items())]
        for start in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[start : start + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k.replace("@", "_at_"), v, now, step) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def log_image(self, name: str, png: Path, step: int) -> None:
        self.client.log_artifact(self.run_id, str(png), artifact_path="images")

    def close(self, failed: bool) -> None:
        self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")


class _Wandb:
    name = "wandb"

    def __init__(self, out_dir: Path, run_name: str) -> None:
        try:
            import wandb
        except ImportError:
            raise _missing(self.name) from None
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "calikd"),
            name=run_name,
            dir=str(out_dir),
            mode=os.environ.get("WANDB_MODE", "offline"),
            reinit=True,
        )
        self._wandb = wandb

    def log_config(self, config: Mapping[str, Any]) -> None:
        self.run.config.update(flatten(config), allow_val_change=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.run.log(dict(metrics), step=step)

    def log_image(self, name: str, png: Path, step: int) -> None:
        self.run.log({name: self._wandb.Image(str(png))}, step=step)

    def close(self, failed: bool) -> None:
        self.run.finish(exit_code=1 if failed else 0)


_BUILDERS = {"tensorboard": _TensorBoard, "mlflow": _MLflow, "wandb": _Wandb}


class Trackers:
    """The trackers of one run; every call goes to each, and one that fails is dropped with a warning."""

    def __init__(self, names: Sequence[str], out_dir: str | os.PathLike[str], run_name: str) -> None:
        self.names = parse_log_targets(names)
        out = Path(out_dir)
        self._open: list[Any] = []
        self._step = 0
        try:
            for name in self.names:
                self._open.append(_BUILDERS[name](out, run_name))
        except ConfigError:
            self.close(failed=True)
            raise
        except Exception as exc:  # a tracker's own start-up failure, e.g. an unreachable server
            self.close(failed=True)
            raise ConfigError(f"--log {name} could not start: {type(exc).__name__}: {exc}") from exc

    def __bool__(self) -> bool:
        return bool(self._open)

    def tracker(self, name: str) -> Any:
        """The open tracker called ``name`` (tests read its location from it)."""
        return next(t for t in self._open if t.name == name)

    def _each(self, method: str, *args: Any) -> None:
        for tracker in list(self._open):
            try:
                getattr(tracker, method)(*args)
            except Exception as exc:  # a tracker must never stop a training run
                warnings.warn(
                    f"--log {tracker.name}: {method} failed ({type(exc).__name__}: {exc}); "
                    "the run goes on without it",
                    TrackingWarning,
                    stacklevel=3,
                )
                self._open.remove(tracker)

    def log_config(self, config: Mapping[str, Any]) -> None:
        self._each("log_config", config)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Finite numbers of ``metrics`` at ``step`` (default: the last step used)."""
        self._step = self._step if step is None else int(step)
        numbers = _finite(metrics)
        if numbers:
            self._each("log_metrics", numbers, self._step)

    def log_image(self, name: str, png: str | os.PathLike[str], step: int | None = None) -> None:
        if Path(png).is_file():
            self._each("log_image", name, Path(png), self._step if step is None else int(step))

    def close(self, failed: bool = False) -> None:
        for tracker in self._open:
            try:
                tracker.close(failed)
            except Exception as exc:
                warnings.warn(f"--log {tracker.name}: close failed ({exc})", TrackingWarning, stacklevel=2)
        self._open = []

    def __enter__(self) -> Trackers:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(failed=exc_type is not None)
