"""SDD: the multi-scale logits and the weighted loss against NumPy re-derivations, invariances, the
distiller on two model pairs (gradients, calibrated teacher regions, no MLP) and an end-to-end run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from calikd.distill import create_distiller, distill, kd_loss
from calikd.distill.methods.sdd import multi_scale_logits, sdd_loss
from calikd.errors import ConfigError
from calikd.models import create_model


def softmax(z: np.ndarray, t: float) -> np.ndarray:
    e = np.exp((z - z.max()) / t)
    return e / e.sum()


def ref_sdd(zs: np.ndarray, zt: np.ndarray, labels, t: float, w: float) -> float:
    """Loops over samples and regions: region 0 is global; a local region whose teacher prediction is right
    while the global one is wrong (or vice versa) weighs ``w``."""
    total = 0.0
    b, r, _ = zs.shape
    for i in range(b):
        global_right = int(np.argmax(zt[i, 0])) == labels[i]
        for j in range(r):
            p, q = softmax(zt[i, j], t), softmax(zs[i, j], t)
            term = t * t * float((p * np.log(p / q)).sum())
            local_right = int(np.argmax(zt[i, j])) == labels[i]
            total += (w if j > 0 and local_right != global_right else 1.0) * term
    return total / (b * r)


RNG = np.random.default_rng(3)
ZS = RNG.normal(size=(3, 5, 4)) * 2
ZT = RNG.normal(size=(3, 5, 4)) * 2
LABELS = [int(np.argmax(ZT[0, 0])), int(np.argmax(ZT[1, 2])), 3]  # right globally / only locally / mixed


@pytest.mark.parametrize(("t", "w"), [(4.0, 2.0), (1.0, 1.0), (2.0, 5.0)])
def test_sdd_loss_matches_reference(t: float, w: float) -> None:
    got = sdd_loss(torch.tensor(ZS).float(), torch.tensor(ZT).float(), torch.tensor(LABELS), t, w)
    assert got.item() == pytest.approx(ref_sdd(ZS, ZT, LABELS, t, w), rel=1e-5)


def test_sdd_with_one_region_is_kd_and_the_loss_is_shift_invariant() -> None:
    s, te, y = torch.tensor(ZS).float(), torch.tensor(ZT).float(), torch.tensor(LABELS)
    assert sdd_loss(s[:, :1], te[:, :1], y).item() == pytest.approx(
        kd_loss(s[:, 0], te[:, 0]).item(), rel=1e-5
    )
    shift = torch.randn(3, 5, 1)
    assert sdd_loss(s + shift, te - shift, y).item() == pytest.approx(sdd_loss(s, te, y).item(), rel=1e-5)
    assert sdd_loss(te, te, y).item() == pytest.approx(0.0, abs=1e-6)
    mixed = 0.8 * torch.nn.functional.one_hot(y, 4).float() + 0.05
    assert sdd_loss(s, te, mixed).item() == pytest.approx(sdd_loss(s, te, y).item(), rel=1e-6)


def test_multi_scale_logits_pool_each_grid_and_apply_the_classifier() -> None:
    torch.manual_seed(0)
    fmap, fc = torch.randn(2, 3, 8, 8), nn.Linear(3, 5)
    got = multi_scale_logits(fmap, fc, (1, 2, 4))
    assert got.shape == (2, 1 + 4 + 16, 5)
    x, w, b = fmap.numpy(), fc.weight.detach().numpy(), fc.bias.detach().numpy()
    want = []
    for s in (1, 2, 4):
        k = 8 // s
        for row in range(s):
            for col in range(s):
                cell = x[:, :, row * k : (row + 1) * k, col * k : (col + 1) * k].mean(axis=(2, 3))
                want.append(cell @ w.T + b)
    assert np.allclose(got.detach().numpy(), np.stack(want, axis=1), atol=1e-5)
    with pytest.raises(ConfigError, match="spatial feature map"):
        multi_scale_logits(torch.randn(2, 3), fc)


PAIRS = [("resnet8", "cnn", {"width": 4}), ("wrn_16_1", "resnet8", {})]


@pytest.mark.parametrize(("teacher_name", "student_name", "kwargs"), PAIRS)
def test_sdd_distiller_on_two_model_pairs(teacher_name: str, student_name: str, kwargs: dict) -> None:
    torch.manual_seed(0)
    teacher = create_model(teacher_name, 4, in_channels=1)
    student = create_model(student_name, 4, in_channels=1, **kwargs)
    x, y = torch.randn(6, 1, 16, 16), torch.tensor([0, 1, 2, 3, 0, 1])
    sdd = create_distiller("sdd", student, teacher, student_input=x)
    assert sdd.method == "sdd" and sdd.uses_features
    logits, losses = sdd(x, y)
    assert set(losses) == {"ce", "kd"} and torch.isfinite(losses["kd"]) and losses["kd"].item() > 0
    sum(losses.values()).backward()
    assert student.fc.weight.grad is not None and all(p.grad is None for p in teacher.parameters())
    assert not any(k.startswith("_") for k in sdd.state_dict())  # the classifiers stay the models' own
    assert sdd.extra_state() == {}
    # scales [1]: the only region is the global one, so SDD is KD on the models' logits
    plain = create_distiller("sdd", student, teacher, {"scales": [1]}, student_input=x)
    logits, losses = plain(x, y)
    with torch.no_grad():
        t_logits = teacher(x)
    assert losses["kd"].item() == pytest.approx(0.9 * kd_loss(logits, t_logits).item(), rel=1e-4)
    # the teacher's regions go through its calibrator (here: temperature 2)
    cal = create_distiller("sdd", student, teacher, {"scales": [1]}, student_input=x,
                           teacher_calibration=lambda z: z / 2)  # fmt: skip
    assert cal(x, y)[1]["kd"].item() == pytest.approx(0.9 * kd_loss(logits, t_logits / 2).item(), rel=1e-4)


def test_sdd_refuses_an_mlp_and_scales_without_the_global_region() -> None:
    x = torch.randn(2, 1, 8, 8)
    conv = create_model("resnet8", 4, in_channels=1)
    mlp = create_model("mlp", 4, in_channels=1, width=8, depth=1, input_size=8)
    with pytest.raises(ConfigError, match="spatial feature map"):
        create_distiller("sdd", mlp, conv, student_input=x)
    with pytest.raises(ConfigError, match="must include 1"):
        create_distiller("sdd", create_model("cnn", 4, in_channels=1, width=4), conv, {"scales": [2, 4]},
                         student_input=x)  # fmt: skip


def test_sdd_distils_end_to_end(distill_config, teacher_ckpt: str, tmp_path: Path) -> None:
    result = distill(distill_config(teacher_ckpt, tmp_path / "sdd", method="sdd", epochs=1), log=None)
    assert result.cache is None and result.history[0]["train_loss_kd"] > 0
