"""Every method trains end to end through the same loop, and KD, RKD and CRD work with every augmentation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from calikd.augment.config import AugmentConfig
from calikd.distill import distill, list_distillers
from calikd.utils.config import config_fields

AUGMENTS = config_fields(AugmentConfig)["kd_augment"][1].metadata["choices"]
# small memory banks and warm-ups that fit a 2-epoch run on 288 samples
SMALL_OPTIONS = {"crd": {"nce_k": 32, "feat_dim": 16}}


def _options(method: str) -> dict:
    return dict(SMALL_OPTIONS.get(method, {}))


@pytest.mark.parametrize("method", list_distillers())
def test_every_method_distils_with_cutmix(
    distill_config, teacher_ckpt: str, tmp_path: Path, method: str
) -> None:
    result = distill(
        distill_config(
            teacher_ckpt,
            tmp_path / method,
            method=method,
            method_options=_options(method),
            kd_augment="cutmix",
            cutmix_prob=1.0,
            epochs=1,
        ),
        log=None,
    )
    losses = {k for k in result.history[0] if k.startswith("train_loss_")}
    assert losses, method
    assert 0.0 <= result.student_test_last["accuracy"] <= 1.0


@pytest.mark.parametrize("augment", [a for a in AUGMENTS if a != "none"])
@pytest.mark.parametrize("method", ["kd", "rkd", "crd"])
def test_relational_and_contrastive_methods_take_every_augmentation(
    distill_config, teacher_ckpt: str, tmp_path: Path, method: str, augment: str
) -> None:
    result = distill(
        distill_config(
            teacher_ckpt,
            tmp_path / "run",
            method=method,
            method_options=_options(method),
            kd_augment=augment,
            epochs=1,
        ),
        log=None,
    )
    assert result.history[0]["train_loss"] > 0


def test_augmix_with_js_term_adds_the_consistency_loss(
    distill_config, teacher_ckpt: str, tmp_path: Path
) -> None:
    result = distill(
        distill_config(teacher_ckpt, tmp_path / "js", kd_augment="augmix", augmix_js=True, epochs=1), log=None
    )
    assert result.history[0]["train_loss_js"] >= 0
    assert {"train_loss_ce", "train_loss_kd", "train_loss_js"} <= set(result.history[0])


FEATURE_METHODS_19 = ("cc", "nst", "ab", "vid", "kdpp", "ofd", "ft", "reviewkd", "catkd")


@pytest.mark.slow
@pytest.mark.parametrize("augment", [a for a in AUGMENTS if a != "none"])
@pytest.mark.parametrize("method", FEATURE_METHODS_19)
def test_issue19_feature_methods_take_every_augmentation(
    distill_config, teacher_ckpt: str, tmp_path: Path, method: str, augment: str
) -> None:
    """Every augmentation (AugMix with its three views and JS term too) through the real training loop."""
    result = distill(
        distill_config(
            teacher_ckpt,
            tmp_path / "run",
            method=method,
            kd_augment=augment,
            augmix_js=augment == "augmix",
            epochs=2,
        ),
        log=None,
    )
    assert all(math.isfinite(v) for k, v in result.history[-1].items() if k.startswith("train_loss"))


@pytest.mark.parametrize(
    "method,first,second", [("ab", {"ab"}, {"ce"}), ("ft", {"ce", "ft_rec"}, {"ce", "ft"})]
)
def test_two_phase_methods_switch_phase_in_training(
    distill_config, teacher_ckpt: str, tmp_path: Path, method: str, first: set, second: set
) -> None:
    """AB's and FT's initialisation phase (here epoch 1 of 2), then their second phase, in the real loop."""
    result = distill(
        distill_config(teacher_ckpt, tmp_path / method, method=method, method_options={"init_epochs": 1}),
        log=None,
    )
    phases = [{k[len("train_loss_") :] for k in h if k.startswith("train_loss_")} for h in result.history]
    assert phases == [first, second]
