"""Tests of the weather corruptions (snow, frost, fog, spatter) and their procedural textures."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from calikd.corruptions import corrupt, get_corruption, list_corruptions
from calikd.corruptions.kernels import gaussian_blur
from calikd.corruptions.textures import frost_texture, next_pow2, plasma_fractal, splat_segments
from calikd.corruptions.weather import _canny, _chamfer_distance, _equalize_hist, clipped_zoom

NAMES = ("snow", "frost", "fog", "spatter")


def _images(n: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Smooth random images stretched to [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = gaussian_blur(torch.rand(n, c, h, w, generator=g), 1.5)
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x - lo) / (hi - lo)


def _decorrelation(x: torch.Tensor, y: torch.Tensor) -> float:
    """1 - the mean per-image Pearson correlation of clean and corrupted pixels."""
    xc = x.flatten(1) - x.flatten(1).mean(1, keepdim=True)
    yc = y.flatten(1) - y.flatten(1).mean(1, keepdim=True)
    corr = (xc * yc).sum(1) / (xc.norm(dim=1) * yc.norm(dim=1)).clamp_min(1e-12)
    return 1 - float(corr.mean())


def test_registered_in_the_weather_family() -> None:
    assert [n for n in list_corruptions("benchmark") if get_corruption(n).family == "weather"] == [
        "snow",
        "frost",
        "fog",
    ]
    assert "spatter" in list_corruptions("extra")
    for name in NAMES:
        assert get_corruption(name).family == "weather"
        assert get_corruption(name).description


@pytest.mark.parametrize("name", ("snow", "frost", "fog"))
@pytest.mark.parametrize("size", (32, 64))
def test_distortion_grows_with_severity(name: str, size: int) -> None:
    """Snow: mean absolute change (its heaviest CIFAR-C level washes out rather than decorrelates); frost and
    fog: decorrelation from the clean image (frost darkens the image as it whitens it)."""
    x = _images(6, 3, size, size, seed=1)
    ys = [corrupt(x, name, s, seed=7) for s in range(1, 6)]
    d = [float((y - x).abs().mean()) if name == "snow" else _decorrelation(x, y) for y in ys]
    assert all(b >= a - 0.01 for a, b in itertools.pairwise(d)), d
    assert d[4] > d[0] + 0.05, d


@pytest.mark.parametrize("size", (32, 64))
def test_spatter_grows_with_severity(size: int) -> None:
    """Water (severities 1-3) and mud (4-5) each grow; CIFAR-C's mud is sparser than its heaviest water."""
    x = _images(6, 3, size, size, seed=1)
    d = [_decorrelation(x, corrupt(x, "spatter", s, seed=7)) for s in range(1, 6)]
    assert d[0] < d[1] < d[2] and d[3] < d[4] and d[4] > d[0], d


def test_corrupting_twice_is_independent_of_the_batch_order() -> None:
    """Every image gets its own random layer: two copies of an image in a batch are corrupted differently."""
    x = _images(1, 3, 32, 32).repeat(2, 1, 1, 1)
    for name in NAMES:
        y = corrupt(x, name, 3, seed=0)
        assert not torch.equal(y[0], y[1]), name


# ---------------------------------------------------------------- fog


@pytest.mark.parametrize(("size", "table"), [(32, "cifar"), (64, "imagenet")])
def test_fog_renormalises_as_the_reference(size: int, table: str) -> None:
    """``(x + s plasma) max(x) / (max(x) + s)``: on a constant power-of-two image the whole map is used, so
    the result spans exactly ``[v^2 / (v + s), v]``."""
    v = 0.6
    x = torch.full((3, 1, size, size), v)
    for severity in range(1, 6):
        s = get_corruption("fog").param(severity, table)[0]
        y = corrupt(x, "fog", severity, seed=severity, table=table)  # type: ignore[arg-type]
        assert torch.allclose(y.amax(dim=(1, 2, 3)), torch.full((3,), v), atol=1e-5)
        assert torch.allclose(y.amin(dim=(1, 2, 3)), torch.full((3,), v * v / (v + s)), atol=1e-5)


def test_plasma_fractal() -> None:
    g = torch.Generator().manual_seed(0)
    maps = plasma_fractal(3, 64, 2.0, g)
    assert maps.shape == (3, 64, 64)
    assert torch.allclose(maps.amin(dim=(1, 2)), torch.zeros(3))
    assert torch.allclose(maps.amax(dim=(1, 2)), torch.ones(3))
    assert not torch.equal(maps[0], maps[1])

    def roughness(decay: float) -> float:
        m = plasma_fractal(8, 64, decay, torch.Generator().manual_seed(1))
        return float((m[:, 1:] - m[:, :-1]).abs().mean())

    assert roughness(1.4) > roughness(2.0) > roughness(3.0)
    assert [next_pow2(s) for s in (1, 8, 12, 32, 33, 224)] == [2, 8, 16, 32, 64, 256]
    with pytest.raises(ValueError):
        plasma_fractal(1, 48, 2.0, g)


# ---------------------------------------------------------------- frost


def test_frost_is_the_reference_blend() -> None:
    """``a x + b frost`` with one texture per image: removing the texture leaves ``a x``."""
    x = 0.6 * _images(4, 3, 32, 32)
    a, b = get_corruption("frost").param(3, "cifar")
    y = corrupt(x, "frost", 3, seed=2)
    texture = corrupt(torch.zeros_like(x), "frost", 3, seed=2) / b
    assert torch.allclose(y, a * x + b * texture, atol=1e-5)
    assert 0.33 <= float(texture.mean()) <= 0.52


@pytest.mark.parametrize(("c", "h", "w"), [(3, 32, 32), (1, 224, 224), (3, 12, 8)])
def test_frost_texture_statistics(c: int, h: int, w: int) -> None:
    tex = frost_texture(4, c, h, w, torch.Generator().manual_seed(0))
    assert tex.shape == (4, c, h, w)
    assert float(tex.min()) >= 0 and float(tex.max()) <= 1
    means = tex.mean(dim=(1, 2, 3))
    assert bool(((means > 0.33) & (means < 0.52)).all()), means
    assert float(tex.std()) > 0.1  # bright needles on a darker ground, not a flat grey
    assert float((tex > 0.8).float().mean()) > 0.005


def test_splat_segments_conserves_ink() -> None:
    """Each segment inside the image deposits ``intensity * length`` (the spacing-weighted splat)."""
    x0 = torch.tensor([[5.0, 10.0]])
    y0 = torch.tensor([[5.0, 20.0]])
    angle = torch.tensor([[0.3, 2.0]])
    length = torch.tensor([[12.0, 7.5]])
    intensity = torch.tensor([[1.0, 0.5]])
    out = splat_segments(x0, y0, angle, length, intensity, 32, 32)
    assert out.shape == (1, 1, 32, 32)
    assert abs(float(out.sum()) - (12.0 + 0.5 * 7.5)) < 1e-3
    # a segment leaving the image loses the part outside
    out = splat_segments(
        torch.tensor([[30.0]]), y0[:, :1], torch.zeros(1, 1), length[:, :1], intensity[:, :1], 32, 32
    )
    assert 0 < float(out.sum()) < 2.5


# ---------------------------------------------------------------- snow


@pytest.mark.parametrize(("size", "table"), [(32, "cifar"), (64, "imagenet")])
def test_snow_layer_is_added_twice_rotated(size: int, table: str) -> None:
    """On a constant image the result is the brightened grey plus ``layer + rot180(layer)``: it is
    symmetric under a 180-degree rotation and never darker than the brightened image."""
    v = 0.2
    x = torch.full((2, 3, size, size), v)
    for severity in (1, 3, 5):
        w = get_corruption("snow").param(severity, table)[-1]
        y = corrupt(x, "snow", severity, seed=1, table=table)  # type: ignore[arg-type]
        assert torch.allclose(y, y.flip(-2, -1), atol=1e-5)
        floor = w * v + (1 - w) * max(v, 1.5 * v + 0.5)
        assert float(y.min()) >= floor - 1e-5
        assert float((y > floor + 0.05).float().mean()) > 0.01  # there are flakes


@pytest.mark.parametrize(("h", "w", "zoom"), [(32, 32, 1.75), (32, 32, 2.25), (224, 224, 4.5), (17, 17, 3.0)])
def test_clipped_zoom_matches_scipy(h: int, w: int, zoom: float) -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    x = torch.rand(1, 1, h, w, generator=torch.Generator().manual_seed(0))
    arr = x[0, 0].double().numpy()
    ch = math.ceil(h / zoom)
    top = (h - ch) // 2
    ref = ndimage.zoom(arr[top : top + ch, top : top + ch], zoom, order=1)
    trim = (ref.shape[0] - h) // 2
    ref = ref[trim : trim + h, trim : trim + h]
    assert np.allclose(clipped_zoom(x, zoom)[0, 0].numpy(), ref, atol=1e-5)
    assert torch.equal(clipped_zoom(x, 1.0), x)
    assert clipped_zoom(torch.rand(2, 1, 8, 12), zoom).shape == (2, 1, 8, 12)


# ---------------------------------------------------------------- spatter


def test_spatter_water_adds_pale_turquoise() -> None:
    x = 0.3 * _images(4, 3, 64, 64)
    for severity in (1, 2, 3):
        added = corrupt(x, "spatter", severity, seed=5) - x
        assert float(added.min()) > -1e-6
        wet = added[:, 1] > 0.02
        assert bool(wet.any())
        r, g, b = added[:, 0][wet], added[:, 1][wet], added[:, 2][wet]
        assert torch.allclose(g, b, atol=1e-5)
        assert torch.allclose(r, g * 175 / 238, atol=1e-5)


def test_spatter_mud_replaces_by_brown() -> None:
    """Mud masks are 0 or in [0.8, 1]: on white, a pixel stays white or is at least 80% mud."""
    x = torch.ones(4, 1, 64, 64)
    brown = (0.299 * 63 + 0.587 * 42 + 0.114 * 20) / 255
    for severity in (4, 5):
        y = corrupt(x, "spatter", severity, seed=5)
        muddy = y < 1 - 1e-6
        assert 0.01 < float(muddy.float().mean()) < 0.9
        assert float(y[muddy].min()) >= brown - 1e-5
        assert float(y[muddy].max()) <= 1 - 0.8 * (1 - brown) + 1e-5
    rgb = corrupt(torch.ones(2, 3, 64, 64), "spatter", 5, seed=5)
    muddy = rgb[:, 0] < 1 - 1e-6
    assert bool((rgb[:, 0][muddy] > rgb[:, 2][muddy]).all())  # brown: more red than blue


def test_chamfer_distance() -> None:
    """OpenCV's 5x5 chamfer weights from a single source, and within 3% of the Euclidean distance."""
    src = torch.zeros(1, 1, 41, 41, dtype=torch.bool)
    src[0, 0, 20, 20] = True
    d = _chamfer_distance(src, 20.0)[0, 0]
    assert float(d[20, 20]) == 0
    assert abs(float(d[20, 27]) - 7) < 1e-5 and abs(float(d[23, 23]) - 4.2) < 1e-5
    assert abs(float(d[21, 22]) - 2.1969) < 1e-5 and float(d[0, 0]) == 20
    ndimage = pytest.importorskip("scipy.ndimage")
    g = torch.Generator().manual_seed(0)
    src = torch.rand(2, 1, 48, 40, generator=g) < 0.01
    d = _chamfer_distance(src, 20.0)
    exact = np.stack([ndimage.distance_transform_edt(~s[0].numpy()) for s in src])
    exact = np.minimum(exact, 20.0)
    assert np.all(np.abs(d[:, 0].numpy() - exact) <= 0.03 * exact + 1e-4)


def test_equalize_hist_matches_opencv_lut() -> None:
    g = torch.Generator().manual_seed(0)
    values = torch.randint(3, 21, (2, 1, 16, 16), generator=g).float()
    values[1] = values[1].clamp(max=9)
    out = _equalize_hist(values)
    for img, res in zip(values, out, strict=True):
        flat = img.flatten().long().numpy()
        hist = np.bincount(flat, minlength=256)
        lo = int(flat.min())
        cdf = np.cumsum(hist)
        lut = np.rint((cdf - hist[lo]) * 255.0 / (flat.size - hist[lo]))
        assert np.array_equal(res.flatten().numpy(), lut[flat].astype(np.float32))
    assert torch.equal(_equalize_hist(torch.full((1, 1, 8, 8), 7.0)), torch.full((1, 1, 8, 8), 7.0))


def test_canny_traces_region_boundaries() -> None:
    img = torch.zeros(1, 1, 24, 24)
    img[..., 6:18, 8:16] = 200.0
    edges = _canny(img, 50, 150)[0, 0]
    inside = torch.zeros(24, 24, dtype=torch.bool)
    inside[6:18, 8:16] = True

    def near(mask: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.max_pool2d(mask[None].float(), 3, 1, 1)[0].bool()

    ring = near(inside) & near(~inside)
    assert bool(edges.any()) and bool((edges <= ring).all())  # only on the boundary
    assert int(edges[12].sum()) == 2 and int(edges[:, 12].sum()) == 2  # thin: one pixel per crossing
    assert not bool(_canny(torch.full((1, 1, 16, 16), 100.0), 50, 150).any())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_contract() -> None:
    x = _images(2, 3, 64, 64).cuda()
    for name in NAMES:
        y = corrupt(x, name, 4, seed=1)
        assert y.device == x.device and y.shape == x.shape
        assert torch.equal(y, corrupt(x, name, 4, seed=1))
