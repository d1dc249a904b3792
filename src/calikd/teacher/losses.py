"""Teacher training losses: cross-entropy, or the squared error of the softmax output to the one-hot label.

The squared error (``mse``; Hamidi, Deng, Tan, Ye & Salamah, "How to Train the Teacher Model for Effective
Knowledge Distillation", ECCV 2024) is a proper scoring rule whose minimiser is the true class-probability
vector, so an MSE-trained teacher's outputs estimate the Bayes class probabilities in the MSE sense, which
bounds the student's error in their analysis; they report students up to 2.6% more accurate with such
teachers, for the same KD method. Per sample::

    MSE = sum_k (softmax(z)_k - y_k)^2       y = one-hot label (label-smoothed if asked); mean over the batch

(the multi-class Brier score). The paper has no scale hyper-parameter for it. Their released
``train_teacher.py`` picks the criterion with ``opt.loss_func.upper == 'MSE'``, comparing the *method*
``str.upper`` to a string, which is always false, so its ``-lf MSE`` runs train with cross-entropy; calikd
implements the loss of the paper.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from calikd.errors import ConfigError

TEACHER_LOSSES = ("ce", "mse")


def probability_mse_loss(
    logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """``mean_b sum_k (softmax(z_b)_k - y_bk)^2`` with ``y = (1 - eps) one_hot + eps / K``."""
    z = logits.float()
    classes = z.shape[1]
    target = F.one_hot(labels.long(), classes).float() * (1.0 - label_smoothing) + label_smoothing / classes
    return (F.softmax(z, dim=1) - target).pow(2).sum(1).mean()


def teacher_loss(
    logits: torch.Tensor, labels: torch.Tensor, loss: str = "ce", label_smoothing: float = 0.0
) -> torch.Tensor:
    """The training loss ``loss`` (one of :data:`TEACHER_LOSSES`) of ``logits`` against integer ``labels``."""
    if loss == "ce":
        return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
    if loss == "mse":
        return probability_mse_loss(logits, labels, label_smoothing)
    raise ConfigError(f"unknown teacher loss '{loss}'; choose one of {TEACHER_LOSSES}")
