"""Classical baselines, each with its best-practice settings for a known noise level.

Denoisers map a noisy float image on the [0,1] scale (HxW or HxWx3) and the noise std `sigma`
on the 0..255 scale to a clean estimate on [0,1]. Upscalers map an LR uint8 image to an HR
float image on the 0..255 scale (not rounded; the benchmark rounds every method the same way).

Settings and where they come from:

- ``bm3d``: the reference BM3D (the ``bm3d`` package of Makinen et al., the authors' code),
  ``sigma_psd = sigma/255``, default ('np') profile, both stages; colour via ``bm3d_rgb``
  (opponent colour space, the authors' CBM3D route).
- ``nlm``: scikit-image ``denoise_nl_means`` as in its gallery example for a known sigma:
  ``fast_mode``, ``h = 0.6 sigma``, ``sigma`` given (so 2 sigma^2 is subtracted from patch
  distances), ``patch_distance = 6``; ``patch_size`` 5, or 7 on gray images above sigma 30
  (larger patches match more reliably in heavy noise, as Buades et al. recommend).
- ``tv``: scikit-image ``denoise_tv_chambolle`` with ``weight = c(sigma) * sigma/255``, c
  interpolated through 0.70 / 0.80 / 0.95 at sigma 15 / 25 / 50 (held constant outside): the
  PSNR-best factors on 192x192 crops of three BSDS400 *training* images (gray and colour gave
  the same optimum; the benchmark images were never used for tuning).
- ``wavelet``: scikit-image ``denoise_wavelet`` with BayesShrink, soft thresholding, the known
  ``sigma`` and ``rescale_sigma=True``; colour images in YCbCr, as in its gallery example.

For deblurring (a known kernel and noise std): ``bm3d`` is the authors' BM3D deblurring
(``bm3d_deblurring``: regularised inversion, then BM3D with the coloured noise it leaves, then a
regularised Wiener inversion filtered again; colour images channel by channel),
``wiener`` is scikit-image ``unsupervised_wiener`` (it estimates the noise and prior weights itself,
so nothing is tuned; seeded). Both assume circular convolution, so the blurred image is first
extended by reflection (as the blur operator treats borders) and the estimate cropped back.

For super-resolution: ``bicubic`` is MATLAB's ``imresize`` (the published baseline, exactly),
``pil`` is Pillow's bicubic (also a = -0.5, but its borders are renormalised, not mirrored): a contrast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from .errors import InputError, RimError
from .io import GRAY_LEVELS

Denoiser = Callable[[np.ndarray, float], np.ndarray]
#: (blurred image on [0,1], noise std on 0..255, 2-D kernel) -> estimate on [0,1]
Deblurrer = Callable[[np.ndarray, float, np.ndarray], np.ndarray]
Upscaler = Callable[[np.ndarray, int], np.ndarray]

DENOISERS = ("bm3d", "nlm", "tv", "wavelet")
DEBLURRERS = ("bm3d", "wiener")
UPSCALERS = ("bicubic", "pil")

#: TV weight factor per sigma (see the module docstring for how these were chosen)
TV_SIGMAS = (15.0, 25.0, 50.0)
TV_FACTORS = (0.70, 0.80, 0.95)


class MissingBaseline(RimError, ImportError, ValueError):
    """An optional baseline whose package is not installed (a RimError: the CLI prints one line)."""


def _is_colour(img: np.ndarray) -> bool:
    return img.ndim == 3 and img.shape[2] == 3


def bm3d_denoise(noisy: np.ndarray, sigma: float) -> np.ndarray:
    bm3d = require_bm3d()
    if _is_colour(noisy):
        return np.asarray(bm3d.bm3d_rgb(noisy, sigma_psd=sigma / GRAY_LEVELS), dtype=np.float64)
    return np.asarray(bm3d.bm3d(noisy, sigma_psd=sigma / GRAY_LEVELS), dtype=np.float64)


def nlm_denoise(noisy: np.ndarray, sigma: float) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    s = sigma / GRAY_LEVELS
    colour = _is_colour(noisy)
    patch = 7 if (not colour and sigma > 30) else 5
    return denoise_nl_means(noisy, h=0.6 * s, sigma=s, fast_mode=True, patch_size=patch, patch_distance=6,
                            channel_axis=-1 if colour else None)


def tv_weight(sigma: float) -> float:
    return float(np.interp(sigma, TV_SIGMAS, TV_FACTORS)) * sigma / GRAY_LEVELS


def tv_denoise(noisy: np.ndarray, sigma: float) -> np.ndarray:
    from skimage.restoration import denoise_tv_chambolle

    return denoise_tv_chambolle(noisy, weight=tv_weight(sigma), channel_axis=-1 if _is_colour(noisy) else None)


def wavelet_denoise(noisy: np.ndarray, sigma: float) -> np.ndarray:
    from skimage.restoration import denoise_wavelet

    colour = _is_colour(noisy)
    return denoise_wavelet(noisy, sigma=sigma / GRAY_LEVELS, method="BayesShrink", mode="soft", rescale_sigma=True,
                           channel_axis=-1 if colour else None, convert2ycbcr=colour)


def _reflect_margin(blurred: np.ndarray, kernel: np.ndarray) -> tuple[np.ndarray, tuple[slice, slice]]:
    """The image reflected outwards by a margin (three kernel radii, at least 8 px), and the crop
    back: inside the margin the blurred image is exactly the blur of the reflected clean one (the
    operator's own borders), and an FFT deconvolution's wrap-around seam lies outside the crop."""
    reach = max(kernel.shape) // 2
    m = min(max(8, 3 * reach), min(blurred.shape[:2]) - 1)
    pad = ((m, m), (m, m)) + ((0, 0),) * (blurred.ndim - 2)
    h, w = blurred.shape[:2]
    return np.pad(blurred, pad, mode="reflect"), (slice(m, m + h), slice(m, m + w))


@contextmanager
def _numpy_trapz() -> Iterator[None]:
    """bm4d 4.x (under bm3d's coloured-noise path) calls np.trapz, which NumPy 2.4 removed;
    lend it np.trapezoid (the same function, renamed) for the call only."""
    missing = not hasattr(np, "trapz") and hasattr(np, "trapezoid")
    if missing:
        np.trapz = np.trapezoid
    try:
        yield
    finally:
        if missing:
            del np.trapz


def bm3d_deblur(blurred: np.ndarray, sigma: float, kernel: np.ndarray) -> np.ndarray:
    bm3d = require_bm3d()
    ext, crop = _reflect_margin(blurred, kernel)
    psf = np.asarray(kernel, dtype=np.float64)
    # one HxWx1 channel at a time: its HxW path breaks a broadcast, its HxWx3 path its second stage
    with _numpy_trapz():
        out = [np.asarray(bm3d.bm3d_deblurring(c[..., None], sigma / GRAY_LEVELS, psf), dtype=np.float64).reshape(c.shape)
               for c in _channels(ext)]
    return _stack(out, ext)[crop]


def wiener_deblur(blurred: np.ndarray, sigma: float, kernel: np.ndarray) -> np.ndarray:  # noqa: ARG001 - estimated
    from skimage.restoration import unsupervised_wiener

    ext, crop = _reflect_margin(blurred, kernel)
    psf = np.asarray(kernel, dtype=np.float64)
    return _stack([unsupervised_wiener(c, psf, clip=False, rng=0)[0] for c in _channels(ext)], ext)[crop]


def _channels(img: np.ndarray) -> list[np.ndarray]:
    return [img] if img.ndim == 2 else [img[..., c] for c in range(img.shape[2])]


def _stack(chans: list[np.ndarray], like: np.ndarray) -> np.ndarray:
    return chans[0] if like.ndim == 2 else np.stack(chans, axis=-1)


def bicubic_matlab(lr: np.ndarray, scale: int) -> np.ndarray:
    from .resize import imresize_np

    return imresize_np(np.asarray(lr, dtype=np.float64), scale)


def bicubic_pil(lr: np.ndarray, scale: int) -> np.ndarray:
    from PIL import Image

    h, w = lr.shape[:2]
    img = Image.fromarray(np.asarray(lr, dtype=np.uint8))
    return np.asarray(img.resize((w * scale, h * scale), Image.Resampling.BICUBIC), dtype=np.float64)


_DENOISE_FUNCS: dict[str, Denoiser] = {"bm3d": bm3d_denoise, "nlm": nlm_denoise, "tv": tv_denoise, "wavelet": wavelet_denoise}
_DEBLUR_FUNCS: dict[str, Deblurrer] = {"bm3d": bm3d_deblur, "wiener": wiener_deblur}
_UPSCALE_FUNCS: dict[str, Upscaler] = {"bicubic": bicubic_matlab, "pil": bicubic_pil}


def require_bm3d():  # noqa: ANN201 - returns the optional module
    try:
        import bm3d
    except ImportError as e:
        raise MissingBaseline("the bm3d baseline needs the optional `bm3d` package: pip install 'rimcli[bm3d]'") from e
    return bm3d


def bm3d_available() -> bool:
    try:
        require_bm3d()
    except MissingBaseline:
        return False
    return True


def denoiser(name: str) -> Denoiser:
    if name not in _DENOISE_FUNCS:
        raise InputError(f"unknown denoising baseline {name!r}; choose from {', '.join(DENOISERS)}")
    if name == "bm3d":
        require_bm3d()  # fail before any work is done
    return _DENOISE_FUNCS[name]


def deblurrer(name: str) -> Deblurrer:
    if name not in _DEBLUR_FUNCS:
        raise InputError(f"unknown deblurring baseline {name!r}; choose from {', '.join(DEBLURRERS)}")
    if name == "bm3d":
        require_bm3d()
    return _DEBLUR_FUNCS[name]


def upscaler(name: str) -> Upscaler:
    if name not in _UPSCALE_FUNCS:
        raise InputError(f"unknown super-resolution baseline {name!r}; choose from {', '.join(UPSCALERS)}")
    return _UPSCALE_FUNCS[name]


def describe(name: str, task: str = "denoise") -> str:
    """A one-line statement of the settings, recorded in every report."""
    if task == "deblur":
        return {
            "bm3d": "bm3d package bm3d_deblurring (RI + BM3D, RWI + Wiener BM3D), sigma_psd=sigma/255, profile 'np', "
                    "per channel; "
                    "reflected margin of 3 kernel radii (at least 8 px) against circular wrap-around",
            "wiener": "skimage unsupervised_wiener (noise and prior weights estimated, rng 0), per channel; "
                      "same reflected margin",
        }[name]
    return {
        "bm3d": "bm3d package, sigma_psd=sigma/255, profile 'np', both stages (bm3d_rgb for colour)",
        "nlm": "skimage denoise_nl_means fast_mode, h=0.6 sigma, sigma given, patch 5 (7 gray sigma>30), distance 6",
        "tv": "skimage denoise_tv_chambolle, weight=c(sigma)*sigma/255, c=0.70/0.80/0.95 at sigma 15/25/50 (interpolated)",
        "wavelet": "skimage denoise_wavelet BayesShrink soft, sigma given, rescale_sigma, YCbCr for colour",
        "bicubic": "MATLAB imresize bicubic (Keys a=-0.5, antialiased, edge pixels repeated at the border, as MATLAB does)",
        "pil": "Pillow Image.resize BICUBIC",
    }[name]
