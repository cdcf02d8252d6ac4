"""Image-quality metrics with the published conventions.

- PSNR with peak 255 on 8-bit-rounded images (the convention of the denoising/SR tables);
  `psnr_of_mse` is the one formula, used by `psnr` (numpy images, any peak) and `psnr_batch`
  (torch batches, per sample: training validation at peak 1 on 8-bit-rounded crops, the
  projections protocol at peak 1 on float estimates).
- SSIM of Wang et al. 2004: 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, L = 255,
  population covariance, mean over the valid region (no padded border), per channel averaged.
- MATLAB `rgb2ycbcr` luma and border shaving for super-resolution (Huang et al. round Y to uint8):
  `sr_y` is the one definition of what SR scores compare (the API, `rim benchmark`, the tests).
"""

from __future__ import annotations

import numpy as np


def to_uint8_scale(img: np.ndarray) -> np.ndarray:
    """[0,1] float -> rounded 0..255 float64 (how published code quantises outputs)."""
    return np.clip(np.round(np.asarray(img, dtype=np.float64) * 255.0), 0, 255)


def psnr_of_mse(mse, peak: float = 255.0, log10=np.log10):  # noqa: ANN001, ANN201 - numpy or torch
    """10 log10(peak^2 / mse) in dB: the PSNR formula, written once (pass `torch.log10` for tensors)."""
    return 10 * log10(peak**2 / mse)


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB between two arrays on the same scale (default 0..255), over the whole array;
    inf for identical arrays."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else float(psnr_of_mse(mse, peak))


def psnr_batch(a, b, peak: float = 1.0, min_mse: float = 1e-12):  # noqa: ANN001, ANN201 - torch tensors
    """Per-sample PSNR (dB) of two torch batches (B, ...) -> (B,), in their own dtype; the MSE is
    floored at `min_mse` so identical samples give a large finite value instead of inf."""
    import torch

    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(min_mse)
    return psnr_of_mse(mse, peak, torch.log10)


def _ssim_2d(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    from scipy.ndimage import correlate

    r = np.arange(11) - 5.0
    g = np.exp(-(r**2) / (2 * 1.5**2))
    g /= g.sum()
    win = np.outer(g, g)

    def filt(x: np.ndarray) -> np.ndarray:  # MATLAB filter2(win, x, 'valid')
        return correlate(x, win, mode="constant")[5:-5, 5:-5]

    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mu_a, mu_b = filt(a), filt(b)
    s_aa = filt(a * a) - mu_a**2
    s_bb = filt(b * b) - mu_b**2
    s_ab = filt(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * s_ab + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (s_aa + s_bb + c2)
    return float(np.mean(num / den))


def ssim(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """Wang et al. SSIM (valid region) of HxW or HxWxC arrays; channels averaged."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    if min(a.shape[:2]) < 11:
        raise ValueError("SSIM needs images of at least 11x11 pixels")
    if a.ndim == 2:
        return _ssim_2d(a, b, peak)
    return float(np.mean([_ssim_2d(a[..., c], b[..., c], peak) for c in range(a.shape[2])]))


def rgb2y(img: np.ndarray, round_uint8: bool = True) -> np.ndarray:
    """MATLAB `rgb2ycbcr` luma of an RGB image on the 0..255 scale: 16 + (65.481 R + 128.553 G + 24.966 B)."""
    x = np.asarray(img, dtype=np.float64) / 255.0
    y = 16.0 + 65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]
    return np.round(y) if round_uint8 else y


def shave(img: np.ndarray, border: int) -> np.ndarray:
    return img[border:-border, border:-border] if border > 0 else img


def sr_y(img: np.ndarray, scale: int) -> np.ndarray:
    """What the SR protocol compares (0..255): MATLAB `rgb2ycbcr` Y, rounded, of an RGB image (a
    gray one as it is), with `scale` pixels shaved per border (Huang et al., the published tables)."""
    a = np.asarray(img, dtype=np.float64)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    return shave(rgb2y(a) if a.ndim == 3 and a.shape[2] == 3 else a, scale)


def sr_psnr(sr: np.ndarray, hr: np.ndarray, scale: int) -> float:
    """PSNR only, under the SR protocol (cheap enough for every step)."""
    return psnr(sr_y(sr, scale), sr_y(hr, scale))


def sr_metrics(sr: np.ndarray, hr: np.ndarray, scale: int) -> tuple[float, float]:
    """PSNR/SSIM of an SR result against HR (both 0..255) on Y, shaving `scale` pixels per border."""
    ys, yh = sr_y(sr, scale), sr_y(hr, scale)
    return psnr(ys, yh), ssim(ys, yh)
