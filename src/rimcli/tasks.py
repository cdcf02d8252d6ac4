"""The facts of each restoration task (denoise, superres, deblur, cs), written once.

The API (`api`), the benchmark (`benchmark`) and training (`training`) all build operators,
pick noise levels, simulate measurements and fit image channels to a model; they take those
conventions from here, so the copies cannot drift apart:

- operators: one small factory per task, from that task's own parameters (drawing the
  parameters at random is training's business; building the operator is this module's);
- sigma: the inference default per task, the training range, the denoising test levels;
- scales: those inference supports, and the wider set training accepts;
- simulation: SR crops to whole LR pixels, simulated LR images as 8-bit files, cs padding
  to whole blocks, the side every simulated crop must be a multiple of;
- channels: a gray model on a colour image, an RGB model on a gray one.

The SR scoring protocol (MATLAB Y, `scale` pixels shaved) is `metrics.sr_y`.

Cheap to import: torch and the operators load on first use (`import rimcli.api` stays light).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from .errors import InputError
from .io import GRAY_LEVELS

if TYPE_CHECKING:
    import torch

    from .operators import Blur, Denoise, Downsample, RandomProjection

TASKS = ("denoise", "superres", "deblur", "cs")
#: projection ensembles: `operators.ENSEMBLES`, named here without importing torch
ENSEMBLES = ("gaussian", "binary", "fourier")
#: side of the square blocks compressed sensing projects (the paper's 32x32)
CS_BLOCK = 32
#: measurements per pixel training draws from by default (the paper's 1/2, 1/4, 1/8)
CS_RATIOS = (0.5, 0.25, 0.125)

#: SR scales inference supports: the bundled models' and the benchmark sets' (image_SRF_2..4)
SR_SCALES = (2, 3, 4)
#: SR scales training accepts: more than inference, for experiments
TRAIN_SR_SCALES = (2, 3, 4, 5, 6, 8)

#: measurement-noise std (0..255) inference assumes when none is given
DEFAULT_SIGMA = {"denoise": 25.0, "superres": 0.0, "deblur": 1.0, "cs": 0.0}
#: noise std range (0..255) training draws from when the config sets none
TRAIN_SIGMA_RANGE = {"denoise": (0.0, 75.0), "superres": (0.0, 2.0), "cs": (0.0, 50.0), "deblur": (0.0, 25.0)}
#: the denoising noise levels of the published tables (benchmark default, training validation)
DENOISE_TEST_SIGMAS = (15.0, 25.0, 50.0)
#: tasks whose measurement a flip or rotation maps to a measurement of the flipped image, so a
#: self-ensemble can average over orientations (`LinearOperator.dihedral`); a projected block has none
SELF_ENSEMBLE_TASKS = ("denoise", "superres", "deblur")


# --------------------------------------------------------------------------- operators


def denoise_operator() -> Denoise:
    from .operators import Denoise

    return Denoise()


def superres_operator(scale: int) -> Downsample:
    """MATLAB-bicubic downsampling by `scale` (not checked against SR_SCALES: training goes wider)."""
    from .operators import Downsample

    return Downsample(scale)


def deblur_operator(blur_sigma: float, widest: float | None = None) -> Blur:
    """A Gaussian blur of std `blur_sigma` pixels. `widest` sizes the kernel for the widest blur of
    a range instead (+-3 std of it), so every batch of a training run has one kernel size."""
    from .operators import Blur, gaussian_kernel

    if widest is None:
        return Blur.gaussian(blur_sigma)  # records blur_sigma, which `describe` reports
    return Blur(gaussian_kernel(blur_sigma, size=2 * math.ceil(3 * widest) + 1))


#: blur families deblurring can train on: Gaussian, camera shake, out of focus
BLUR_KINDS = ("gaussian", "motion", "defocus")


def random_blur_operator(kind: str, width: float, widest: float, generator: torch.Generator) -> Blur:
    """A blur of family `kind` as wide as a Gaussian of std `width`: a disc of radius 2 width (the
    same per-axis std), a shake path of 6 width pixels (the Gaussian's +-3 std), in the kernel size
    of the widest Gaussian of a range, so every batch of a run has one kernel size."""
    from .operators import Blur, defocus_kernel, motion_kernel

    size = 2 * math.ceil(3 * widest) + 1
    if kind == "gaussian":
        return deblur_operator(width, widest=widest)
    if kind == "defocus":
        return Blur(defocus_kernel(min(2 * width, (size - 1) / 2), size))
    if kind == "motion":
        return Blur(motion_kernel(6 * width, size, generator))
    raise InputError(f"blur kind must be one of {', '.join(BLUR_KINDS)}, got {kind!r}")


def kernel_operator(kernel: np.ndarray | str | os.PathLike) -> Blur:
    """A blur by a given kernel: an array, or an image or .npy file (normalised to sum 1)."""
    from .operators import Blur, load_kernel

    if isinstance(kernel, np.ndarray):
        return Blur(kernel)
    k = load_kernel(kernel)  # its errors name the file
    try:
        return Blur(k)
    except InputError as e:  # so do the shape's, for a user who gave several files
        raise InputError(f"{kernel}: {e}") from None


def cs_operator(ensemble: str, ratio: float, seed: int, batch: int = 1) -> RandomProjection:
    """Random projections of CS_BLOCK blocks, `ratio` measurements per pixel, one matrix per batch item."""
    from .operators import RandomProjection

    return RandomProjection(ensemble, ratio, seed=seed, patch=CS_BLOCK, batch=batch)


# --------------------------------------------------------------------------- simulation


def sr_crop_size(height: int, width: int, scale: int) -> tuple[int, int]:
    """The size a simulated SR truth is cropped to: a whole number of LR pixels."""
    return height - height % scale, width - width % scale


def sr_crop(x: np.ndarray, scale: int) -> np.ndarray:
    """An HxW(xC) image cropped (bottom and right) to a whole number of LR pixels."""
    h, w = sr_crop_size(x.shape[0], x.shape[1], scale)
    if h == 0 or w == 0:
        raise InputError(f"image is smaller than the scale {scale}")
    return x[:h, :w]


def pad_to_blocks(x: np.ndarray, block: int = CS_BLOCK) -> np.ndarray:
    """HxWxC padded (bottom and right) to whole `block`s; reflected, so the padding looks like image."""
    return np.pad(x, ((0, -x.shape[0] % block), (0, -x.shape[1] % block), (0, 0)), mode="symmetric")


def crop_multiple(tasks: list[str], scales: list[int]) -> int:
    """The side every simulated crop must be a multiple of: whole LR pixels at every scale
    (superres) and whole blocks (cs)."""
    m = math.lcm(*scales) if "superres" in tasks else 1
    return math.lcm(m, CS_BLOCK) if "cs" in tasks else m


def stored_measurement(task: str, y: torch.Tensor) -> torch.Tensor:
    """A simulated measurement as a file would hold it: SR inputs are 8-bit LR images, so their
    simulation is rounded to 8 bits (as training and its validation do; `api` simulations keep
    the float LR). Other tasks' measurements pass through."""
    return (y * GRAY_LEVELS).round() / GRAY_LEVELS if task == "superres" else y


#: tasks whose measurement is itself a photo a user stores, clipped and rounded to 8 bits (noisy and
#: blurred images; unlike cs measurements, and SR inputs are always 8-bit: `stored_measurement`)
STORED_AS_8BIT = ("denoise", "deblur")


def as_8bit(y: torch.Tensor) -> torch.Tensor:
    """A noisy image as an 8-bit file holds it: clipped to [0, 1] and rounded to 1/255."""
    return (y.clamp(0, 1) * GRAY_LEVELS).round() / GRAY_LEVELS


# --------------------------------------------------------------------------- channels


def fit_channels(y: torch.Tensor, model_channels: int) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """Fit a (B, C, ...) batch's channels to the model's, and the map back: a gray model runs on
    each colour channel of a single image (B = 1; the channels become the batch); an RGB model
    runs on the gray image replicated to its channels, and its output is their mean."""
    c = y.shape[1]
    if c == model_channels:
        return y, lambda t: t
    if model_channels == 1:
        return y.transpose(0, 1).contiguous(), lambda t: t.transpose(0, 1)
    return y.expand(-1, model_channels, *y.shape[2:]).contiguous(), lambda t: t.mean(1, keepdim=True)
