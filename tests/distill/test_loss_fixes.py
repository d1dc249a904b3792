"""Issue 19's three loss fixes, with the issue's worked numbers: logit standardisation with the unbiased std
(population std as an option), LS's CE weight 0.1, and kd_loss with a per-sample temperature (B, 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calikd.distill import create_distiller, kd_loss, standardize_logits
from calikd.distill.methods.dkd import dkd_loss
from calikd.distill.methods.ls import ls_loss

ZS = [[1.0, 2.0, 4.0], [0.0, -1.0, 3.0]]
ZT = [[3.0, 0.0, 1.0], [2.0, 2.0, -2.0]]


def np_softmax(z: np.ndarray, t: float) -> np.ndarray:
    e = np.exp((z - z.max()) / t)
    return e / e.sum()


def np_kl(p: np.ndarray, q: np.ndarray) -> float:
    return float((p * np.log(p / q)).sum())


def np_ls(zs, zt, t: float, ddof: int) -> float:
    def z(v):
        v = np.asarray(v, dtype=np.float64)
        return (v - v.mean()) / (v.std(ddof=ddof) + 1e-7)

    terms = [np_kl(np_softmax(z(b), t), np_softmax(z(a), t)) for a, b in zip(zs, zt, strict=True)]
    return t * t * float(np.mean(terms))


def test_ls_loss_matches_the_reference_value_of_the_issue() -> None:
    s, t = torch.tensor(ZS), torch.tensor(ZT)
    assert ls_loss(s, t, 2.0).item() == pytest.approx(1.11925, abs=1e-5)  # the authors' code (unbiased std)
    assert ls_loss(s, t, 2.0, unbiased_std=False).item() == pytest.approx(1.65007, abs=1e-5)  # before the fix
    assert ls_loss(s, t, 2.0).item() == pytest.approx(np_ls(ZS, ZT, 2.0, ddof=1), rel=1e-6)
    population = ls_loss(s, t, 2.0, unbiased_std=False).item()
    assert population == pytest.approx(np_ls(ZS, ZT, 2.0, ddof=0), rel=1e-6)


def test_standardize_uses_the_unbiased_std_by_default() -> None:
    z = torch.tensor([[1.0, 2.0, 4.0, -3.0, 0.5]])
    unbiased, population = standardize_logits(z), standardize_logits(z, unbiased=False)
    assert unbiased.std(unbiased=True).item() == pytest.approx(1.0, abs=1e-6)
    assert population.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-6)
    assert (population / unbiased).flatten().tolist() == pytest.approx([np.sqrt(5 / 4)] * 5, rel=1e-5)
    assert unbiased.mean().item() == pytest.approx(0.0, abs=1e-6)


def test_ls_distiller_defaults_to_ce_weight_0_1_and_offers_the_population_std() -> None:
    student, teacher = torch.nn.Identity(), torch.nn.Identity()
    s, t, y = torch.tensor(ZS), torch.tensor(ZT), torch.tensor([2, 0])
    ls = create_distiller("ls", student, teacher)
    assert (ls.config.ce_weight, ls.config.kd_weight, ls.config.tau) == (0.1, 9.0, 2.0)
    _, losses = ls(s, y, teacher_logits=t)
    assert losses["kd"].item() == pytest.approx(9 * 1.11925, abs=1e-4)
    ce = torch.nn.functional.cross_entropy(s, y).item()
    assert losses["ce"].item() == pytest.approx(0.1 * ce, rel=1e-6)
    old = create_distiller("ls", student, teacher, {"population_std": True})
    assert old(s, y, teacher_logits=t)[1]["kd"].item() == pytest.approx(9 * 1.65007, abs=1e-4)


def test_kd_and_dkd_standardize_with_the_unbiased_std() -> None:
    s, t = torch.tensor(ZS), torch.tensor(ZT)
    assert kd_loss(s, t, 2.0, standardize=True).item() == pytest.approx(1.11925, abs=1e-5)
    ddof1 = [list((np.array(v) - np.mean(v)) / (np.std(v, ddof=1) + 1e-7)) for v in ZS]
    tdof1 = [list((np.array(v) - np.mean(v)) / (np.std(v, ddof=1) + 1e-7)) for v in ZT]
    y = torch.tensor([2, 0])
    want = dkd_loss(torch.tensor(ddof1).float(), torch.tensor(tdof1).float(), y, 1.0, 8.0, 2.0)
    assert dkd_loss(s, t, y, 1.0, 8.0, 2.0, standardize=True).item() == pytest.approx(want.item(), rel=1e-5)


def test_kd_loss_with_a_per_sample_temperature_is_the_mean_of_t2_kl() -> None:
    s, t = torch.tensor(ZS), torch.tensor(ZT)
    temps = torch.tensor([[1.0], [4.0]])
    per_sample = [
        tau * tau * np_kl(np_softmax(np.array(b), tau), np_softmax(np.array(a), tau))
        for a, b, tau in zip(ZS, ZT, (1.0, 4.0), strict=True)
    ]
    assert kd_loss(s, t, temps).item() == pytest.approx(3.783, abs=1e-3)  # not 11.018 = mean(KL) * mean(T^2)
    assert kd_loss(s, t, temps).item() == pytest.approx(float(np.mean(per_sample)), rel=1e-5)
    assert kd_loss(s, t, temps, reduction="none").tolist() == pytest.approx(per_sample, rel=1e-5)
    # a shared temperature given as a tensor or a number agrees, with and without reduction
    for shared in (torch.tensor([3.0]), torch.tensor(3.0), torch.full((2, 1), 3.0)):
        assert kd_loss(s, t, shared).item() == pytest.approx(kd_loss(s, t, 3.0).item(), rel=1e-6)


def test_kd_loss_per_sample_temperature_gets_per_sample_gradients() -> None:
    s, t = torch.tensor(ZS), torch.tensor(ZT)
    temps = torch.tensor([[1.0], [4.0]], requires_grad=True)
    kd_loss(s, t, temps).backward()
    for k, tau in enumerate((1.0, 4.0)):  # d/dT_k of mean(T^2 KL_T): only sample k depends on T_k
        h = 1e-3

        def f(x: float, k=k) -> float:
            p = np_softmax(np.array(ZT[k]), x)
            return x * x * np_kl(p, np_softmax(np.array(ZS[k]), x)) / 2

        assert temps.grad[k, 0].item() == pytest.approx((f(tau + h) - f(tau - h)) / (2 * h), rel=1e-3)
