"""Configuration of a teacher training run (YAML keys = CLI flags)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from calikd.engine.config import TrainingConfig
from calikd.teacher.losses import TEACHER_LOSSES
from calikd.utils.config import option


@dataclass
class TeacherConfig(TrainingConfig):
    """Everything that determines a teacher training run; the seed fixes every random draw."""

    dataset: str = option("fashion-mnist", "dataset name (see `calikd data list`)")
    data_dir: str | None = option(None, "folder holding the dataset files (else $CALIKD_DATA, cache, system)")
    dataset_options: dict[str, Any] = option({}, "extra dataset options, e.g. train_size=2000 for synthetic")
    download: bool = option(False, "download the dataset when it is not found locally")
    val_fraction: float = option(0.1, "fraction of train held out as the validation split", min=0.0, max=0.9)
    split_seed: int = option(0, "seed of the train/val split (keep it fixed across a study)", min=0)
    model: str = option("resnet20", "model name (see `calikd models list`)")
    model_kwargs: dict[str, Any] = option({}, "extra model arguments, e.g. width=64 depth=2")
    loss: str = option(
        "ce",
        "training loss: ce, or mse = squared error of the softmax output to the one-hot label (ECCV 2024)",
        choices=TEACHER_LOSSES,
    )
    label_smoothing: float = option(0.0, "label smoothing of the training targets", min=0.0, max=0.99)
    out: str | None = option(None, "output folder (default: runs/teachers/<dataset>-<model>-s<seed>)")

    def default_out(self) -> str:
        """Output folder used when ``out`` is not given."""
        return f"runs/teachers/{self.dataset}-{self.model}-s{self.seed}"
