"""Feature methods of issue 19 (CC, NST, AB, VID, KD++, OFD, FT, ReviewKD, CAT-KD): values and steps.

Each loss is checked against a NumPy re-derivation from the paper's / the authors' equations (explicit loops,
no call into calikd), for its invariances, and each distiller on two model pairs (a CNN from a ResNet and a
ResNet from a WRN, or an MLP where the method works on embeddings), with hard and mixed (CutMix-like) targets.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from calikd.distill import create_distiller, method_config
from calikd.distill.methods.ab import ab_loss, ab_stage_loss
from calikd.distill.methods.catkd import cat_loss, class_activation_maps
from calikd.distill.methods.cc import cc_gaussian_loss, cc_repdistiller_loss, gaussian_correlation
from calikd.distill.methods.ft import factor, ft_loss
from calikd.distill.methods.kdpp import nd_loss
from calikd.distill.methods.nst import nst_loss
from calikd.distill.methods.ofd import ofd_loss, ofd_margin, ofd_stage_loss
from calikd.distill.methods.reviewkd import ABF, hcl_loss
from calikd.distill.methods.vid import vid_loss
from calikd.errors import ConfigError
from calikd.models import create_model

NUM_CLASSES = 6

# method -> (loss names, trainable parts, options for a fast test, model pairs it applies to)
SPECS: dict[str, dict] = {
    "cc": {
        "losses": {"ce", "cc"},
        "parts": ("embed_student", "embed_teacher"),
        "pairs": ("cnn", "wrn", "mlp"),
    },
    "nst": {"losses": {"ce", "nst"}, "parts": (), "pairs": ("cnn", "wrn")},
    "ab": {
        "losses": {"ab"},  # the initialisation phase: AB alone
        "parts": ("connectors",),
        "options": {"init_epochs": 1},
        "pairs": ("cnn", "wrn"),
    },
    "vid": {"losses": {"ce", "vid"}, "parts": ("regressors",), "pairs": ("cnn", "wrn")},
    "kdpp": {"losses": {"ce", "kd", "nd"}, "parts": ("projector",), "pairs": ("cnn", "wrn", "mlp")},
    "ofd": {"losses": {"ce", "ofd"}, "parts": ("connectors",), "pairs": ("cnn", "wrn")},
    "ft": {  # after the paraphraser's training
        "losses": {"ce", "ft"},
        "parts": ("translator",),
        "options": {"init_epochs": 0},
        "pairs": ("cnn", "wrn"),
    },
    "reviewkd": {"losses": {"ce", "reviewkd"}, "parts": ("abfs",), "pairs": ("cnn", "wrn", "mlp")},
    "catkd": {"losses": {"ce", "cat"}, "parts": (), "pairs": ("cnn", "wrn")},
}
PAIRS = {  # name -> (student, teacher, input shape)
    "cnn": (("cnn", {"width": 4}), ("resnet8", {}), (1, 16, 16)),
    "wrn": (("resnet8", {}), ("wrn_10_2", {}), (3, 16, 16)),
    "mlp": (("mlp", {"width": 16, "input_size": 8}), ("resnet8", {}), (1, 16, 16)),
}
CASES = [(m, p) for m, spec in SPECS.items() for p in spec["pairs"]]


def _t(array: np.ndarray) -> torch.Tensor:
    return torch.tensor(array, dtype=torch.float32)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _build(method: str, pair: str = "cnn", options: dict | None = None, seed: int = 0):
    (s_name, s_kw), (t_name, t_kw), shape = PAIRS[pair]
    torch.manual_seed(seed)
    student = create_model(s_name, NUM_CLASSES, shape[0], **s_kw)
    teacher = create_model(t_name, NUM_CLASSES, shape[0], **t_kw)
    opts = dict(SPECS[method].get("options", {}))
    opts.update(options or {})
    return create_distiller(method, student, teacher, opts, student_input=torch.zeros(2, *shape))


def _batch(pair: str, seed: int = 0, mixed: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(6, *PAIRS[pair][2], generator=g)
    labels = torch.randint(0, NUM_CLASSES, (6,), generator=g)
    if not mixed:
        return x, labels
    lam = 0.7  # a CutMix/mixup target: lam * one_hot(y) + (1 - lam) * one_hot(y[perm])
    onehot = torch.nn.functional.one_hot(labels, NUM_CLASSES).float()
    return x, lam * onehot + (1 - lam) * onehot.roll(1, 0)


# ----------------------------------------------------------------- CC
def _np_gaussian_corr(x: np.ndarray, gamma: float, order: int) -> np.ndarray:
    b = x.shape[0]
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    out = np.zeros((b, b))
    for i in range(b):
        for j in range(b):
            dot = float(np.dot(x[i], x[j]))
            out[i, j] = math.exp(-2 * gamma) * sum(
                (2 * gamma * dot) ** p / math.factorial(p) for p in range(order + 1)
            )
    return out


def test_cc_repdistiller_form_matches_loops(rng: np.random.Generator) -> None:
    s, t = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    total = 0.0
    for i in range(4):
        total += sum(abs(s[i, d] - t[i, d]) * abs(s[i + 1, d] - t[i + 1, d]) for d in range(4))
    assert cc_repdistiller_loss(_t(s), _t(t)).item() == pytest.approx(total / 4, rel=1e-5)
    # by hand: rows differ by (1, 0) then (2, 3): 1*2 + 0*3 = 2
    assert cc_repdistiller_loss(_t(np.array([[1.0, 0.0], [2.0, 3.0]])), torch.zeros(2, 2)).item() == 2.0
    # invariances: symmetric in (s, t), a shift of both changes nothing, one sample contributes 0
    assert cc_repdistiller_loss(_t(t), _t(s)).item() == pytest.approx(total / 4, rel=1e-5)
    shift = rng.normal(size=(1, 4))
    assert cc_repdistiller_loss(_t(s + shift), _t(t + shift)).item() == pytest.approx(total / 4, rel=1e-4)
    assert cc_repdistiller_loss(_t(s[:1]), _t(t[:1])).item() == 0.0


def test_cc_gaussian_form_matches_the_papers_kernel(rng: np.random.Generator) -> None:
    s, t = rng.normal(size=(4, 3)), rng.normal(size=(4, 6))
    c_s, c_t = _np_gaussian_corr(s, 0.4, 2), _np_gaussian_corr(t, 0.4, 2)
    np.testing.assert_allclose(gaussian_correlation(_t(s)).numpy(), c_s, rtol=1e-5)
    expected = ((c_t - c_s) ** 2).sum() / 16
    assert cc_gaussian_loss(_t(s), _t(t)).item() == pytest.approx(expected, rel=1e-5)
    # a long Taylor series converges to the RBF kernel exp(-gamma ||x_i - x_j||^2) of the normalised rows
    x = s / np.linalg.norm(s, axis=1, keepdims=True)
    rbf = np.exp(-0.4 * ((x[:, None] - x[None]) ** 2).sum(-1))
    np.testing.assert_allclose(gaussian_correlation(_t(s), 0.4, 12).numpy(), rbf, rtol=1e-5)
    # invariances: rescaling or rotating one side's embeddings, and permuting the batch on both sides
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    assert cc_gaussian_loss(_t(3.0 * s @ q), _t(t)).item() == pytest.approx(expected, rel=1e-4)
    perm = rng.permutation(4)
    assert cc_gaussian_loss(_t(s[perm]), _t(t[perm])).item() == pytest.approx(expected, rel=1e-4)
    assert cc_gaussian_loss(_t(s), _t(s)).item() == 0.0


def test_cc_defaults_are_the_crd_benchmarks() -> None:
    cfg = method_config("cc")
    assert (cfg.ce_weight, cfg.kd_weight, cfg.feat_dim, cfg.kernel) == (1.0, 0.02, 128, "repdistiller")
    d = _build("cc", options={"feat_dim": 7})
    assert d.embed_student.linear.weight.shape == (7, 16)  # cnn width 4: 16 channels in its last stage
    assert d.embed_teacher.linear.weight.shape == (7, 64)  # resnet8: 64
    with pytest.raises(ConfigError, match="one student layer"):
        _build("cc", options={"student_layers": ["-1", "-2"]})


# ----------------------------------------------------------------- NST
def _np_mmd2(s: np.ndarray, t: np.ndarray, degree: int = 2, c: float = 0.0) -> float:
    """Per-sample squared MMD of the L2-normalised channels, averaged over the batch (explicit loops)."""
    total = 0.0
    for b in range(s.shape[0]):
        xs = [v / np.linalg.norm(v) for v in s[b].reshape(s.shape[1], -1)]
        xt = [v / np.linalg.norm(v) for v in t[b].reshape(t.shape[1], -1)]

        def k_mean(a: list, bb: list) -> float:
            return float(np.mean([(np.dot(u, v) + c) ** degree for u in a for v in bb]))

        total += k_mean(xt, xt) + k_mean(xs, xs) - 2 * k_mean(xs, xt)
    return total / s.shape[0]


def test_nst_loss_is_the_squared_mmd(rng: np.random.Generator) -> None:
    s, t = rng.normal(size=(2, 3, 2, 2)), rng.normal(size=(2, 5, 2, 2))
    assert nst_loss(_t(s), _t(t)).item() == pytest.approx(_np_mmd2(s, t), rel=1e-5)
    assert nst_loss(_t(s), _t(t), degree=3, offset=0.5).item() == pytest.approx(
        _np_mmd2(s, t, 3, 0.5), rel=1e-5
    )
    # by hand: one channel each, orthogonal unit patterns: k(t,t) = k(s,s) = 1, k(s,t) = 0 -> MMD^2 = 2
    s1, t1 = np.array([[[[1.0, 0.0]]]]), np.array([[[[0.0, 3.0]]]])
    assert nst_loss(_t(s1), _t(t1)).item() == pytest.approx(2.0)
    # invariances: channel scale and order, the student equal to the teacher gives 0
    scale = rng.uniform(0.5, 2.0, size=(1, 3, 1, 1))
    assert nst_loss(_t(s * scale), _t(t)).item() == pytest.approx(_np_mmd2(s, t), rel=1e-5)
    assert nst_loss(_t(s[:, ::-1].copy()), _t(t)).item() == pytest.approx(_np_mmd2(s, t), rel=1e-5)
    assert nst_loss(_t(t), _t(t)).item() == pytest.approx(0.0, abs=1e-6)
    # a larger map is average-pooled to the smaller size first
    big = rng.normal(size=(2, 3, 4, 4))
    pooled = big.reshape(2, 3, 2, 2, 2, 2).mean(axis=(3, 5))
    assert nst_loss(_t(big), _t(t)).item() == pytest.approx(_np_mmd2(pooled, t), rel=1e-5)
    assert method_config("nst").kd_weight == 50.0


# ----------------------------------------------------------------- AB
def test_ab_stage_loss_matches_the_papers_cases() -> None:
    # elements (s, t) with margin 1: t <= 0 penalises s > -1 by (s + 1)^2; t > 0 penalises s <= 1 by (s - 1)^2
    s = torch.tensor([[0.5, -2.0, 0.0, 3.0, -0.5, 1.0]])
    t = torch.tensor([[-1.0, -1.0, 0.0, 2.0, 0.5, 1.0]])
    by_hand = 1.5**2 + 0.0 + 1.0**2 + 0.0 + 1.5**2 + 0.0
    assert ab_stage_loss(s, t).item() == pytest.approx(by_hand)
    assert ab_stage_loss(s, t, margin=0.5).item() == pytest.approx(1.0**2 + 0.5**2 + 1.0**2)
    # per sample: two copies of the batch give the same value; a student beyond the margins gives 0
    assert ab_stage_loss(s.repeat(2, 1), t.repeat(2, 1)).item() == pytest.approx(by_hand)
    assert ab_stage_loss(torch.where(t > 0, 2.0, -2.0), t).item() == 0.0


def test_ab_loss_weights_the_stages(rng: np.random.Generator) -> None:
    feats = [(rng.normal(size=(2, 3, 2, 2)), rng.normal(size=(2, 3, 2, 2))) for _ in range(3)]
    per_stage = []
    for s, t in feats:
        total = 0.0
        for idx in np.ndindex(*s.shape):
            if t[idx] <= 0 and s[idx] > -1:
                total += (s[idx] + 1) ** 2
            elif t[idx] > 0 and s[idx] <= 1:
                total += (s[idx] - 1) ** 2
        per_stage.append(total / 2)
    expected = 3 / 1000 * (per_stage[0] / 4 + per_stage[1] / 2 + per_stage[2])
    got = ab_loss([_t(s) for s, _ in feats], [_t(t) for _, t in feats])
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_ab_phases_and_preact_taps() -> None:
    d = _build("ab", options={"init_epochs": 2})
    assert d.student_layer_names == ("layer1.norm1", "layer2.norm1", "layer3.norm1")
    assert d.teacher_layer_names == ("layer1.0.preact", "layer2.0.preact", "layer3.0.preact")
    x, y = _batch("cnn")
    for epoch, keys in ((1, {"ab"}), (2, {"ab"}), (3, {"ce"})):
        d.set_epoch(epoch, 10)
        assert set(d(x, y)[1]) == keys, epoch
    twins = create_model("resnet8", NUM_CLASSES, 1), create_model("resnet8", NUM_CLASSES, 1)
    same = create_distiller("ab", *twins, student_input=torch.zeros(2, 1, 16, 16))
    assert all(c.net is None for c in same.connectors)  # equal shapes: identity (RepDistiller's Connector)
    d = _build("ab", options={"after_init_weight": 0.5})
    d.set_epoch(8, 8)
    assert set(d(x, y)[1]) == {"ce", "ab"}
    d.set_epoch(1, 8)  # default: epochs / 8
    assert set(d(x, y)[1]) == {"ab"}
    d.set_epoch(2, 8)
    assert set(d(x, y)[1]) == {"ce", "ab"}
    cfg = method_config("ab")
    assert (cfg.ce_weight, cfg.kd_weight, cfg.margin, cfg.after_init_weight) == (1.0, 1.0, 1.0, 0.0)


# ----------------------------------------------------------------- VID
def test_vid_loss_is_the_gaussian_nll(rng: np.random.Generator) -> None:
    mu, t = rng.normal(size=(2, 3, 2, 2)), rng.normal(size=(2, 3, 2, 2))
    alpha = rng.normal(size=3)
    var = np.log1p(np.exp(alpha)) + 1e-5
    total = 0.0
    for b, c, h, w in np.ndindex(*mu.shape):
        total += 0.5 * ((t[b, c, h, w] - mu[b, c, h, w]) ** 2 / var[c] + math.log(var[c]))
    assert vid_loss(_t(mu), _t(t), _t(alpha)).item() == pytest.approx(total / mu.size, rel=1e-5)
    # by hand: a perfect mean leaves 1/2 log(var); var = 1 (softplus^-1(1) = log(e - 1)) then gives 0
    one = torch.full((3,), math.log(math.e - 1))
    assert vid_loss(_t(t), _t(t), one, eps=0.0).item() == pytest.approx(0.0, abs=1e-6)
    # for a fixed error, the variance minimising the NLL is the mean squared error of the channel
    err = torch.tensor([[[[2.0]]]])
    grid = [
        vid_loss(err, torch.zeros(1, 1, 1, 1), torch.tensor([math.log(math.expm1(v))]), 0.0).item()
        for v in (3.0, 4.0, 5.0)
    ]
    assert grid[1] < grid[0] and grid[1] < grid[2]


def test_vid_parts_and_defaults() -> None:
    d = _build("vid")
    r = d.regressors[0]
    assert torch.allclose(torch.nn.functional.softplus(r.log_scale) + 1e-5, torch.full_like(r.log_scale, 5.0))
    t_channels = d.teacher_feature_shapes[d.teacher_layer_names[0]][0]
    assert r.mean[0].out_channels == t_channels == r.mean[4].out_channels  # hidden width = teacher's channels
    assert all(m.bias is None for m in r.mean if isinstance(m, torch.nn.Conv2d))
    cfg = method_config("vid")
    assert (cfg.ce_weight, cfg.kd_weight, cfg.init_var, cfg.eps) == (1.0, 1.0, 5.0, 1e-5)


# ----------------------------------------------------------------- KD++
def test_nd_loss_matches_the_papers_equation(rng: np.random.Generator) -> None:
    s, t, c = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), rng.normal(size=(5, 3))
    y = np.array([0, 3, 3, 1])
    total = 0.0
    for i in range(4):
        e = c[y[i]] / np.linalg.norm(c[y[i]])
        total += 1 - np.dot(s[i], e) / max(np.linalg.norm(s[i]), np.linalg.norm(t[i]))
    got = nd_loss(_t(s), _t(t), _t(c), torch.tensor(y))
    assert got.item() == pytest.approx(total / 4, rel=1e-5)
    # by hand: s = (3, 4), t = (0, 10), centre along x: 1 - 3 / 10
    one = nd_loss(
        torch.tensor([[3.0, 4.0]]), torch.tensor([[0.0, 10.0]]), torch.tensor([[2.0, 0.0]]), torch.tensor([0])
    )
    assert one.item() == pytest.approx(0.7)
    # invariances: the centre's length does not matter; a class without a centre contributes 1
    assert nd_loss(_t(s), _t(t), _t(7.0 * c), torch.tensor(y)).item() == pytest.approx(total / 4, rel=1e-5)
    assert nd_loss(_t(s), _t(t), torch.zeros(5, 3), torch.tensor(y)).item() == pytest.approx(1.0)


def test_kdpp_class_centres_are_running_teacher_means() -> None:
    d = _build("kdpp", "mlp")
    assert isinstance(d.projector, torch.nn.Sequential)  # 16 -> 64: BN, dropout, linear
    x, y = _batch("mlp")
    with torch.no_grad():
        d(x, y)
        t_emb = d._teacher_hooks.features["pool"]
    for k in range(NUM_CLASSES):
        if (y == k).any():
            torch.testing.assert_close(d.centers()[k], t_emb[y == k].mean(0))
        else:
            assert d.centers()[k].abs().sum() == 0
    # a mixed target weights the classes; centres freeze after center_epochs
    d2 = _build("kdpp", "mlp")
    _, mixed = _batch("mlp", mixed=True)
    with torch.no_grad():
        d2(x, mixed)
        d2.set_epoch(2, 10)
        frozen = d2.centers().clone()
        d2(x * 2, y)
    w = mixed.double()
    expected = (w.t() @ t_emb.double()) / w.sum(0).clamp_min(1e-12)[:, None]
    torch.testing.assert_close(frozen, expected.float())
    assert torch.equal(d2.centers(), frozen)
    cfg = method_config("kdpp")
    assert (cfg.ce_weight, cfg.kd_weight, cfg.nd_weight, cfg.tau) == (1.0, 1.0, 2.0, 4.0)
    assert d.warmup_epochs() == pytest.approx(1 / 12)


# ----------------------------------------------------------------- OFD
def _np_negative_mean(mu: float, sigma: float) -> float:
    """E[x | x < 0] for x ~ N(mu, sigma^2) by numerical integration."""
    x = np.linspace(mu - 40 * sigma, 0.0, 400001)
    density = np.exp(-0.5 * ((x - mu) / sigma) ** 2)
    return float(np.trapezoid(x * density, x) / np.trapezoid(density, x))


def test_ofd_margin_is_the_mean_of_negative_responses() -> None:
    mu, sigma = torch.tensor([0.0, 1.0, -2.0, 0.5]), torch.tensor([1.0, 2.0, 0.5, -0.3])
    got = ofd_margin(mu, sigma)
    for k in range(4):
        assert got[k].item() == pytest.approx(_np_negative_mean(mu[k].item(), abs(sigma[k].item())), rel=1e-4)
    assert got[0].item() == pytest.approx(-math.sqrt(2 / math.pi), rel=1e-6)  # half-normal mean
    # almost never negative (P < 0.001): -3 sigma
    assert ofd_margin(torch.tensor([5.0]), torch.tensor([1.0])).item() == pytest.approx(-3.0)


def test_ofd_partial_l2_matches_the_original_formulation(rng: np.random.Generator) -> None:
    s, t = rng.normal(size=(2, 3, 2, 2)), rng.normal(size=(2, 3, 2, 2))
    m = np.array([-0.3, -0.8, -0.1])
    total = 0.0  # the OFD paper's code: target = max(t, m); (s - target)^2 where s > target or target > 0
    for b, c, h, w in np.ndindex(*s.shape):
        target = max(t[b, c, h, w], m[c])
        if s[b, c, h, w] > target or target > 0:
            total += (s[b, c, h, w] - target) ** 2
    assert ofd_stage_loss(_t(s), _t(t), _t(m)).item() == pytest.approx(total / 2, rel=1e-5)
    # by hand, margin -1: t <= m and s below it: 0; t <= m, s = 0: (0 + 1)^2; t > 0: plain L2
    s1, t1 = (
        torch.tensor([[[-2.0, 0.0, 1.0]]]).transpose(1, 2),
        torch.tensor([[[-3.0, -3.0, 3.0]]]).transpose(1, 2),
    )
    assert ofd_stage_loss(s1[..., None], t1[..., None], torch.full((3,), -1.0)).item() == pytest.approx(5.0)
    two = [(_t(s), _t(t)), (_t(t), _t(s))]
    expected = ofd_stage_loss(_t(s), _t(t), _t(m)).item() / 2 + ofd_stage_loss(_t(t), _t(s), _t(m)).item()
    assert ofd_loss([a for a, _ in two], [b for _, b in two], [_t(m), _t(m)]).item() == pytest.approx(
        expected
    )


def test_ofd_margins_from_batch_norm_or_the_first_batch() -> None:
    d = _build("ofd", "wrn")  # wrn taps batch norms: the authors' rule, ready at once
    bn = dict(d.teacher.named_modules())[d.teacher_layer_names[-1]]
    assert bool(d.margins_ready)
    torch.testing.assert_close(d.margins()[-1], ofd_margin(bn.bias, bn.weight))
    d = _build("ofd", "cnn")  # resnet taps residual sums: estimated on the first batch
    assert d.teacher_layer_names == ("layer1.0.preact", "layer2.0.preact", "layer3.0.preact")
    assert not bool(d.margins_ready)
    x, y = _batch("cnn")
    d(x, y)
    t = d._teacher_hooks.features["layer3.0.preact"].transpose(0, 1).flatten(1)
    torch.testing.assert_close(d.margins()[-1], ofd_margin(t.mean(1), t.std(1)))
    before = [m.clone() for m in d.margins()]
    d(x * 3, y)
    assert all(torch.equal(a, b) for a, b in zip(before, d.margins(), strict=True))
    assert all((m < 0).all() for m in d.margins())
    assert (method_config("ofd").ce_weight, method_config("ofd").kd_weight) == (1.0, 0.001)


# ----------------------------------------------------------------- FT
def test_ft_loss_is_the_l1_distance_of_normalised_factors(rng: np.random.Generator) -> None:
    s, t = rng.normal(size=(2, 3, 2, 2)), rng.normal(size=(2, 3, 2, 2))
    paper, repdistiller = 0.0, 0.0
    for b in range(2):
        fs, ft = s[b].ravel() / np.linalg.norm(s[b]), t[b].ravel() / np.linalg.norm(t[b])
        paper += np.abs(fs - ft).sum() / fs.size
        a_s, a_t = (s[b] ** 2).mean(0).ravel(), (t[b] ** 2).mean(0).ravel()  # channel means of squares
        repdistiller += np.abs(a_s / np.linalg.norm(a_s) - a_t / np.linalg.norm(a_t)).sum() / a_s.size
    assert ft_loss(_t(s), _t(t), "paper").item() == pytest.approx(paper / 2, rel=1e-5)
    assert ft_loss(_t(s), _t(t)).item() == pytest.approx(repdistiller / 2, rel=1e-5)
    # invariances: a positive scale per sample (both forms), the sign of the factor (RepDistiller's squares)
    scale = rng.uniform(0.5, 3.0, size=(2, 1, 1, 1))
    assert ft_loss(_t(s * scale), _t(t), "paper").item() == pytest.approx(paper / 2, rel=1e-5)
    assert ft_loss(_t(-s * scale), _t(t)).item() == pytest.approx(repdistiller / 2, rel=1e-5)
    # by hand: orthogonal unit factors differ by 1 + 1 over 2 entries
    one, other = torch.tensor([[[[1.0, 0.0]]]]), torch.tensor([[[[0.0, 5.0]]]])
    assert ft_loss(one, other, "paper").item() == pytest.approx(1.0)
    torch.testing.assert_close(factor(_t(s)).norm(dim=1), torch.ones(2))
    with pytest.raises(ConfigError, match="factor form"):
        factor(_t(s), "other")


def test_ft_paraphraser_phase_then_factor_phase() -> None:
    d = _build("ft", "wrn", options={"init_epochs": 1})
    assert d.student_layer_names == ("layer3",) and d.teacher_layer_names == ("layer3",)
    assert d.paraphraser.encoder[-2].out_channels == 64  # wrn_10_2: 128 channels, rate 0.5
    x, y = _batch("wrn")
    _, losses = d(x, y)
    assert set(losses) == {"ce", "ft_rec"}
    losses["ft_rec"].backward()
    assert all(p.grad is not None for p in d.paraphraser.parameters())
    assert all(p.grad is None for p in (*d.translator.parameters(), *d.student.parameters()))
    d.set_epoch(2, 10)
    _, losses = d(x, y)
    assert set(losses) == {"ce", "ft"}
    d.zero_grad(set_to_none=True)
    losses["ft"].backward()
    assert all(p.grad is None for p in d.paraphraser.parameters())  # frozen after its training
    assert all(p.grad is not None for p in d.translator.parameters())
    cfg = method_config("ft")
    assert (cfg.ce_weight, cfg.kd_weight, cfg.rate, cfg.factor_form) == (1.0, 200.0, 0.5, "repdistiller")
    assert cfg.paraphraser_lr == 0.01  # RepDistiller helper/pretrain.py, ResNet/WRN students
    with pytest.raises(ConfigError, match="rate"):
        method_config("ft", {"rate": 0.0})
    with pytest.raises(ConfigError, match="paraphraser_lr"):
        method_config("ft", {"paraphraser_lr": 0.0})


def test_ft_paraphraser_trains_at_its_own_learning_rate_under_the_schedule() -> None:
    from calikd.distill.methods.ft import FT
    from calikd.engine.config import TrainingConfig, build_optimization

    d = _build("ft", "wrn", options={"paraphraser_lr": 0.02})
    config = TrainingConfig(lr=0.1, epochs=2, schedule="cosine", warmup_epochs=1)
    optimizer, scheduler = build_optimization(d, config, 4, part_lrs=d.part_learning_rates())
    paraphraser = {id(p) for p in d.paraphraser.parameters()}
    groups = [g for g in optimizer.param_groups if g["params"]]
    own = [g for g in groups if any(id(p) in paraphraser for p in g["params"])]
    assert own and all({id(p) for p in g["params"]} <= paraphraser for g in own)
    assert sum(len(g["params"]) for g in own) == len(paraphraser)
    assert sum(len(g["params"]) for g in groups) == len(d.trainable_parameters())
    for _ in range(2):  # half-way through the warm-up, both rates scale alike
        optimizer.step()
        scheduler.step()
    main_lr, own_lr = optimizer.param_groups[0]["lr"], own[0]["lr"]
    assert 0 < main_lr < 0.1 and main_lr / own_lr == pytest.approx(5.0)
    assert {g["lr"] for g in own} == {own_lr}
    assert {g["weight_decay"] for g in own} == {config.weight_decay, 0.0}
    assert FT.pair_defaults[("vgg13", "vgg8")] == {"paraphraser_lr": 0.05}


# ----------------------------------------------------------------- ReviewKD
def _np_pool(x: np.ndarray, size: int) -> np.ndarray:
    b, c, h, w = x.shape
    return x.reshape(b, c, size, h // size, size, w // size).mean(axis=(3, 5))


def test_hcl_loss_matches_the_pyramid(rng: np.random.Generator) -> None:
    s8, t8 = rng.normal(size=(2, 3, 8, 8)), rng.normal(size=(2, 3, 8, 8))
    s4, t4 = rng.normal(size=(2, 3, 4, 4)), rng.normal(size=(2, 3, 4, 4))
    sv, tv = rng.normal(size=(2, 5)), rng.normal(size=(2, 5))

    def mse(a: np.ndarray, b: np.ndarray) -> float:
        return float(((a - b) ** 2).mean())

    level8 = (
        mse(s8, t8)
        + mse(_np_pool(s8, 4), _np_pool(t8, 4)) / 2
        + mse(_np_pool(s8, 2), _np_pool(t8, 2)) / 4
        + mse(_np_pool(s8, 1), _np_pool(t8, 1)) / 8
    ) / 1.875
    level4 = (
        mse(s4, t4) + mse(_np_pool(s4, 2), _np_pool(t4, 2)) / 2 + mse(_np_pool(s4, 1), _np_pool(t4, 1)) / 4
    ) / 1.75
    expected = level8 + level4 + mse(sv, tv)
    got = hcl_loss([_t(s8), _t(s4), _t(sv)], [_t(t8), _t(t4), _t(tv)])
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # a difference constant over space costs the same at every pyramid level: HCL = plain MSE
    shift = rng.normal(size=(2, 3, 1, 1))
    assert hcl_loss([_t(t8 + shift)], [_t(t8)]).item() == pytest.approx(float((shift**2).mean()), rel=1e-5)


def test_abf_fuses_with_attention_and_resizes() -> None:
    abf = ABF(4, 6, 5, fuse=True).eval()
    torch.nn.init.zeros_(abf.attention[0].weight)
    torch.nn.init.zeros_(abf.attention[0].bias)  # sigmoid(0) = 1/2: the mean of the two inputs
    x, residual = torch.randn(2, 4, 4, 4), torch.randn(2, 6, 2, 2)
    out, fused = abf(x, residual, (8, 8))
    assert out.shape == (2, 5, 8, 8) and fused.shape == (2, 6, 8, 8)
    up = residual.repeat_interleave(2, 2).repeat_interleave(2, 3)
    expected = (abf.reduce(x) + up) / 2
    torch.testing.assert_close(fused, expected.repeat_interleave(2, 2).repeat_interleave(2, 3))
    torch.testing.assert_close(out, abf.out(fused))


def test_reviewkd_levels_and_defaults() -> None:
    d = _build("reviewkd")
    assert d.student_layer_names == ("layer1", "layer2", "layer3", "pool")
    assert d.teacher_layer_names == ("layer1.0.preact", "layer2.0.preact", "layer3.0.preact", "pool")
    assert d.abfs[-1].attention is None and all(a.attention is not None for a in d.abfs[:-1])
    assert d.abfs[0].reduce[0].out_channels == 16  # min(512, cnn width 4's 16-d embedding)
    assert [tuple(s) for s in d.out_sizes] == [(16, 16), (8, 8), (4, 4), (1, 1)]
    cfg = method_config("reviewkd")
    assert (cfg.ce_weight, cfg.kd_weight, cfg.max_mid_channels) == (1.0, 5.0, 512)
    d.set_epoch(1, 24)  # warm-up: 2 of 24 epochs -> half weight in epoch 1
    x, y = _batch("cnn")
    half = d(x, y)[1]["reviewkd"].item()
    d.set_epoch(2, 24)
    assert d(x, y)[1]["reviewkd"].item() == pytest.approx(2 * half, rel=1e-4)


# ----------------------------------------------------------------- CAT-KD
def test_cat_loss_matches_pooled_mse(rng: np.random.Generator) -> None:
    s, t = rng.normal(size=(2, 3, 4, 4)), rng.normal(size=(2, 3, 4, 4))
    expected = float(((_np_pool(s, 2) - _np_pool(t, 2)) ** 2).mean())
    assert cat_loss(_t(s), _t(t)).item() == pytest.approx(expected, rel=1e-5)
    ps, pt = _np_pool(s, 2).reshape(2, 3, 4), _np_pool(t, 2).reshape(2, 3, 4)
    ps, pt = ps / np.linalg.norm(ps, axis=2, keepdims=True), pt / np.linalg.norm(pt, axis=2, keepdims=True)
    assert cat_loss(_t(s), _t(t), normalize=True).item() == pytest.approx(
        float(((ps - pt) ** 2).mean()), rel=1e-5
    )
    assert cat_loss(_t(s), _t(t), resolution=1).item() == pytest.approx(
        float(((s.mean(axis=(2, 3)) - t.mean(axis=(2, 3))) ** 2).mean()), rel=1e-5
    )
    # invariance: the normalised form ignores a positive scale of each CAM
    assert cat_loss(_t(3 * s), _t(t), normalize=True).item() == pytest.approx(
        float(((ps - pt) ** 2).mean()), rel=1e-5
    )


@pytest.mark.parametrize("name", ["resnet8", "wrn_10_2", "cnn"])
def test_cams_average_to_the_logits(name: str) -> None:
    """The CAMs' spatial means are the model's logits (GAP and fc commute)."""
    model = create_model(name, NUM_CLASSES, 3).eval()
    x = torch.randn(2, 3, 16, 16)
    captured = {}
    handle = model.pool.register_forward_pre_hook(lambda m, args: captured.update(a=args[0]))
    with torch.no_grad():
        logits = model(x)
    handle.remove()
    cams = class_activation_maps(captured["a"], model.fc.weight, model.fc.bias)
    torch.testing.assert_close(cams.mean(dim=(2, 3)), logits, rtol=1e-4, atol=1e-5)


def test_catkd_defaults_and_no_own_state() -> None:
    d = _build("catkd")
    assert d.extra_state() == {}  # the fc layers it reads stay the models'
    assert not any(n.startswith("_") for n, _ in d.named_parameters())
    cfg = method_config("catkd")
    assert (cfg.ce_weight, cfg.kd_weight, cfg.resolution, cfg.normalize) == (1.0, 15.0, 2, False)
    x, y = _batch("cnn")
    d.eval()
    with torch.no_grad():
        _, losses = d(x, y)
        t_logits = d.teacher(x)
    # at resolution 1 the loss compares the CAMs' means: the raw logits
    d1 = _build("catkd", options={"resolution": 1, "kd_weight": 1.0}).eval()
    with torch.no_grad():
        s_logits, losses = d1(x, y)
    assert losses["cat"].item() == pytest.approx(
        torch.nn.functional.mse_loss(s_logits, t_logits).item(), rel=1e-4
    )


def test_phased_methods_refuse_multi_process_training(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.distributed as dist

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    for method in ("ab", "ft"):
        with pytest.raises(ConfigError, match="multi-process"):
            _build(method)


# ----------------------------------------------------------------- every method, two pairs
@pytest.mark.parametrize("mixed", [False, True], ids=["labels", "mixed"])
@pytest.mark.parametrize("method,pair", CASES)
def test_forward_backward(method: str, pair: str, mixed: bool) -> None:
    d = _build(method, pair)
    x, target = _batch(pair, mixed=mixed)
    logits, losses = d(x, target)
    assert logits.shape == (6, NUM_CLASSES)
    assert set(losses) == SPECS[method]["losses"]
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    sum(v for k, v in losses.items() if k != "ce").backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in d.student.parameters())
    assert all(p.grad is None for p in d.teacher.parameters())
    trainable = d.trainable_parameters()
    for name in SPECS[method]["parts"]:
        params = list(getattr(d, name).parameters())
        assert params and all(p.grad is not None and p.grad.abs().sum() > 0 for p in params), name
        assert all(any(p is q for q in trainable) for p in params), name
    assert not any(any(p is q for q in d.teacher.parameters()) for p in trainable)


@pytest.mark.parametrize("method", [m for m, spec in SPECS.items() if spec["parts"]])
def test_extra_state_round_trips(method: str) -> None:
    d = _build(method)
    x, target = _batch("cnn")
    d(x, target)
    state = {k: v.clone() for k, v in d.extra_state().items()}
    assert state and not any(k.startswith(("student.", "teacher.")) for k in state)
    fresh = _build(method, seed=1)
    assert any(not torch.equal(state[k], v) for k, v in fresh.extra_state().items())
    fresh.load_extra_state(state)
    assert all(torch.equal(state[k], v) for k, v in fresh.extra_state().items())


@pytest.mark.parametrize("method", list(SPECS))
def test_methods_list_their_source(method: str) -> None:
    from calikd.distill import distiller_info

    info = distiller_info(method)
    assert info["uses_features"] and len(info["source"]) > 20


@pytest.mark.parametrize("method", list(SPECS))
def test_runs_under_bf16_autocast(method: str) -> None:
    d = _build(method)
    x, target = _batch("cnn", mixed=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, losses = d(x, target)
    for name, value in losses.items():
        assert value.dtype == torch.float32 and torch.isfinite(value), name
