"""MLKD, NKD, TF-KD and RLD: losses against NumPy re-derivations from the papers' equations, invariances,
the distillers built by name (soft targets, options), and end-to-end runs with the logit cache and mixup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from calikd.distill import create_distiller, distill
from calikd.distill.methods.mlkd import mlkd_losses
from calikd.distill.methods.nkd import nkd_loss
from calikd.distill.methods.rld import rld_loss
from calikd.distill.methods.tfkd import tfkd_loss, virtual_teacher
from calikd.errors import ConfigError

STUDENT = np.array([[1.0, -0.5, 2.0, 0.3], [0.2, 0.1, -1.0, 1.5], [-0.7, 2.2, 0.4, 0.0]])
TEACHER = np.array([[2.5, -1.0, 1.0, 0.0], [0.0, 0.5, -0.5, 3.0], [-1.0, 1.0, 2.0, 0.5]])
LABELS = np.array([0, 3, 1])  # the teacher is wrong on the last sample (it ranks class 2 above 1)
METHODS = ("mlkd", "nkd", "tfkd", "rld")


def softmax(z: np.ndarray, t: float = 1.0) -> np.ndarray:
    e = np.exp((z - z.max(axis=-1, keepdims=True)) / t)
    return e / e.sum(axis=-1, keepdims=True)


def kl(p: np.ndarray, q: np.ndarray) -> float:
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    nz = p > 0
    return float((p[nz] * np.log(p[nz] / q[nz])).sum())


def tensors() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.tensor(STUDENT).float(), torch.tensor(TEACHER).float(), torch.tensor(LABELS)


# ----------------------------------------------------------------- NumPy references from the equations
def ref_nkd(zs, zt, y, t: float, gamma: float) -> float:
    total = 0.0
    for a, b, k in zip(zs, zt, y, strict=True):
        total += -softmax(b)[k] * np.log(softmax(a)[k])
        others = [j for j in range(len(a)) if j != k]
        qs, qt = softmax(a[others], t), softmax(b[others], t)
        total += -gamma * t * t * float((qt * np.log(qs)).sum())
    return total / len(zs)


def ref_tfkd(zs, y, t: float, a: float) -> float:
    k = zs.shape[1]
    terms = []
    for z, label in zip(zs, y, strict=True):
        u = np.full(k, (1 - a) / (k - 1))
        u[label] = a
        terms.append(kl(softmax(u, t), softmax(z)))
    return float(np.mean(terms))


def ref_rld(zs, zt, y, alpha: float, beta: float, t: float, t_a: float) -> float:
    scd = mcd = 0.0
    for a, b, k in zip(zs, zt, y, strict=True):
        ps, pt = softmax(a, t_a), softmax(b, t_a)
        m = int(np.argmax(b))
        scd += t_a**2 * kl([pt[m], 1 - pt[m]], [ps[k], 1 - ps[k]])
        below = [j for j in range(len(a)) if b[j] < b[k]]  # classes the teacher ranks below the label
        if below:
            mcd += t * t * kl(softmax(b[below], t), softmax(a[below], t))
    n = len(zs)
    return alpha * scd / n + beta * mcd / n


def ref_mlkd(zs, zt, temps) -> tuple[float, float, float]:
    inst = bat = cls = 0.0
    b, c = zs.shape
    for t in temps:
        ps, pt = softmax(zs, t), softmax(zt, t)
        inst += t * t * np.mean([kl(pt[i], ps[i]) for i in range(b)])
        bat += sum((pt[i] @ pt[j] - ps[i] @ ps[j]) ** 2 for i in range(b) for j in range(b)) / b
        cls += sum((pt[:, i] @ pt[:, j] - ps[:, i] @ ps[:, j]) ** 2 for i in range(c) for j in range(c)) / c
    return inst, bat, cls


# ----------------------------------------------------------------- loss values
@pytest.mark.parametrize(("t", "gamma"), [(3.0, 3.5), (1.0, 1.5), (2.0, 0.0)])
def test_nkd_loss_matches_reference(t: float, gamma: float) -> None:
    s, te, y = tensors()
    want = ref_nkd(STUDENT, TEACHER, LABELS, t, gamma)
    assert nkd_loss(s, te, y, t, gamma).item() == pytest.approx(want, rel=1e-5)


def test_nkd_non_target_part_is_shift_invariant_per_sample_and_minimal_at_the_teacher() -> None:
    s, te, y = tensors()
    shift = torch.tensor([[5.0], [-3.0], [0.7]])
    assert nkd_loss(s + shift, te - shift, y).item() == pytest.approx(nkd_loss(s, te, y).item(), rel=1e-5)
    # at gamma = 0 only the target term is left: -p_t(y) log p_s(y)
    want = -np.mean([softmax(TEACHER[i])[k] * np.log(softmax(STUDENT[i])[k]) for i, k in enumerate(LABELS)])
    assert nkd_loss(s, te, y, 3.0, 0.0).item() == pytest.approx(want, rel=1e-5)
    # a student whose non-target logits equal the teacher's (any target logit) gets no gradient from the
    # non-target term, which ignores the target logit
    student = te.clone()
    student[torch.arange(3), y] = torch.tensor([7.0, -2.0, 0.0])
    student.requires_grad_(True)
    (nkd_loss(student, te, y, 3.0, 3.5) - nkd_loss(student, te, y, 3.0, 0.0)).backward()
    assert student.grad.abs().max().item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(("t", "a"), [(20.0, 0.99), (1.0, 0.9), (40.0, 0.5)])
def test_tfkd_loss_matches_reference(t: float, a: float) -> None:
    s, _, y = tensors()
    assert tfkd_loss(s, y, t, a).item() == pytest.approx(ref_tfkd(STUDENT, LABELS, t, a), rel=1e-5)


def test_tfkd_virtual_teacher_and_soft_targets() -> None:
    _, _, y = tensors()
    u = virtual_teacher(y, 4, 0.9)
    assert u.sum(1).tolist() == pytest.approx([1.0] * 3)
    assert u[0].tolist() == pytest.approx([0.9, 0.1 / 3, 0.1 / 3, 0.1 / 3])
    # a mixed label mixes the two virtual teachers' inputs linearly
    mixed = 0.7 * torch.nn.functional.one_hot(y, 4).float() + 0.3 * torch.nn.functional.one_hot(y.flip(0), 4)
    assert torch.allclose(virtual_teacher(mixed, 4, 0.9), 0.7 * u + 0.3 * u.flip(0))
    s, _, _ = tensors()
    assert torch.isfinite(tfkd_loss(s, mixed)) and tfkd_loss(s, mixed).item() > 0
    assert tfkd_loss(s + 4.0, y).item() == pytest.approx(tfkd_loss(s, y).item(), rel=1e-5)  # shift invariant


@pytest.mark.parametrize(("alpha", "beta", "t", "t_a"), [(1.0, 8.0, 4.0, 4.0), (2.0, 1.0, 2.0, 1.0)])
def test_rld_loss_matches_reference(alpha: float, beta: float, t: float, t_a: float) -> None:
    s, te, y = tensors()
    want = ref_rld(STUDENT, TEACHER, LABELS, alpha, beta, t, t_a)
    assert rld_loss(s, te, y, alpha, beta, t, t_a).item() == pytest.approx(want, rel=1e-5)
    if t == t_a:
        assert rld_loss(s, te, y, alpha, beta, t).item() == pytest.approx(want, rel=1e-5)


def test_rld_masks_the_classes_the_teacher_ranks_above_the_label() -> None:
    s, te, y = tensors()
    # changing the student's logits of masked classes (label and above) leaves MCD alone: with alpha 0
    # only MCD counts, and sample 2's label 1 is below class 2 in the teacher's ranking
    other = s.clone()
    other[2, 2] += 3.0
    other[2, 1] -= 1.0
    other[0, 0] += 2.0
    mcd = rld_loss(s, te, y, 0.0, 1.0).item()
    assert rld_loss(other, te, y, 0.0, 1.0).item() == pytest.approx(mcd, rel=1e-5)
    # a label the teacher ranks last leaves no class for MCD: the loss is SCD alone, and finite
    last = te.argmin(1)
    assert rld_loss(s, te, last, 0.0, 1.0).item() == pytest.approx(0.0, abs=1e-7)
    # per-sample shifts of the logits change nothing
    shift = torch.tensor([[1.0], [-2.0], [4.0]])
    assert rld_loss(s + shift, te + shift, y).item() == pytest.approx(rld_loss(s, te, y).item(), rel=1e-5)


def test_mlkd_losses_match_reference_and_vanish_at_the_teacher() -> None:
    s, te, _ = tensors()
    temps = (2.0, 3.0, 4.0, 5.0, 6.0)
    got = mlkd_losses(s, te, temps)
    want = ref_mlkd(STUDENT, TEACHER, temps)
    for key, value in zip(("instance", "batch", "class"), want, strict=True):
        assert got[key].item() == pytest.approx(value, rel=1e-5), key
    same = mlkd_losses(te + torch.tensor([[1.0], [2.0], [-3.0]]), te, temps)  # shift-invariant, zero
    assert all(v.item() == pytest.approx(0.0, abs=1e-6) for v in same.values())
    # batch order: the batch and class terms do not depend on the order of the samples
    perm = torch.tensor([2, 0, 1])
    shuffled = mlkd_losses(s[perm], te[perm], temps)
    assert all(shuffled[k].item() == pytest.approx(got[k].item(), rel=1e-5) for k in got)
    with pytest.raises(ConfigError):
        mlkd_losses(s, te, [])


# ----------------------------------------------------------------- distillers
class Identity4(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shift


@pytest.mark.parametrize("name", METHODS)
def test_distiller_trains_a_step_with_cached_logits_and_soft_targets(name: str) -> None:
    s, te, y = tensors()
    student = Identity4()
    distiller = create_distiller(name, student, Identity4() if name != "tfkd" else None)
    distiller.set_epoch(30, 240)
    logits, losses = distiller(s, y, teacher_logits=te)
    assert torch.equal(logits, s) and "ce" in losses and "kd" in losses
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert student.shift.grad is not None and student.shift.grad.abs().sum() > 0
    mixed = 0.6 * torch.nn.functional.one_hot(y, 4).float() + 0.1
    _, soft = distiller(s, mixed, teacher_logits=te)
    if name in ("nkd", "rld"):  # these use the top class of a mixed target, which is y
        assert soft["kd"].item() == pytest.approx(losses["kd"].item(), rel=1e-5)
    assert soft["ce"].item() != pytest.approx(losses["ce"].item())


def test_defaults_follow_the_authors() -> None:
    def options(name: str) -> dict:
        return vars(create_distiller(name, Identity4(), Identity4()).config)

    assert options("nkd") == {"ce_weight": 1.0, "kd_weight": 1.0, "tau": 3.0, "gamma": 3.5}
    assert options("tfkd") == {"ce_weight": 0.9, "kd_weight": 0.1, "tau": 20.0, "correct_prob": 0.99}
    assert options("rld") == {
        "ce_weight": 1.0, "kd_weight": 1.0, "alpha": 1.0, "beta": 8.0, "tau": 4.0,
        "alpha_temperature": None, "warmup_epochs": None,
    }  # fmt: skip
    assert options("mlkd") == {"ce_weight": 0.1, "kd_weight": 0.9, "temperatures": [2.0, 3.0, 4.0, 5.0, 6.0]}
    tfkd = create_distiller("tfkd", Identity4(), None)
    assert tfkd.teacher is None and not tfkd.needs_teacher


def test_rld_warms_up_like_dkd() -> None:
    s, te, y = tensors()
    full = rld_loss(s, te, y).item()
    rld = create_distiller("rld", Identity4(), Identity4())
    rld.set_epoch(1, 240)  # 20 warm-up epochs of 240
    assert rld(s, y, teacher_logits=te)[1]["kd"].item() == pytest.approx(full / 20, rel=1e-5)
    rld.set_epoch(20, 240)
    assert rld(s, y, teacher_logits=te)[1]["kd"].item() == pytest.approx(full, rel=1e-5)


# ----------------------------------------------------------------- end to end
@pytest.mark.parametrize("name", METHODS)
def test_methods_distil_with_the_logit_cache_and_with_mixup(
    distill_config, teacher_ckpt: str, tmp_path: Path, name: str
) -> None:
    cached = distill(
        distill_config(teacher_ckpt, tmp_path / "c", method=name, augment=False, teacher_cache="memory"),
        log=None,
    )
    if name == "tfkd":
        assert cached.cache is None and cached.teacher == {}  # no teacher, nothing to cache
    else:
        assert cached.cache["hits"] == cached.cache["misses"] == 288 // 32  # epoch 2 reuses epoch 1
    assert 0.0 <= cached.student_test_last["accuracy"] <= 1.0
    mixed = distill(distill_config(teacher_ckpt, tmp_path / "m", method=name, kd_augment="mixup", epochs=1))
    assert mixed.history[0]["train_loss_kd"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("augment", ["cutout", "mixup", "cutmix", "augmix", "augmix-js"])
@pytest.mark.parametrize("name", [*METHODS, "sdd"])
def test_new_methods_take_every_augmentation(
    distill_config, teacher_ckpt: str, tmp_path: Path, name: str, augment: str
) -> None:
    options = {"kd_augment": augment}
    if augment == "augmix-js":
        options = {"kd_augment": "augmix", "augmix_js": True}
    if name == "mlkd":  # its batch and class terms grow with the batch squared (3 views here), 4 classes
        options["grad_clip"] = 1.0
    result = distill(distill_config(teacher_ckpt, tmp_path / "r", method=name, epochs=1, **options), log=None)
    assert result.history[0]["train_loss_kd"] > 0


def test_a_warm_up_without_set_epoch_warns_once_and_runs_at_full_weight() -> None:
    import warnings as _warnings

    from calikd.distill import create_distiller
    from calikd.distill.base import WarmupWarning
    from calikd.models import create_model

    torch.manual_seed(0)
    student, teacher = create_model("mlp", 10, 1, width=8), create_model("mlp", 10, 1, width=8)
    x, y = torch.randn(4, 1, 8, 8), torch.arange(4)
    own_loop = create_distiller("dkd", student, teacher, {"warmup_epochs": 20})
    with pytest.warns(WarmupWarning, match="set_epoch\\(epoch, epochs\\) was never called"):
        _, losses = own_loop(x, y)
    with _warnings.catch_warnings():
        _warnings.simplefilter("error", WarmupWarning)  # once only
        own_loop(x, y)
    told = create_distiller("dkd", student, teacher, {"warmup_epochs": 20})
    told.set_epoch(1, 240)
    _, ramped = told(x, y)
    torch.testing.assert_close(ramped["kd"], losses["kd"] / 20)  # epoch 1 of a 20-epoch warm-up
    none = create_distiller("dkd", student, teacher, {"warmup_epochs": 0})
    with _warnings.catch_warnings():
        _warnings.simplefilter("error", WarmupWarning)  # no warm-up asked for: nothing to warn about
        none(x, y)
