"""The bundled denoisers and deblurrer themselves (real weights, no ../shared needed): what a user relies on."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

import rimcli

#: each bundled denoiser with a 128x128 crop of a photo it serves (face, hair, fabric, sky, grass)
CASES = {"rim-rgb-denoise": lambda: data.astronaut()[100:228, 150:278],
         "rim-gray-denoise": lambda: data.camera()[60:188, 180:308]}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize("model", CASES)
def test_denoiser_leaves_a_clean_photo_essentially_unchanged(model: str) -> None:
    """sigma 0 is 'no noise': the photo must come back at 40 dB or more (issue 15's floor)."""
    photo = CASES[model]()
    out = rimcli.denoise(photo, sigma=0, model=model)
    assert _psnr(out, photo) >= 40


@pytest.mark.parametrize("sigma", [5, 15, 25])
@pytest.mark.parametrize("model", CASES)
def test_denoiser_improves_an_8bit_noisy_photo(model: str, sigma: float) -> None:
    photo = CASES[model]()
    rng = np.random.default_rng(0)
    noisy = np.clip(np.round(photo + sigma * rng.standard_normal(photo.shape)), 0, 255).astype(np.uint8)
    out = rimcli.denoise(noisy, sigma=sigma, model=model)
    gain = _psnr(out, photo) - _psnr(noisy, photo)
    assert gain > {5: 0.5, 15: 3.0, 25: 5.0}[sigma], gain


def _blurred_8bit(photo: np.ndarray, kernel: np.ndarray, sigma: float) -> np.ndarray:
    import torch

    from rimcli.operators import Blur

    x = torch.from_numpy(photo / 255.0).permute(2, 0, 1)[None].float()
    y = Blur(kernel).A(x)[0].permute(1, 2, 0).double().numpy() * 255
    y += sigma * np.random.default_rng(0).standard_normal(y.shape)
    return np.clip(np.round(y), 0, 255).astype(np.uint8)


#: a 9-px horizontal motion blur: not a Gaussian, which is all the deblurrer was trained on
MOTION = np.pad(np.full((1, 9), 1 / 9), ((4, 4), (0, 0)))


@pytest.mark.parametrize(("blur", "floor"), [(1.0, 3.5), (2.0, 3.5), ("motion", 2.5)])  # interim model: 1.9, 2.8, 2.2
def test_deblurrer_sharpens_an_8bit_blurred_photo(blur: float | str, floor: float) -> None:
    from rimcli.operators import gaussian_kernel

    photo = CASES["rim-rgb-denoise"]()
    kernel = MOTION if blur == "motion" else gaussian_kernel(blur).double().numpy()
    blurred = _blurred_8bit(photo, kernel, sigma=2)
    out = (rimcli.deblur(blurred, kernel=kernel, sigma=2) if blur == "motion"
           else rimcli.deblur(blurred, blur_sigma=blur, sigma=2))
    gain = _psnr(out, photo) - _psnr(blurred, photo)
    assert gain > floor, gain


def test_every_bundled_file_describes_itself() -> None:
    """A bundled file given by path (a copy, say) runs exactly like its name: the file's own
    metadata carries the manifest's name, tasks and default steps (issue 12, item 3)."""
    from rimcli.weights import file_metadata, read_manifest, weights_dir

    entries = read_manifest()
    assert entries, "no bundled models"
    for name, entry in entries.items():
        meta = file_metadata(weights_dir() / entry.file)
        assert (meta.get("name"), meta.get("tasks"), meta.get("default_steps")) == \
            (name, entry.tasks, entry.default_steps), name
