"""The distiller contract: per batch, ``(student_logits, {loss_name: loss})``; the trainer sums the dict.

A :class:`Distiller` owns the student, the frozen teacher (eval mode, no gradients, run under
``inference_mode``) and the method's own trainable parts (projectors, embeddings, memory banks). Methods are
one file each under :mod:`calikd.distill.methods`, registered with ``@register_distiller``, with a dataclass
config and their loss maths as a pure function usable in any training loop.

>>> distiller = create_distiller("kd", student, teacher, {"tau": 4.0})     # doctest: +SKIP
>>> logits, losses = distiller(images, labels)
>>> sum(losses.values()).backward()
"""

from __future__ import annotations

import abc
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from torch import nn

from calikd.distill.functional import hard_labels, soft_cross_entropy
from calikd.errors import ConfigError, ModelError
from calikd.models import FeatureHooks, feature_stages
from calikd.utils.config import option

LogitTransform = Callable[[torch.Tensor], torch.Tensor]


class WarmupWarning(UserWarning):
    """A method's warm-up cannot happen: the training loop never told the distiller its epoch."""


@dataclass
class DistillerConfig:
    """Options every method has: the weights of the cross-entropy and of the distillation term."""

    ce_weight: float = option(1.0, "weight of the cross-entropy with the (possibly mixed) labels", min=0.0)
    kd_weight: float = option(1.0, "weight of the distillation term", min=0.0)


@dataclass
class DistillStep:
    """What a method's :meth:`Distiller.compute_losses` sees for one batch.

    ``teacher_logits`` are already calibrated (when a calibrator was given) and float32; ``target`` holds
    labels ``(B,)`` or label distributions ``(B, C)`` (mixup/CutMix); features are keyed by layer name.
    """

    student_logits: torch.Tensor
    teacher_logits: torch.Tensor | None
    target: torch.Tensor
    student_features: dict[str, torch.Tensor] = field(default_factory=dict)
    teacher_features: dict[str, torch.Tensor] = field(default_factory=dict)
    index: torch.Tensor | None = None

    @property
    def labels(self) -> torch.Tensor:
        """Integer labels (the most weighted class of a mixed target)."""
        return hard_labels(self.target)


def resolve_layers(model: nn.Module, spec: Sequence[str]) -> tuple[str, ...]:
    """Module names from stage names or indices into ``feature_stage_names`` (``"-1"`` = pooled embedding)."""
    stages = feature_stages(model)
    names = []
    for item in spec:
        text = str(item).strip()
        if text.lstrip("-").isdigit():
            k = int(text)
            if not -len(stages) <= k < len(stages):
                raise ModelError(
                    f"feature stage index {k} is out of range for {type(model).__name__}, which has "
                    f"{len(stages)} stages: {', '.join(stages)}"
                )
            names.append(stages[k])
        else:
            names.append(text)
    return tuple(names)


def _device_of(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def clone_out_of_inference(value: Any) -> Any:
    """Copies of inference-mode tensors that autograd may save (losses need the teacher's outputs)."""
    if isinstance(value, torch.Tensor):
        return value.clone() if value.is_inference() else value
    if isinstance(value, dict):
        return {k: clone_out_of_inference(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(clone_out_of_inference(v) for v in value)
    return value


PairDefaults = Mapping[tuple[str, str], Mapping[str, Any]]


def pair_table(values: dict[tuple[str, str], dict[str, Any]]) -> PairDefaults:
    """A read-only ``{(teacher model, student model): {option: value}}`` table for ``pair_defaults``."""
    return MappingProxyType({pair: MappingProxyType(dict(options)) for pair, options in values.items()})


class Distiller(nn.Module, abc.ABC):
    """Student + frozen teacher + the method's trainable parts; subclasses implement :meth:`compute_losses`.

    Class attributes: ``uses_features`` (the method needs intermediate features, so it cannot use cached
    teacher logits), ``needs_teacher`` (False for the student-alone baseline and teacher-free methods),
    ``needs_index`` (the method needs each sample's dataset index, e.g. CRD's memory bank).

    ``teacher_calibration`` maps raw teacher logits to calibrated logits (a fitted calibrator's
    ``transform``); it is applied before anything else touches the teacher's output.
    ``student_input`` / ``teacher_input`` are example batches used to find feature shapes (feature methods);
    ``num_samples`` and ``sample_labels`` (the label of every training index) serve index-based methods (CRD).
    ``source`` cites the paper and the reference code the defaults come from (shown by ``calikd methods``).
    ``pair_defaults`` holds the authors' per-pair option values, ``{(teacher model, student model): {option:
    value}}``, read from ``pair_source`` (their config files); ``--method-preset paper`` applies them.
    """

    method: ClassVar[str] = ""
    source: ClassVar[str] = ""
    pair_defaults: ClassVar[PairDefaults] = MappingProxyType({})
    pair_source: ClassVar[str] = ""
    config_class: ClassVar[type[DistillerConfig]] = DistillerConfig
    uses_features: ClassVar[bool] = False
    needs_teacher: ClassVar[bool] = True
    needs_index: ClassVar[bool] = False
    warmup_fraction: ClassVar[float] = (
        0.0  # share of the run a loss warm-up lasts by default (see warmup_epochs)
    )
    #: what taps the feature layers (a subclass of FeatureHooks may capture other tensors, e.g. inputs)
    feature_hooks: ClassVar[type[FeatureHooks]] = FeatureHooks

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module | None,
        config: DistillerConfig | None = None,
        *,
        teacher_calibration: LogitTransform | None = None,
        student_input: torch.Tensor | None = None,
        teacher_input: torch.Tensor | None = None,
        num_samples: int | None = None,
        sample_labels: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        config = self.config_class() if config is None else config
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"method '{self.method}' takes a {self.config_class.__name__}, got {type(config).__name__}"
            )
        if not isinstance(student, nn.Module):
            raise ConfigError(f"the student must be a torch.nn.Module, got {type(student).__name__}")
        if self.needs_teacher and not isinstance(teacher, nn.Module):
            raise ConfigError(
                f"method '{self.method}' needs a teacher (a torch.nn.Module), got {type(teacher).__name__}"
            )
        if self.needs_index and num_samples is None:
            raise ConfigError(f"method '{self.method}' needs num_samples (the training set size)")
        self.config = config
        self.student = student
        self.teacher = teacher if self.needs_teacher else None
        if self.teacher is not None:
            self.teacher.requires_grad_(False)
            self.teacher.eval()
        self.teacher_calibration = teacher_calibration
        self.num_samples = num_samples
        if sample_labels is not None and num_samples is not None and len(sample_labels) != num_samples:
            raise ConfigError(f"sample_labels has {len(sample_labels)} entries for {num_samples} samples")
        self.sample_labels = sample_labels
        self.epoch, self.epochs = 1, 1
        self._epoch_set = False  # set_epoch called: the warm-ups and curricula know where the run is
        self._epoch_done = 1.0  # share of the epoch done after this step (set_step); 1: per-epoch ramp
        # a faster forward of the frozen teacher for logit methods (engine.frozen); not a submodule
        self.teacher_runner: Callable[[torch.Tensor], torch.Tensor] | None = None
        self._student_hooks: FeatureHooks | None = None
        self._teacher_hooks: FeatureHooks | None = None
        self.student_feature_shapes: dict[str, torch.Size] = {}
        self.teacher_feature_shapes: dict[str, torch.Size] = {}
        if self.uses_features:
            self._install_hooks(student_input, teacher_input)

    # ----------------------------------------------------------------- features
    def feature_layers(self) -> tuple[Sequence[str], Sequence[str]]:
        """Layers to tap on (student, teacher): stage names or indices (feature methods override this)."""
        return (), ()

    def _install_hooks(self, student_input: torch.Tensor | None, teacher_input: torch.Tensor | None) -> None:
        if student_input is None:
            raise ConfigError(
                f"method '{self.method}' uses features: pass student_input= (an example batch, e.g. "
                "torch.zeros(2, C, H, W)) so their shapes can be found"
            )
        s_spec, t_spec = self.feature_layers()
        s_names, t_names = resolve_layers(self.student, s_spec), resolve_layers(self.teacher, t_spec)
        self._student_hooks = self.feature_hooks(self.student, s_names)
        self._teacher_hooks = self.feature_hooks(self.teacher, t_names, detach=True)
        self.student_layer_names, self.teacher_layer_names = s_names, t_names
        teacher_input = student_input if teacher_input is None else teacher_input
        was_training = self.student.training
        self.student.eval()
        with torch.no_grad():
            self.student(student_input[:2].to(_device_of(self.student)))
            self.teacher(teacher_input[:2].to(_device_of(self.teacher)))
        self.student.train(was_training)
        self.student_feature_shapes = {k: v.shape[1:] for k, v in self._student_hooks.features.items()}
        self.teacher_feature_shapes = {k: v.shape[1:] for k, v in self._teacher_hooks.features.items()}

    def remove_hooks(self) -> None:
        """Detach the feature hooks from the models (call when done with the distiller)."""
        for hooks in (self._student_hooks, self._teacher_hooks):
            if hooks is not None:
                hooks.remove()

    # ----------------------------------------------------------------- state
    def warmup_epochs(self) -> float:
        """The length of a linear loss warm-up in epochs: the config's ``warmup_epochs`` when set, else
        ``epochs x warmup_fraction`` (methods that warm up set the class attribute)."""
        configured = getattr(self.config, "warmup_epochs", None)
        return configured if configured is not None else self.epochs * self.warmup_fraction

    def set_epoch(self, epoch: int, epochs: int) -> None:
        """Called by the trainer at the start of each epoch (1-based) of ``epochs`` (curricula, warm-ups).
        A training loop of your own must call it too, or a warm-up does not happen (:meth:`warmup_ramp`)."""
        self.epoch, self.epochs = int(epoch), int(epochs)
        self._epoch_set = True
        self._epoch_done = 1.0  # until set_step says otherwise: the authors' per-epoch ramp

    def set_step(self, step: int, steps: int) -> None:
        """Called by the trainer before each step (0-based) of the epoch's ``steps``, so that a warm-up ramps
        per step (:meth:`warmup_ramp`)."""
        self._epoch_done = (int(step) + 1) / steps if steps > 0 else 1.0

    def warmup_ramp(self) -> float:
        """``min(progress / warmup_epochs, 1)``, the weight of a loss that warms up linearly, where progress
        is the epochs done after this step (``epoch - 1 + (step + 1) / steps``): at an epoch's last step it is
        the authors' per-epoch ``epoch / warmup_epochs``, and a warm-up of one epoch or less (a short run's
        share of the authors' 20 of 240) still ramps instead of starting at full weight. Without
        :meth:`set_step` the ramp is per epoch; without :meth:`set_epoch` the run's position is unknown: no
        warm-up (1), and a :class:`WarmupWarning` once."""
        configured = getattr(self.config, "warmup_epochs", None)
        if not self._epoch_set:
            wants = configured if configured is not None else self.warmup_fraction
            if self.training and wants and not getattr(self, "_warned_warmup", False):
                self._warned_warmup = True
                warnings.warn(
                    f"method '{self.method}' warms its loss up over the first epochs, but set_epoch(epoch, "
                    "epochs) was never called: the loss runs at full weight from the start",
                    WarmupWarning,
                    stacklevel=3,
                )
            return 1.0
        length = self.warmup_epochs()
        progress = self.epoch - 1 + self._epoch_done
        return 1.0 if length <= 0 else min(progress / length, 1.0)

    def train(self, mode: bool = True) -> Distiller:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # the teacher stays in eval mode (batch-norm statistics frozen)
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Student parameters plus the method's own (projectors, temperatures), not the teacher's."""
        return [p for n, p in self.named_parameters() if not n.startswith("teacher.") and p.requires_grad]

    def part_learning_rates(self) -> dict[str, float]:
        """``{submodule name: base learning rate}`` for the method's parts its authors train at a rate of
        their own (FT's paraphraser); every other parameter takes the run's ``lr``."""
        return {}

    def extra_state(self) -> dict[str, torch.Tensor]:
        """State of the method's own parts (neither student nor teacher), for exact resume."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(("student.", "teacher."))}

    def load_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`extra_state` (every key of the method's own parts must be present)."""
        result = self.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not k.startswith(("student.", "teacher."))]
        if missing or result.unexpected_keys:
            raise ConfigError(
                f"saved state of method '{self.method}' does not match it: missing {missing}, "
                f"unexpected {sorted(result.unexpected_keys)}"
            )

    # ----------------------------------------------------------------- forward
    def run_teacher(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The teacher's raw logits (and tapped features) on ``x``, computed without autograd."""
        if self.teacher is None:
            raise ConfigError(f"method '{self.method}' has no teacher to run")
        runner = self.teacher_runner if not self.uses_features else None
        with torch.inference_mode():
            logits = (runner or self.teacher)(x)
        features = self._teacher_hooks.features if self._teacher_hooks is not None else {}
        return clone_out_of_inference(logits), clone_out_of_inference(features)

    def calibrate(self, raw_logits: torch.Tensor) -> torch.Tensor:
        """Raw teacher logits -> float32 calibrated logits (identity without a calibrator)."""
        logits = raw_logits.float()
        return logits if self.teacher_calibration is None else self.teacher_calibration(logits)

    def forward(
        self,
        x: torch.Tensor,
        target: torch.Tensor,
        *,
        teacher_x: torch.Tensor | None = None,
        teacher_logits: torch.Tensor | None = None,
        index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Student logits and the named losses for one batch.

        ``x`` is the student's input and ``teacher_x`` the teacher's (default: ``x``; differs in
        cross-resolution distillation). ``teacher_logits`` are *raw* precomputed teacher logits (the logit
        cache): logit methods then skip the teacher's forward pass. ``index`` holds dataset indices.
        """
        teacher_features: dict[str, torch.Tensor] = {}
        calibrated = None
        if self.teacher is not None:
            if teacher_logits is None or self.uses_features:
                teacher_logits, teacher_features = self.run_teacher(x if teacher_x is None else teacher_x)
            calibrated = self.calibrate(teacher_logits)
        student_logits = self.student(x)
        student_features = dict(self._student_hooks.features) if self._student_hooks is not None else {}
        if self.needs_index and index is None:
            raise ConfigError(f"method '{self.method}' needs the samples' dataset indices (index=)")
        step = DistillStep(
            student_logits=student_logits,
            teacher_logits=calibrated,
            target=target,
            student_features=student_features,
            teacher_features=teacher_features,
            index=index,
        )
        return student_logits, self.compute_losses(step)

    def ce_term(self, step: DistillStep) -> dict[str, torch.Tensor]:
        """``{"ce": ce_weight * CE(student, target)}``, or nothing when the weight is 0."""
        if self.config.ce_weight == 0:
            return {}
        return {"ce": self.config.ce_weight * soft_cross_entropy(step.student_logits, step.target)}

    @abc.abstractmethod
    def compute_losses(self, step: DistillStep) -> dict[str, torch.Tensor]:
        """The method's named, already weighted losses for one batch."""


class FeatureDistiller(Distiller):
    """A method matching intermediate features of paired layers (student layer i with teacher layer i).

    The config may hold ``student_layers`` / ``teacher_layers`` (stage names or indices); empty lists fall
    back to :meth:`default_feature_layers`, by default the stage ``default_layer`` on both sides
    (``"-1"``: the pooled embedding). ``single_pair`` methods take exactly one pair.
    """

    uses_features = True
    default_layer: ClassVar[str] = "-1"
    single_pair: ClassVar[bool] = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        s_names, t_names = self.student_layer_names, self.teacher_layer_names
        if len(s_names) != len(t_names) or not s_names or (self.single_pair and len(s_names) != 1):
            pairing = "one student layer with one teacher layer" if self.single_pair else "layers one to one"
            raise ConfigError(
                f"{self.method} pairs {pairing}, got {list(s_names)} and {list(t_names)}",
                hint="set student_layers and teacher_layers to lists of equal length",
            )

    def default_feature_layers(self) -> tuple[Sequence[str], Sequence[str]]:
        """The layers tapped when the config names none."""
        return [self.default_layer], [self.default_layer]

    def feature_layers(self) -> tuple[Sequence[str], Sequence[str]]:
        student = list(getattr(self.config, "student_layers", []))
        teacher = list(getattr(self.config, "teacher_layers", []))
        s_default, t_default = self.default_feature_layers()
        return student or list(s_default), teacher or list(t_default)

    def feature_pairs(self, step: DistillStep) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(student feature, teacher feature)`` of each layer pair, in order."""
        return [
            (step.student_features[s], step.teacher_features[t])
            for s, t in zip(self.student_layer_names, self.teacher_layer_names, strict=True)
        ]
