"""Logit methods (DKD, LS, TTM, WTTM, DIST, CTKD): losses against plain-Python re-derivations, gradients,
schedules (DKD warm-up, CTKD curriculum and gradient reversal) and the distillers built by name."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from calikd.distill import create_distiller, kd_loss
from calikd.distill.methods.ctkd import cosine_curriculum, ctkd_loss
from calikd.distill.methods.dist import dist_loss
from calikd.distill.methods.dkd import dkd_loss, warmup_factor
from calikd.distill.methods.ls import ls_loss
from calikd.distill.methods.ttm import ttm_loss
from calikd.distill.methods.wttm import power_sum, wttm_loss
from calikd.errors import ConfigError
from calikd.models import create_model

METHODS = ("dkd", "ls", "ttm", "wttm", "dist", "ctkd")

STUDENT = [[1.0, -0.5, 2.0, 0.3], [0.2, 0.1, -1.0, 1.5], [-0.7, 2.2, 0.4, 0.0]]
TEACHER = [[2.5, -1.0, 1.0, 0.0], [0.0, 0.5, -0.5, 3.0], [-1.0, 1.0, 2.0, 0.5]]
LABELS = [0, 3, 2]


# ----------------------------------------------------------------- plain-Python references
def softmax(z: list[float], t: float = 1.0) -> list[float]:
    top = max(z)
    e = [math.exp((v - top) / t) for v in z]
    total = sum(e)
    return [v / total for v in e]


def kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True) if pi > 0)


def zscore(z: list[float], unbiased: bool = True) -> list[float]:
    mean = sum(z) / len(z)
    std = math.sqrt(sum((v - mean) ** 2 for v in z) / (len(z) - 1 if unbiased else len(z)))
    return [(v - mean) / (std + 1e-7) for v in z]


def pearson(a: list[float], b: list[float], eps: float = 1e-8) -> float:
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    da, db = [v - ma for v in a], [v - mb for v in b]
    num = sum(x * y for x, y in zip(da, db, strict=True))
    return num / (math.sqrt(sum(x * x for x in da)) * math.sqrt(sum(y * y for y in db)) + eps)


def ref_kd(student: list[list[float]], teacher: list[list[float]], t: float) -> float:
    terms = [kl(softmax(zt, t), softmax(zs, t)) for zs, zt in zip(student, teacher, strict=True)]
    return t * t * sum(terms) / len(terms)


def ref_dkd(student, teacher, labels, alpha: float, beta: float, t: float) -> float:
    tckd = nckd = 0.0
    for zs, zt, y in zip(student, teacher, labels, strict=True):
        ps, pt = softmax(zs, t), softmax(zt, t)
        tckd += kl([pt[y], 1 - pt[y]], [ps[y], 1 - ps[y]])
        rest_s = [p / (1 - ps[y]) for j, p in enumerate(ps) if j != y]
        rest_t = [p / (1 - pt[y]) for j, p in enumerate(pt) if j != y]
        nckd += kl(rest_t, rest_s)
    n = len(student)
    return t * t * (alpha * tckd / n + beta * nckd / n)


def ref_ttm(student, teacher, t: float, weighted: bool = False) -> float:
    gamma, total = 1.0 / t, 0.0
    for zs, zt in zip(student, teacher, strict=True):
        p = softmax(zt)
        powered = [v**gamma for v in p]  # the paper's power transform, not softmax(z / T)
        u = sum(powered)
        term = kl([v / u for v in powered], softmax(zs))
        total += u * term if weighted else term
    return total / len(student)


def ref_dist(student, teacher, beta: float, gamma: float, t: float) -> float:
    ys, yt = [softmax(z, t) for z in student], [softmax(z, t) for z in teacher]
    inter = 1 - sum(pearson(a, b) for a, b in zip(ys, yt, strict=True)) / len(ys)
    columns = range(len(ys[0]))
    intra = 1 - sum(pearson([r[j] for r in ys], [r[j] for r in yt]) for j in columns) / len(columns)
    return t * t * (beta * inter + gamma * intra)


def tensors() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor(LABELS)


# ----------------------------------------------------------------- loss values
@pytest.mark.parametrize(("alpha", "beta", "t"), [(1.0, 8.0, 4.0), (0.5, 2.0, 1.0), (2.0, 0.0, 3.0)])
def test_dkd_loss_matches_reference(alpha: float, beta: float, t: float) -> None:
    s, te, y = tensors()
    got = dkd_loss(s, te, y, alpha, beta, t)
    assert got.item() == pytest.approx(ref_dkd(STUDENT, TEACHER, LABELS, alpha, beta, t), rel=1e-5)


def test_dkd_standardized_matches_reference() -> None:
    s, te, y = tensors()
    got = dkd_loss(s, te, y, 1.0, 8.0, 2.0, standardize=True)
    want = ref_dkd([zscore(z) for z in STUDENT], [zscore(z) for z in TEACHER], LABELS, 1.0, 8.0, 2.0)
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_dkd_decomposes_kd() -> None:
    """The paper's identity, per sample: KD = TCKD + (1 - p_t^y) * NCKD."""
    for k in range(3):
        s, te = torch.tensor([STUDENT[k]]), torch.tensor([TEACHER[k]])
        p_ty = softmax(TEACHER[k], 4.0)[LABELS[k]]
        dkd = dkd_loss(s, te, torch.tensor([LABELS[k]]), 1.0, 1.0 - p_ty, 4.0)
        assert dkd.item() == pytest.approx(kd_loss(s, te, 4.0).item(), rel=1e-5)


def test_dkd_soft_targets_use_the_top_class_and_large_logits_stay_finite() -> None:
    s, te, y = tensors()
    mixed = 0.7 * torch.nn.functional.one_hot(y, 4).float() + 0.3 * torch.full((3, 4), 0.25)
    assert dkd_loss(s, te, mixed).item() == pytest.approx(dkd_loss(s, te, y).item(), rel=1e-6)
    huge = dkd_loss(s * 1000, te * 1000, y, 1.0, 8.0, 1.0)
    assert torch.isfinite(huge)


def test_ls_loss_matches_reference_and_ignores_logit_scale() -> None:
    s, te, _ = tensors()
    want = ref_kd([zscore(z) for z in STUDENT], [zscore(z) for z in TEACHER], 2.0)
    assert ls_loss(s, te, 2.0).item() == pytest.approx(want, rel=1e-5)
    assert ls_loss(3 * s + 5, te, 2.0).item() == pytest.approx(want, rel=1e-4)
    assert ls_loss(te * 7 - 1, te, 2.0).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("t", [1.0, 2.0, 10.0])
def test_ttm_loss_matches_power_transform_reference(t: float) -> None:
    s, te, _ = tensors()
    assert ttm_loss(s, te, t).item() == pytest.approx(ref_ttm(STUDENT, TEACHER, t), rel=1e-5)


def test_ttm_is_minimal_at_the_transformed_teacher() -> None:
    _, te, _ = tensors()
    s = (te / 10.0).clone().requires_grad_(True)  # softmax(z_s) == softmax(z_t / T)
    loss = ttm_loss(s, te, 10.0)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert s.grad.abs().max().item() < 1e-6
    assert ttm_loss(te, te, 10.0).item() > 0.01  # matching the untransformed teacher is not the optimum


@pytest.mark.parametrize("t", [2.0, 10.0])
def test_wttm_loss_matches_reference(t: float) -> None:
    s, te, _ = tensors()
    assert wttm_loss(s, te, t).item() == pytest.approx(ref_ttm(STUDENT, TEACHER, t, weighted=True), rel=1e-5)


def test_power_sum_bounds() -> None:
    gamma = 0.1
    assert power_sum(torch.zeros(1, 100), gamma).item() == pytest.approx(100 ** (1 - gamma), rel=1e-5)
    peaked = torch.tensor([[60.0, 0.0, 0.0, 0.0]])
    assert power_sum(peaked, gamma).item() == pytest.approx(1.0, abs=1e-2)
    u = power_sum(torch.tensor(TEACHER), gamma)
    for k, z in enumerate(TEACHER):
        assert u[k].item() == pytest.approx(sum(p**gamma for p in softmax(z)), rel=1e-5)


@pytest.mark.parametrize(("beta", "gamma", "t"), [(2.0, 2.0, 4.0), (1.0, 0.0, 1.0), (0.0, 3.0, 2.0)])
def test_dist_loss_matches_reference(beta: float, gamma: float, t: float) -> None:
    s, te, _ = tensors()
    want = ref_dist(STUDENT, TEACHER, beta, gamma, t)
    assert dist_loss(s, te, beta, gamma, t).item() == pytest.approx(want, rel=1e-5)


def test_dist_is_minimal_when_student_equals_teacher() -> None:
    _, te, _ = tensors()
    s = te.clone().requires_grad_(True)
    loss = dist_loss(s, te)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-4)
    assert s.grad.abs().max().item() < 1e-3


def test_ctkd_loss_is_kd_at_the_tensor_temperature() -> None:
    s, te, _ = tensors()
    got = ctkd_loss(s, te, torch.tensor([3.0]))
    assert got.item() == pytest.approx(ref_kd(STUDENT, TEACHER, 3.0), rel=1e-5)


@pytest.mark.parametrize("fn", [dkd_loss, ls_loss, ttm_loss, wttm_loss, dist_loss, ctkd_loss])
def test_losses_accept_bf16_students_and_vanish_for_a_perfect_student(fn) -> None:
    s, te, y = tensors()
    args = {dkd_loss: (y,), ctkd_loss: (torch.tensor([4.0]),)}.get(fn, ())
    low = fn(s.bfloat16(), te, *args)
    assert low.dtype == torch.float32 and torch.isfinite(low)
    target = te / 10.0 if fn in (ttm_loss, wttm_loss) else te
    assert fn(target, te, *args).item() == pytest.approx(0.0, abs=1e-4)


# ----------------------------------------------------------------- schedules
def test_dkd_warmup_factor() -> None:
    assert warmup_factor(1, 20) == pytest.approx(0.05)
    assert warmup_factor(10, 20) == pytest.approx(0.5)
    assert warmup_factor(20, 20) == 1.0
    assert warmup_factor(200, 20) == 1.0
    assert warmup_factor(1, 0) == 1.0


class Identity4(nn.Module):
    """A 'student' whose logits are its input (plus a parameter so it trains)."""

    def __init__(self) -> None:
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shift


def kd_term(distiller, epoch: int, epochs: int) -> float:
    s, te, y = tensors()
    distiller.set_epoch(epoch, epochs)
    _, losses = distiller(s, y, teacher_logits=te)
    return losses["kd"].item()


def test_dkd_warmup_ramps_the_loss() -> None:
    full = ref_dkd(STUDENT, TEACHER, LABELS, 1.0, 8.0, 4.0)
    dkd = create_distiller("dkd", Identity4(), Identity4())
    assert kd_term(dkd, 1, 24) == pytest.approx(0.5 * full, rel=1e-5)  # default warm-up: 24 / 12 = 2 epochs
    assert kd_term(dkd, 2, 24) == pytest.approx(full, rel=1e-5)
    assert kd_term(dkd, 1, 240) == pytest.approx(full / 20, rel=1e-5)  # the paper's 20 of 240
    assert kd_term(dkd, 30, 240) == pytest.approx(full, rel=1e-5)
    fixed = create_distiller("dkd", Identity4(), Identity4(), {"warmup_epochs": 4, "kd_weight": 2.0})
    assert kd_term(fixed, 1, 240) == pytest.approx(2.0 * full / 4, rel=1e-5)
    none = create_distiller("dkd", Identity4(), Identity4(), {"warmup_epochs": 0})
    assert kd_term(none, 1, 240) == pytest.approx(full, rel=1e-5)


def official_ctkd_lambda(epoch: int, loops: int = 10) -> float:
    """zhengli97/CTKD's CosineDecay(max_value=0, min_value=-1, num_loops=10), sign flipped.

    (Its gradient-reversal layer multiplies the gradient by that negative value.)"""
    i = min(max(epoch, 0), loops)
    value = (math.cos(i * math.pi / loops) + 1.0) * 0.5 * (0 - (-1)) + (-1)
    return -value


def test_ctkd_curriculum_values() -> None:
    assert cosine_curriculum(0, 10) == pytest.approx(0.0)
    assert cosine_curriculum(1, 10) == pytest.approx((1 - math.cos(math.pi / 10)) / 2)
    assert cosine_curriculum(5, 10) == pytest.approx(0.5)
    assert cosine_curriculum(10, 10) == pytest.approx(1.0)
    assert cosine_curriculum(50, 10) == pytest.approx(1.0)
    assert cosine_curriculum(3, 0, 0.2, 0.7) == pytest.approx(0.7)
    ctkd = create_distiller("ctkd", Identity4(), Identity4())
    for epoch in (1, 2, 5, 9, 10, 11, 240):
        ctkd.set_epoch(epoch, 240)  # default curriculum: 240 / 24 = 10 epochs, as in the official script
        assert ctkd.reversal_strength() == pytest.approx(official_ctkd_lambda(epoch), abs=1e-12)
    ctkd.set_epoch(3, 24)
    assert ctkd.reversal_strength() == pytest.approx(1.0)  # 24 / 24 = 1 epoch of curriculum
    custom = create_distiller("ctkd", Identity4(), Identity4(), {"curriculum_epochs": 4, "lambda_max": 2.0})
    custom.set_epoch(2, 100)
    assert custom.reversal_strength() == pytest.approx(1.0)


def test_ctkd_temperature_gets_a_reversed_gradient() -> None:
    sig = 1 / (1 + math.exp(-1.0))
    t0 = 1 + 20 * sig  # theta initialised to 1: T = 1 + 20 * sigmoid(1)
    h = 1e-3
    dkd_dt = (ref_kd(STUDENT, TEACHER, t0 + h) - ref_kd(STUDENT, TEACHER, t0 - h)) / (2 * h)
    dt_dtheta = 20 * sig * (1 - sig)
    for epoch in (5, 240):
        ctkd = create_distiller("ctkd", Identity4(), Identity4())
        assert ctkd.temperature().item() == pytest.approx(t0, rel=1e-6)
        s, te, y = tensors()
        ctkd.set_epoch(epoch, 240)
        lam = ctkd.reversal_strength()
        _, losses = ctkd(s, y, teacher_logits=te)
        sum(losses.values()).backward()
        theta = ctkd.temperature_module.theta
        want = -lam * 0.9 * dkd_dt * dt_dtheta  # descent on the KD loss, reversed and scaled by lambda
        assert theta.grad.item() == pytest.approx(want, rel=1e-3)
        assert math.copysign(1, theta.grad.item()) == -math.copysign(1, dkd_dt)
        assert any(p is theta for p in ctkd.trainable_parameters())
        assert set(ctkd.extra_state()) == {"temperature_module.theta"}
    off = create_distiller("ctkd", Identity4(), Identity4(), {"lambda_max": 0.0})
    s, te, y = tensors()
    _, losses = off(s, y, teacher_logits=te)
    losses["kd"].backward()
    assert off.temperature_module.theta.grad.item() == 0.0


def test_ctkd_state_round_trip() -> None:
    a = create_distiller("ctkd", Identity4(), Identity4())
    with torch.no_grad():
        a.temperature_module.theta.fill_(-0.3)
    b = create_distiller("ctkd", Identity4(), Identity4())
    b.load_extra_state(a.extra_state())
    assert b.temperature().item() == pytest.approx(1 + 20 / (1 + math.exp(0.3)), rel=1e-6)


# ----------------------------------------------------------------- distillers
def tiny_mlp() -> nn.Module:
    return create_model("mlp", 4, in_channels=1, width=8, depth=1, input_size=4)


@pytest.mark.parametrize("name", METHODS)
def test_distiller_builds_trains_and_takes_soft_targets(name: str) -> None:
    torch.manual_seed(0)
    student, teacher = tiny_mlp(), tiny_mlp()
    distiller = create_distiller(name, student, teacher, {"ce_weight": 0.5})
    distiller.set_epoch(3, 10)
    x, y = torch.randn(6, 1, 4, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    logits, losses = distiller(x, y)
    assert logits.shape == (6, 4) and set(losses) == {"ce", "kd"}
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    distiller.zero_grad()
    soft = 0.6 * torch.nn.functional.one_hot(y, 4).float() + 0.1
    _, soft_losses = distiller(x, soft)
    assert soft_losses["kd"].item() == pytest.approx(losses["kd"].item(), rel=1e-5)  # the top class is y
    assert soft_losses["ce"].item() != pytest.approx(losses["ce"].item())
    sum(soft_losses.values()).backward()


@pytest.mark.parametrize("name", METHODS)
def test_unknown_or_invalid_options_are_config_errors(name: str) -> None:
    with pytest.raises(ConfigError, match="unknown key 'temprature'"):
        create_distiller(name, tiny_mlp(), tiny_mlp(), {"temprature": 2.0})
    with pytest.raises(ConfigError):
        create_distiller(name, tiny_mlp(), tiny_mlp(), {"kd_weight": -1.0})
    distiller = create_distiller(name, tiny_mlp(), tiny_mlp(), {"ce_weight": 0.0})
    s, te, y = tensors()
    distiller.student = Identity4()
    assert set(distiller(s, y, teacher_logits=te)[1]) == {"kd"}


def test_defaults_follow_the_papers() -> None:
    def options(name: str) -> dict:
        return vars(create_distiller(name, Identity4(), Identity4()).config)

    assert options("dkd") == {
        "ce_weight": 1.0, "kd_weight": 1.0, "alpha": 1.0, "beta": 8.0, "tau": 4.0,
        "warmup_epochs": None, "standardize": False,
    }  # fmt: skip
    assert options("ls") == {"ce_weight": 0.1, "kd_weight": 9.0, "tau": 2.0, "population_std": False}
    assert options("ttm") == {"ce_weight": 1.0, "kd_weight": 100.0, "tau": 10.0}
    assert options("wttm") == {"ce_weight": 1.0, "kd_weight": 3.0, "tau": 10.0}
    assert options("dist") == {
        "ce_weight": 1.0,
        "kd_weight": 1.0,
        "beta": 2.0,
        "gamma": 2.0,
        "tau": 4.0,
    }
    ctkd = options("ctkd")
    assert (ctkd["ce_weight"], ctkd["kd_weight"], ctkd["temperature_min"], ctkd["temperature_span"]) == (
        0.1, 0.9, 1.0, 20.0,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="unknown key 'temperature'"):
        create_distiller("ctkd", Identity4(), Identity4(), {"temperature": 4.0})


def test_warmup_ramps_per_step_so_a_one_epoch_warmup_still_ramps() -> None:
    full = ref_dkd(STUDENT, TEACHER, LABELS, 1.0, 8.0, 4.0)
    s, te, y = tensors()
    dkd = create_distiller("dkd", Identity4(), Identity4())  # 12 epochs: 12 x 20/240 = 1 warm-up epoch
    dkd.set_epoch(1, 12)
    terms = []
    for step in range(4):
        dkd.set_step(step, 4)
        terms.append(dkd(s, y, teacher_logits=te)[1]["kd"].item())
    assert terms == pytest.approx([full / 4, full / 2, 3 * full / 4, full], rel=1e-5)
    dkd.set_epoch(2, 12)
    dkd.set_step(0, 4)
    assert dkd(s, y, teacher_logits=te)[1]["kd"].item() == pytest.approx(full, rel=1e-5)
    long = create_distiller("dkd", Identity4(), Identity4())  # the paper's 20 of 240 epochs
    long.set_epoch(3, 240)
    long.set_step(9, 10)  # an epoch's last step: the authors' per-epoch weight 3 / 20
    assert long(s, y, teacher_logits=te)[1]["kd"].item() == pytest.approx(3 * full / 20, rel=1e-5)
    long.set_step(4, 10)
    assert long(s, y, teacher_logits=te)[1]["kd"].item() == pytest.approx(2.5 * full / 20, rel=1e-5)
