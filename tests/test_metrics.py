"""Metrics against known values and scikit-image, and the published SR protocol on the real sets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import SHARED_DATA, requires_shared
from rimcli.metrics import psnr, rgb2y, shave, sr_metrics, ssim, to_uint8_scale


def test_psnr_known_values() -> None:
    a = np.zeros((4, 4))
    assert psnr(a, a + 1) == pytest.approx(20 * math.log10(255), abs=1e-12)  # mse 1
    assert psnr(a, a + 255) == pytest.approx(0.0, abs=1e-12)
    assert psnr(a, a + 0.1, peak=1.0) == pytest.approx(20.0, abs=1e-9)
    assert psnr(a, a) == math.inf
    with pytest.raises(ValueError):
        psnr(a, np.zeros((4, 5)))


def test_to_uint8_scale_rounds_and_clips() -> None:
    x = np.array([-0.1, 0.0, 0.5 / 255, 1.4 / 255, 0.5, 1.2])
    assert to_uint8_scale(x).tolist() == [0, 0, 0, 1, 128, 255]  # numpy rounds half to even: 0.5 -> 0, 127.5 -> 128


def test_ssim_identical_is_one() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (32, 40)).astype(np.float64)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    c = rng.integers(0, 256, (32, 40, 3)).astype(np.float64)
    assert ssim(c, c) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError):
        ssim(a[:10, :10], a[:10, :10])


@pytest.mark.parametrize("shape", [(40, 52), (33, 30, 3)])
def test_ssim_matches_skimage(shape: tuple[int, ...]) -> None:
    """Ours averages the SSIM map over the valid region (no padded border). skimage filters with
    reflected borders but then crops (win_size - 1) // 2 = 5 pixels before averaging, i.e. the
    same valid region, so with Wang's settings the two agree to rounding error."""
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, shape).astype(np.float64)
    b = np.clip(a + rng.normal(0, 20, shape), 0, 255)
    ref = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255,
                                channel_axis=-1 if len(shape) == 3 else None)
    assert ssim(a, b) == pytest.approx(ref, abs=1e-12)


def test_rgb2y_matlab_range() -> None:
    px = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0]]], dtype=np.float64)
    y = rgb2y(px)
    assert y.tolist() == [[16.0, 235.0, 81.0]]  # 16 + 65.481 = 81.481 -> 81
    assert rgb2y(px, round_uint8=False)[0, 2] == pytest.approx(81.481)


def test_shave_and_gray_sr_metrics() -> None:
    a = np.arange(100.0).reshape(10, 10)
    assert shave(a, 2).shape == (6, 6)
    assert shave(a, 0).shape == (10, 10)
    rng = np.random.default_rng(2)
    hr = rng.integers(0, 256, (24, 24)).astype(np.float64)
    p, s = sr_metrics(hr, hr, 2)
    assert p == math.inf and s == pytest.approx(1.0)


def test_sr_psnr_agrees_with_sr_metrics() -> None:
    from rimcli.benchmark import sr_psnr

    rng = np.random.default_rng(3)
    hr = rng.integers(0, 256, (30, 36, 3)).astype(np.float64)
    sr = np.clip(hr + rng.normal(0, 5, hr.shape).round(), 0, 255)
    assert sr_psnr(sr, hr, 3) == pytest.approx(sr_metrics(sr, hr, 3)[0], abs=1e-12)


def _bicubic_scores(name: str, scale: int, with_ssim: bool) -> tuple[float, float | None]:
    """MATLAB-bicubic upscaling of the dataset's LR files, scored the way `rim benchmark` scores."""
    from rimcli import baselines, datasets
    from rimcli.benchmark import sr_psnr

    folder = datasets.locate(name, SHARED_DATA / "bench", scale)
    ps, ss = [], []
    for _, hr, lr in datasets.sr_pairs(folder, scale):
        up = np.clip(np.round(baselines.bicubic_matlab(lr, scale)), 0, 255)
        if with_ssim:
            p, s = sr_metrics(up, hr.astype(np.float64), scale)
            ss.append(s)
        else:
            p = sr_psnr(up, hr, scale)
        ps.append(p)
    return float(np.mean(ps)), (float(np.mean(ss)) if with_ssim else None)


@requires_shared
@pytest.mark.slow
def test_protocol_bicubic_bsd100_x2_psnr_and_ssim() -> None:
    """The published Table-3 bicubic figures: a protocol that misses these is wrong."""
    p, s = _bicubic_scores("b100", 2, with_ssim=True)
    assert p == pytest.approx(29.55, abs=0.01)
    assert s == pytest.approx(0.8425, abs=0.001)


@requires_shared
@pytest.mark.parametrize(("name", "scale", "expected"), [("b100", 3, 27.20), ("b100", 4, 25.96), ("set5", 2, 33.64)])
def test_protocol_bicubic_psnr(name: str, scale: int, expected: float) -> None:
    p, _ = _bicubic_scores(name, scale, with_ssim=False)
    assert p == pytest.approx(expected, abs=0.01)
