"""Feature / relation distillers: FitNet, AT, PKT, SP, RKD, CRD.

Every loss is checked against an independent plain-Python / NumPy re-derivation with explicit loops, for
its invariances, and every distiller end to end on tiny calikd models (same and cross resolution).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from calikd.distill import create_distiller, method_config
from calikd.distill.methods import crd as crd_module
from calikd.distill.methods.at import at_loss, attention_map, intermediate_stages
from calikd.distill.methods.crd import (
    ContrastMemory,
    contrast_scores,
    crd_loss,
    nce_loss,
    sample_negatives,
)
from calikd.distill.methods.fitnet import HintRegressor, fitnet_loss
from calikd.distill.methods.pkt import pkt_loss
from calikd.distill.methods.rkd import rkd_angle_loss, rkd_distance_loss, rkd_loss
from calikd.distill.methods.sp import sp_loss
from calikd.errors import ConfigError
from calikd.models import create_model

METHODS = ("fitnet", "at", "pkt", "sp", "rkd", "crd")
LOSS_NAMES = {
    "fitnet": {"ce", "fitnet"},
    "at": {"ce", "at"},
    "pkt": {"ce", "pkt"},
    "sp": {"ce", "sp"},
    "rkd": {"ce", "rkd_distance", "rkd_angle"},
    "crd": {"ce", "crd"},
}
PROJECTORS = {"fitnet": ("regressors",), "crd": ("embed_student", "embed_teacher")}
NUM_SAMPLES = 24


def _t(array: np.ndarray) -> torch.Tensor:
    return torch.tensor(array, dtype=torch.float32)


def _smooth_l1(a: float, b: float) -> float:
    d = abs(a - b)
    return 0.5 * d * d if d < 1.0 else d - 0.5


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """These tiny models run fastest on one thread (two spin against each other on a loaded machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# ----------------------------------------------------------------- FitNet
def test_fitnet_loss_matches_loops(rng: np.random.Generator) -> None:
    s, t = rng.normal(size=(2, 3, 2, 2)), rng.normal(size=(2, 3, 2, 2))
    total, count = 0.0, 0
    for idx in np.ndindex(*s.shape):
        total += (s[idx] - t[idx]) ** 2
        count += 1
    assert fitnet_loss(_t(s), _t(t)).item() == pytest.approx(total / count, rel=1e-5)
    assert fitnet_loss(_t(s), _t(s)).item() == 0.0
    with pytest.raises(ConfigError, match="differ in shape"):
        fitnet_loss(_t(s), _t(t[:, :2]))


def test_hint_regressor_maps_channels_and_pools_to_the_smaller_map() -> None:
    torch.manual_seed(0)
    reg = HintRegressor((4, 8, 8), (6, 4, 4))
    pred, target = reg(torch.randn(3, 4, 8, 8), torch.randn(3, 6, 4, 4))
    assert pred.shape == target.shape == (3, 6, 4, 4)
    assert (pred >= 0).all()  # ends with a ReLU by default
    reg = HintRegressor((4, 2, 2), (6, 5, 5), relu=False)  # teacher larger: the teacher map is pooled
    teacher = torch.randn(3, 6, 5, 5)
    pred, target = reg(torch.randn(3, 4, 2, 2), teacher)
    assert pred.shape == target.shape == (3, 6, 2, 2)
    assert target[0, 0, 0, 0].item() == pytest.approx(teacher[0, 0, :3, :3].mean().item(), rel=1e-5)
    assert (pred < 0).any()
    reg = HintRegressor((5,), (7,))
    assert reg(torch.randn(3, 5), torch.randn(3, 7))[0].shape == (3, 7)
    with pytest.raises(ConfigError, match="both must be"):
        HintRegressor((4, 2, 2), (7,))


# ----------------------------------------------------------------- AT
def _attention_np(x: np.ndarray, p: float) -> np.ndarray:
    b, c, h, w = x.shape
    out = np.zeros((b, h * w))
    for i in range(b):
        for y in range(h):
            for z in range(w):
                out[i, y * w + z] = sum(abs(x[i, k, y, z]) ** p for k in range(c)) / c
        out[i] /= math.sqrt(sum(v * v for v in out[i]))
    return out


def _avg_pool_2x2(x: np.ndarray) -> np.ndarray:
    b, c, h, w = x.shape
    out = np.zeros((b, c, h // 2, w // 2))
    for idx in np.ndindex(*out.shape):
        i, k, y, z = idx
        out[idx] = x[i, k, 2 * y : 2 * y + 2, 2 * z : 2 * z + 2].mean()
    return out


@pytest.mark.parametrize("p", [2.0, 3.0])
def test_attention_map_matches_loops(rng: np.random.Generator, p: float) -> None:
    x = rng.normal(size=(2, 3, 2, 3))
    np.testing.assert_allclose(attention_map(_t(x), p).numpy(), _attention_np(x, p), rtol=1e-5, atol=1e-7)
    with pytest.raises(ConfigError, match="feature maps"):
        attention_map(torch.randn(2, 5), p)


def test_at_loss_matches_loops_with_a_larger_student_map(rng: np.random.Generator) -> None:
    s1, t1 = rng.normal(size=(2, 3, 4, 4)), rng.normal(size=(2, 5, 2, 2))  # student pooled 4x4 -> 2x2
    s2, t2 = rng.normal(size=(2, 2, 2, 2)), rng.normal(size=(2, 4, 2, 2))
    expected = 0.0
    for s, t in ((_avg_pool_2x2(s1), t1), (s2, t2)):
        a_s, a_t = _attention_np(s, 2), _attention_np(t, 2)
        expected += sum((a_s[i, j] - a_t[i, j]) ** 2 for i in range(2) for j in range(4)) / 8
    got = at_loss([_t(s1), _t(s2)], [_t(t1), _t(t2)], 2.0)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_at_loss_invariances(rng: np.random.Generator) -> None:
    f = _t(rng.normal(size=(3, 4, 3, 3)))
    assert at_loss([f], [f.clone()]).item() == 0.0
    # the normalised map ignores the scale of the features and the channel count of the partner
    assert at_loss([3.0 * f], [f]).item() == pytest.approx(0.0, abs=1e-12)
    assert at_loss([f], [torch.cat([f, f], dim=1)]).item() == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ConfigError, match="one to one"):
        at_loss([f, f], [f])


# ----------------------------------------------------------------- PKT
def _pkt_np(s: np.ndarray, t: np.ndarray, eps: float = 1e-7) -> float:
    def probs(x: np.ndarray) -> list[list[float]]:
        b = len(x)
        unit = [x[i] / (math.sqrt(sum(v * v for v in x[i])) + eps) for i in range(b)]
        k = [[(float(np.dot(unit[i], unit[j])) + 1.0) / 2.0 for j in range(b)] for i in range(b)]
        return [[k[i][j] / sum(k[i]) for j in range(b)] for i in range(b)]

    p_s, p_t = probs(s), probs(t)
    b = len(s)
    total = sum(
        p_t[i][j] * math.log((p_t[i][j] + eps) / (p_s[i][j] + eps)) for i in range(b) for j in range(b)
    )
    return total / (b * b)


def test_pkt_loss_matches_loops(rng: np.random.Generator) -> None:
    s, t = rng.normal(size=(4, 3)), rng.normal(size=(4, 5))  # different dimensions are fine
    assert pkt_loss(_t(s), _t(t)).item() == pytest.approx(_pkt_np(s, t), rel=1e-4)


def test_pkt_loss_invariances(rng: np.random.Generator) -> None:
    e = _t(rng.normal(size=(5, 4)))
    assert pkt_loss(e, e.clone()).item() == pytest.approx(0.0, abs=1e-7)
    base = pkt_loss(e, _t(rng.normal(size=(5, 6))))
    assert base.item() > 0
    # cosine similarities ignore each sample's norm
    scale = torch.tensor([[0.5], [2.0], [3.0], [1.0], [7.0]])
    assert pkt_loss(e * scale, e).item() == pytest.approx(0.0, abs=1e-6)


# ----------------------------------------------------------------- SP
def _sp_np(s: np.ndarray, t: np.ndarray) -> float:
    def gram(x: np.ndarray) -> list[list[float]]:
        q = x.reshape(len(x), -1)
        b = len(q)
        g = [[float(np.dot(q[i], q[j])) for j in range(b)] for i in range(b)]
        return [[g[i][j] / math.sqrt(sum(v * v for v in g[i])) for j in range(b)] for i in range(b)]

    g_s, g_t = gram(s), gram(t)
    b = len(s)
    return sum((g_t[i][j] - g_s[i][j]) ** 2 for i in range(b) for j in range(b)) / (b * b)


def test_sp_loss_matches_loops(rng: np.random.Generator) -> None:
    s, t = rng.normal(size=(3, 2, 2, 2)), rng.normal(size=(3, 5, 3, 3))  # any shapes: B x B Gram matrices
    assert sp_loss(_t(s), _t(t)).item() == pytest.approx(_sp_np(s, t), rel=1e-5)


def test_sp_loss_invariances(rng: np.random.Generator) -> None:
    f = _t(rng.normal(size=(4, 3, 2, 2)))
    assert sp_loss(f, f.clone()).item() == pytest.approx(0.0, abs=1e-12)
    assert sp_loss(5.0 * f, f).item() == pytest.approx(0.0, abs=1e-10)
    perm = torch.randperm(3)  # permuting channels keeps every inner product
    assert sp_loss(f[:, perm], f).item() == pytest.approx(0.0, abs=1e-10)
    with pytest.raises(ConfigError, match="same batch"):
        sp_loss(f, f[:3])


# ----------------------------------------------------------------- RKD
def _rkd_distance_np(s: np.ndarray, t: np.ndarray) -> float:
    def normalized(x: np.ndarray) -> list[list[float]]:
        b = len(x)
        d = [[math.sqrt(sum((x[i] - x[j]) ** 2)) if i != j else 0.0 for j in range(b)] for i in range(b)]
        mean = sum(d[i][j] for i in range(b) for j in range(b) if i != j) / (b * (b - 1))
        return [[d[i][j] / mean for j in range(b)] for i in range(b)]

    d_s, d_t = normalized(s), normalized(t)
    b = len(s)
    return sum(_smooth_l1(d_s[i][j], d_t[i][j]) for i in range(b) for j in range(b)) / (b * b)


def _rkd_angle_np(s: np.ndarray, t: np.ndarray) -> float:
    def angles(x: np.ndarray) -> np.ndarray:
        b = len(x)
        out = np.zeros((b, b, b))
        for i in range(b):
            for j in range(b):
                for k in range(b):
                    if j == i or k == i:
                        continue  # a zero vector: cosine 0
                    u, v = x[j] - x[i], x[k] - x[i]
                    out[i, j, k] = np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v))
        return out

    a_s, a_t = angles(s), angles(t)
    return sum(_smooth_l1(a_s[idx], a_t[idx]) for idx in np.ndindex(*a_s.shape)) / a_s.size


def test_rkd_losses_match_loops(rng: np.random.Generator) -> None:
    s, t = rng.normal(size=(5, 3)), 4.0 * rng.normal(size=(5, 6))  # large teacher distances: both branches
    d, a = _rkd_distance_np(s, t), _rkd_angle_np(s, t)
    assert rkd_distance_loss(_t(s), _t(t)).item() == pytest.approx(d, rel=1e-4)
    assert rkd_angle_loss(_t(s), _t(t)).item() == pytest.approx(a, rel=1e-4)
    assert rkd_loss(_t(s), _t(t), 25.0, 50.0).item() == pytest.approx(25 * d + 50 * a, rel=1e-4)
    assert rkd_loss(_t(s), _t(t), 1.0, 0.0).item() == pytest.approx(d, rel=1e-4)


def test_rkd_invariances(rng: np.random.Generator) -> None:
    s, t = _t(rng.normal(size=(6, 4))), _t(rng.normal(size=(6, 3)))
    d, a = rkd_distance_loss(s, t).item(), rkd_angle_loss(s, t).item()
    assert d > 0 and a > 0
    # the distances are normalised by their mean: scaling either or both embeddings changes nothing
    assert rkd_distance_loss(10.0 * s, 0.1 * t).item() == pytest.approx(d, rel=1e-4)
    # angles ignore scale and translation
    assert rkd_angle_loss(3.0 * s + 5.0, t - 2.0).item() == pytest.approx(a, rel=1e-4)
    assert rkd_loss(s, s.clone()).item() == pytest.approx(0.0, abs=1e-6)
    # a batch of one has no pairs: no loss, but still a graph
    single = torch.randn(1, 4, requires_grad=True)
    loss = rkd_loss(single, torch.randn(1, 3))
    loss.backward()
    assert loss.item() == 0.0 and single.grad is not None


def test_rkd_gradient_is_finite_for_duplicate_samples() -> None:
    s = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 1.0]], requires_grad=True)
    rkd_loss(s, torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])).backward()
    assert torch.isfinite(s.grad).all()


# ----------------------------------------------------------------- CRD pieces
def test_nce_loss_matches_loops(rng: np.random.Generator) -> None:
    scores = rng.uniform(0.01, 2.0, size=(3, 5))  # column 0 positive, 4 negatives
    n, eps = 50, 1e-7
    m = 4
    total = 0.0
    for b in range(3):
        total += math.log(scores[b, 0] / (scores[b, 0] + m / n + eps))
        for k in range(1, 5):
            total += math.log((m / n) / (scores[b, k] + m / n + eps))
    assert nce_loss(_t(scores), n).item() == pytest.approx(-total / 3, rel=1e-5)
    other = rng.uniform(0.01, 2.0, size=(3, 5))
    both = crd_loss(_t(scores), _t(other), n).item()
    assert both == pytest.approx(nce_loss(_t(scores), n).item() + nce_loss(_t(other), n).item(), rel=1e-6)
    # a stronger positive and weaker negatives lower the loss
    better = scores.copy()
    better[:, 0] *= 5
    better[:, 1:] /= 5
    assert nce_loss(_t(better), n).item() < nce_loss(_t(scores), n).item()


def test_contrast_scores_match_loops(rng: np.random.Generator) -> None:
    anchor, rows = rng.normal(size=(2, 3)), rng.normal(size=(2, 4, 3))
    expected = [[math.exp(float(np.dot(anchor[b], rows[b, k])) / 0.07) for k in range(4)] for b in range(2)]
    np.testing.assert_allclose(contrast_scores(_t(anchor), _t(rows), 0.07).numpy(), expected, rtol=1e-4)


def test_sample_negatives_excludes_the_positive_and_is_seeded() -> None:
    index = torch.tensor([0, 3, 9])
    torch.manual_seed(5)
    a = sample_negatives(index, 10, 200)
    torch.manual_seed(5)
    b = sample_negatives(index, 10, 200)
    assert torch.equal(a, b) and a.shape == (3, 201)
    assert torch.equal(a[:, 0], index)
    neg = a[:, 1:]
    assert ((neg >= 0) & (neg < 10)).all()
    assert (neg != index[:, None]).all()
    assert len(torch.unique(neg)) == 10  # every other sample can be drawn (0..9 minus one per row)
    generator = torch.Generator().manual_seed(1)
    c = sample_negatives(index, 10, 50, generator=generator)
    d = sample_negatives(index, 10, 50, generator=torch.Generator().manual_seed(1))
    assert torch.equal(c, d)


def test_sample_negatives_other_class_skips_known_same_class_samples() -> None:
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, -1, -1])  # -1: not seen yet, may be drawn
    torch.manual_seed(0)
    idx = sample_negatives(
        torch.tensor([0, 3]), 10, 100, sample_labels=labels, anchor_labels=torch.tensor([0, 1])
    )
    assert not torch.isin(idx[0, 1:], torch.tensor([0, 1, 2])).any()
    assert not torch.isin(idx[1, 1:], torch.tensor([3, 4, 5])).any()
    assert torch.isin(idx[0, 1:], torch.tensor([8, 9])).any()


def test_other_class_negatives_are_uniform_over_the_other_classes_and_never_the_positive() -> None:
    labels = torch.tensor([2, 0, 1, 0, -1, 2, 1, 0, 2, 1, 0, 1])  # unsorted; -1: not seen yet
    index = torch.tensor([1, 2, 11, 4, 6])
    anchors = torch.tensor([0, 1, 1, -1, 2])  # the 4th: unknown class; the 5th: its positive's label differs
    generator = torch.Generator().manual_seed(0)
    draws = 60_000
    idx = sample_negatives(index, 12, draws, sample_labels=labels, anchor_labels=anchors, generator=generator)
    assert torch.equal(idx[:, 0], index)
    for row, (c, positive) in enumerate(zip(anchors.tolist(), index.tolist(), strict=True)):
        allowed = [j for j in range(12) if j != positive and (c < 0 or labels[j] != c)]
        counts = torch.bincount(idx[row, 1:], minlength=12).double()
        assert set(torch.nonzero(counts).flatten().tolist()) == set(allowed)  # every one, and only those
        expected = draws / len(allowed)  # uniform: each within 5 binomial standard deviations
        assert (counts[allowed] - expected).abs().max() < 5 * math.sqrt(expected)
    again = sample_negatives(
        index,
        12,
        draws,
        sample_labels=labels,
        anchor_labels=anchors,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.equal(idx, again)
    one_class = sample_negatives(  # the anchor's class holds every sample: the others, uniformly
        torch.tensor([3]),
        5,
        400,
        sample_labels=torch.zeros(5, dtype=torch.long),
        anchor_labels=torch.tensor([0]),
    )
    assert set(one_class[0, 1:].tolist()) == {0, 1, 2, 4}


@pytest.mark.parametrize("ratio", [0, 1000], ids=["gathered-rows", "full-product"])
def test_contrast_memory_scores_z_and_momentum_update(ratio: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crd_module, "FULL_SCORES_MAX_RATIO", ratio)  # both ways of computing the scores
    torch.manual_seed(0)
    mem = ContrastMemory(dim=3, num_samples=6, nce_k=2, temperature=0.5, momentum=0.25)
    assert mem.z_student.item() == -1.0 and mem.z_teacher.item() == -1.0
    bound = 1.0 / math.sqrt(3 / 3)
    assert (mem.memory_student.abs() <= bound).all()
    s = torch.nn.functional.normalize(torch.randn(2, 3), dim=1)
    t = torch.nn.functional.normalize(torch.randn(2, 3), dim=1)
    sample = torch.tensor([[1, 4, 5], [2, 0, 0]])
    mem_s, mem_t = mem.memory_student.clone().numpy(), mem.memory_teacher.clone().numpy()
    out_s, out_t = mem(s, t, sample)
    s_np, t_np, idx = s.numpy(), t.numpy(), sample.tolist()
    # by hand: exp(<anchor, row>/T) / Z, Z = N * mean of the first batch's scores
    raw_s = np.array(
        [[math.exp(float(np.dot(s_np[b], mem_t[idx[b][k]])) / 0.5) for k in range(3)] for b in range(2)]
    )
    raw_t = np.array(
        [[math.exp(float(np.dot(t_np[b], mem_s[idx[b][k]])) / 0.5) for k in range(3)] for b in range(2)]
    )
    z_s, z_t = 6 * raw_s.mean(), 6 * raw_t.mean()
    np.testing.assert_allclose(out_s.numpy(), raw_s / z_s, rtol=1e-5)
    np.testing.assert_allclose(out_t.numpy(), raw_t / z_t, rtol=1e-5)
    assert mem.z_student.item() == pytest.approx(z_s, rel=1e-5)
    assert mem.z_teacher.item() == pytest.approx(z_t, rel=1e-5)
    # Z stays fixed afterwards
    mem(t, s, sample)
    assert mem.z_student.item() == pytest.approx(z_s, rel=1e-5)
    # momentum update of the batch rows only, back to unit length
    mem.update(torch.tensor([1, 2]), s, t)
    for row, b in ((1, 0), (2, 1)):
        v = 0.25 * mem_s[row] + 0.75 * s[b].numpy()
        np.testing.assert_allclose(mem.memory_student[row].numpy(), v / np.linalg.norm(v), rtol=1e-5)
        v = 0.25 * mem_t[row] + 0.75 * t[b].numpy()
        np.testing.assert_allclose(mem.memory_teacher[row].numpy(), v / np.linalg.norm(v), rtol=1e-5)
    untouched = [0, 3, 4, 5]
    np.testing.assert_array_equal(mem.memory_student[untouched].numpy(), mem_s[untouched])


def test_both_ways_of_scoring_give_the_same_loss_and_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(3)
    mem = ContrastMemory(dim=16, num_samples=300, nce_k=64, temperature=0.07)
    s0 = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
    t0 = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
    sample = mem.sample(torch.arange(8) * 7)
    results = []
    for ratio in (0, 1000):  # 300 rows <= 8 x 65 columns: the full product by default
        monkeypatch.setattr(crd_module, "FULL_SCORES_MAX_RATIO", ratio)
        s, t = s0.clone().requires_grad_(), t0.clone().requires_grad_()
        loss = crd_loss(*mem.eval()(s, t, sample), mem.num_samples)
        loss.backward()
        results.append((loss.detach(), s.grad, t.grad))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_contrast_memory_update_averages_views_sharing_an_index() -> None:
    torch.manual_seed(0)
    mem = ContrastMemory(dim=3, num_samples=5, nce_k=2, momentum=0.5)
    old = mem.memory_student.clone().numpy()
    s = torch.nn.functional.normalize(torch.randn(4, 3), dim=1)
    index = torch.tensor([2, 4, 2, 2])  # sample 2 seen in three views
    mem.update(index, s, s)
    v = 0.5 * old[2] + 0.5 * (s[0] + s[2] + s[3]).numpy() / 3
    np.testing.assert_allclose(mem.memory_student[2].numpy(), v / np.linalg.norm(v), rtol=1e-5)
    v = 0.5 * old[4] + 0.5 * s[1].numpy()
    np.testing.assert_allclose(mem.memory_student[4].numpy(), v / np.linalg.norm(v), rtol=1e-5)
    np.testing.assert_array_equal(mem.memory_student[[0, 1, 3]].numpy(), old[[0, 1, 3]])


def test_contrast_memory_does_not_store_z_in_eval_mode() -> None:
    mem = ContrastMemory(dim=4, num_samples=8, nce_k=3).eval()
    v = torch.nn.functional.normalize(torch.randn(2, 4), dim=1)
    mem(v, v, torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]]))
    assert mem.z_student.item() == -1.0


# ----------------------------------------------------------------- distillers end to end
def _models() -> tuple[torch.nn.Module, torch.nn.Module]:
    return create_model("cnn", 10, 1), create_model("resnet8", 10, 1)


def _build(method: str, student_res: int = 28, options: dict | None = None, **kwargs):
    student, teacher = _models()
    opts = {"nce_k": 16} if method == "crd" else {}
    opts.update(options or {})
    return create_distiller(
        method,
        student,
        teacher,
        opts,
        student_input=torch.zeros(2, 1, student_res, student_res),
        teacher_input=torch.zeros(2, 1, 28, 28),
        num_samples=NUM_SAMPLES,
        **kwargs,
    )


def _batch(student_res: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 1, 28, 28, generator=g)
    small = torch.nn.functional.adaptive_avg_pool2d(x, student_res) if student_res != 28 else x
    return {
        "x": small,
        "target": torch.randint(0, 10, (4,), generator=g),
        "teacher_x": x,
        "index": torch.tensor([3, 7, 0, 21]),
    }


@pytest.mark.parametrize("student_res", [28, 14], ids=["same-res", "cross-res"])
@pytest.mark.parametrize("method", METHODS)
def test_distiller_forward_backward(method: str, student_res: int) -> None:
    torch.manual_seed(0)
    d = _build(method, student_res)
    batch = _batch(student_res)
    logits, losses = d(batch.pop("x"), batch.pop("target"), **batch)
    assert logits.shape == (4, 10)
    assert set(losses) == LOSS_NAMES[method]
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    # the method's own terms alone reach the student and the projectors, never the teacher
    sum(v for k, v in losses.items() if k != "ce").backward()
    student_grads = [p.grad for p in d.student.parameters() if p.grad is not None]
    assert student_grads and any(g.abs().sum() > 0 for g in student_grads)
    assert all(p.grad is None for p in d.teacher.parameters())
    for name in PROJECTORS.get(method, ()):
        params = list(getattr(d, name).parameters())
        assert params and all(p.grad is not None and p.grad.abs().sum() > 0 for p in params), name
        assert all(any(p is q for q in d.trainable_parameters()) for p in params)
    assert not any(any(p is q for q in d.teacher.parameters()) for p in d.trainable_parameters())


def test_default_options_are_the_crd_benchmark_ones() -> None:
    weights = {"fitnet": 100.0, "at": 1000.0, "pkt": 30000.0, "sp": 3000.0, "rkd": 1.0, "crd": 0.8}
    for method, weight in weights.items():
        cfg = method_config(method)
        assert (cfg.ce_weight, cfg.kd_weight) == (1.0, weight), method
        assert cfg.student_layers == [] and cfg.teacher_layers == []
    assert method_config("at").p == 2.0
    rkd = method_config("rkd")
    assert (rkd.distance_weight, rkd.angle_weight) == (25.0, 50.0)
    crd = method_config("crd")
    assert (crd.feat_dim, crd.nce_k, crd.nce_t, crd.nce_m) == (128, 16384, 0.07, 0.5)


def test_default_layers() -> None:
    student, teacher = _models()
    assert intermediate_stages(teacher) == ("layer1", "layer2", "layer3")  # no stem, no embedding
    assert intermediate_stages(student) == ("layer1", "layer2", "layer3")  # the plain cnn has no stem
    expected = {
        "fitnet": (("layer2",), ("layer2",)),
        "at": (("layer1", "layer2", "layer3"), ("layer1", "layer2", "layer3")),
        "pkt": (("pool",), ("pool",)),
        "sp": (("layer3",), ("layer3",)),
        "rkd": (("pool",), ("pool",)),
        "crd": (("pool",), ("pool",)),
    }
    for method, (s, t) in expected.items():
        d = _build(method)
        assert (d.student_layer_names, d.teacher_layer_names) == (s, t), method
    # one side given: the other side takes as many of its deepest intermediate stages
    d = _build("at", options={"student_layers": ["layer3"]})
    assert d.teacher_layer_names == ("layer3",)
    d = _build("fitnet", options={"student_layers": ["1"], "teacher_layers": ["stem"]})
    assert (d.student_layer_names, d.teacher_layer_names) == (("layer2",), ("stem",))


def test_layer_mismatches_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="at pairs layers one to one"):
        _build("at", options={"student_layers": ["layer1", "layer2"], "teacher_layers": ["layer3"]})
    with pytest.raises(ConfigError, match="feature maps"):
        _build("at", options={"student_layers": ["-1"], "teacher_layers": ["-1"]})
    with pytest.raises(ConfigError, match="both must be"):
        _build("fitnet", options={"student_layers": ["-1"], "teacher_layers": ["layer2"]})
    with pytest.raises(ConfigError, match="one student layer"):
        _build("crd", options={"student_layers": ["-1", "-2"]})
    with pytest.raises(ConfigError, match="num_samples"):
        student, teacher = _models()
        create_distiller("crd", student, teacher, student_input=torch.zeros(2, 1, 28, 28))
    with pytest.raises(ConfigError, match="invalid value"):
        method_config("crd", {"negatives": "hard"})


def test_fitnet_on_embeddings_uses_a_linear_regressor() -> None:
    d = _build("fitnet", options={"student_layers": ["-1"], "teacher_layers": ["-1"]})
    assert isinstance(d.regressors[0].net[0], torch.nn.Linear)
    batch = _batch(28)
    _, losses = d(batch.pop("x"), batch.pop("target"), **batch)
    assert torch.isfinite(losses["fitnet"])


def test_crd_memory_updates_in_training_only() -> None:
    torch.manual_seed(0)
    d = _build("crd")
    before = d.memory.memory_student.clone()
    batch = _batch(28)
    index = batch["index"]
    d(batch.pop("x"), batch.pop("target"), **batch)
    after = d.memory.memory_student
    changed = (after != before).any(dim=1)
    assert changed[index].all() and changed.sum() == len(index)
    assert torch.allclose(after[index].norm(dim=1), torch.ones(len(index)))
    assert d.memory.z_student.item() > 0 and d.memory.z_teacher.item() > 0
    d.eval()
    snapshot = d.memory.memory_teacher.clone()
    batch = _batch(28, seed=1)
    d(batch.pop("x"), batch.pop("target"), **batch)
    assert torch.equal(snapshot, d.memory.memory_teacher)
    with pytest.raises(ConfigError, match="index"):
        batch = _batch(28)
        d(batch["x"], batch["target"], teacher_x=batch["teacher_x"])


@pytest.mark.parametrize("negatives", ["uniform", "other_class"])
def test_crd_is_deterministic_for_a_seed(negatives: str) -> None:
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        d = _build("crd", options={"negatives": negatives})
        out = []
        for step in range(2):
            batch = _batch(28, seed=step)
            _, losses = d(batch.pop("x"), batch.pop("target"), **batch)
            out.append(losses["crd"].item())
        runs.append((out, d.memory.memory_student.clone(), d.memory.memory_teacher.clone()))
    assert runs[0][0] == runs[1][0]
    assert torch.equal(runs[0][1], runs[1][1]) and torch.equal(runs[0][2], runs[1][2])
    # another seed draws other negatives (and initialises other embeddings): another loss
    torch.manual_seed(4)
    d = _build("crd", options={"negatives": negatives})
    batch = _batch(28)
    _, losses = d(batch.pop("x"), batch.pop("target"), **batch)
    assert losses["crd"].item() != runs[0][0][0]


def test_crd_other_class_records_labels() -> None:
    d = _build("crd", options={"negatives": "other_class"})
    batch = _batch(28)
    target, index = batch["target"], batch["index"]
    d(batch.pop("x"), batch.pop("target"), **batch)
    assert torch.equal(d.memory.labels[index], target)
    assert (d.memory.labels[[i for i in range(NUM_SAMPLES) if i not in index.tolist()]] == -1).all()


def test_crd_runs_under_bf16_autocast() -> None:
    d = _build("crd")
    batch = _batch(28)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, losses = d(batch.pop("x"), batch.pop("target"), **batch)
    assert losses["crd"].dtype == torch.float32 and torch.isfinite(losses["crd"])


def test_losses_accept_bf16_student_features(rng: np.random.Generator) -> None:
    s = _t(rng.normal(size=(4, 3, 2, 2))).bfloat16()
    t = _t(rng.normal(size=(4, 5, 2, 2)))
    for value in (
        at_loss([s], [t]),
        sp_loss(s, t),
        pkt_loss(s.flatten(1), t.flatten(1)),
        rkd_loss(s.flatten(1), t.flatten(1)),
        fitnet_loss(s, t[:, :3]),
    ):
        assert value.dtype == torch.float32 and torch.isfinite(value)


@pytest.mark.parametrize("method", ["fitnet", "crd"])
def test_extra_state_round_trips(method: str) -> None:
    torch.manual_seed(0)
    d = _build(method)
    batch = _batch(28)
    d(batch.pop("x"), batch.pop("target"), **batch)  # moves batch-norm statistics / the memory and Z
    state = {k: v.clone() for k, v in d.extra_state().items()}
    assert state and not any(k.startswith(("student.", "teacher.")) for k in state)
    if method == "crd":
        assert {"memory.memory_student", "memory.memory_teacher", "memory.z_student"} <= set(state)
    torch.manual_seed(1)
    fresh = _build(method)
    assert any(not torch.equal(state[k], v) for k, v in fresh.extra_state().items())
    fresh.load_extra_state(state)
    for k, v in fresh.extra_state().items():
        assert torch.equal(state[k], v), k
    with pytest.raises(ConfigError, match="does not match"):
        fresh.load_extra_state({k: v for k, v in state.items() if k != next(iter(state))})


def test_crd_with_known_sample_labels_draws_only_other_class_negatives() -> None:
    from calikd.models import create_model

    torch.manual_seed(0)
    labels = torch.arange(40) % 4
    distiller = create_distiller(
        "crd",
        create_model("cnn", 4, 1, width=4),
        create_model("resnet8", 4, 1),
        {"nce_k": 24, "feat_dim": 8},
        student_input=torch.zeros(2, 1, 28, 28),
        num_samples=40,
        sample_labels=labels,
    )
    assert distiller.config.negatives == "other_class"
    index = torch.tensor([0, 5, 10, 15])
    drawn = distiller.memory.sample(index, anchor_labels=labels[index])
    assert torch.equal(drawn[:, 0], index)
    assert not (labels[drawn[:, 1:]] == labels[index][:, None]).any()
    distiller.train()
    _, losses = distiller(torch.randn(4, 1, 28, 28), labels[index], index=index)
    assert torch.isfinite(losses["crd"])
    with pytest.raises(ConfigError, match="sample_labels has 3 entries"):
        create_distiller(
            "crd",
            create_model("cnn", 4, 1, width=4),
            create_model("resnet8", 4, 1),
            student_input=torch.zeros(2, 1, 28, 28),
            num_samples=40,
            sample_labels=labels[:3],
        )
