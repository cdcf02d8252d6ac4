"""The one-call Python API on tiny untrained models: shapes, dtypes, alpha, channels, steps, errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rimcli
from rimcli import api

RNG = np.random.default_rng(1)


def img(shape: tuple[int, ...], dtype: type = np.uint8) -> np.ndarray:
    if np.dtype(dtype).kind == "f":
        return RNG.random(shape).astype(dtype)
    return RNG.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize(
    "shape, dtype",
    [((24, 28), np.uint8), ((24, 28, 1), np.float32), ((24, 28, 3), np.uint16), ((24, 28, 4), np.uint8),
     ((24, 28, 2), np.uint16)],
)
def test_denoise_keeps_dtype_layout_and_alpha(tiny_weights: Path, shape: tuple[int, ...], dtype: type) -> None:
    x = img(shape, dtype)
    y = rimcli.denoise(x, sigma=25, steps=2)
    assert y.shape == x.shape and y.dtype == x.dtype
    if len(shape) == 3 and shape[2] in (2, 4):
        np.testing.assert_array_equal(y[..., -1], x[..., -1])  # alpha untouched


def test_superres_scales_image_and_alpha(tiny_weights: Path) -> None:
    x = img((12, 14, 4))
    y = rimcli.superres(x, scale=2, steps=2)
    assert y.shape == (24, 28, 4) and y.dtype == np.uint8
    from rimcli.resize import imresize_np

    expected = np.clip(np.round(imresize_np(x[..., 3] / 255.0, 2.0) * 255), 0, 255)
    np.testing.assert_array_equal(y[..., 3], expected.astype(np.uint8))


def test_superres_simulation_crops_to_the_scale(tiny_weights: Path) -> None:
    assert rimcli.superres(img((25, 28)), scale=3, steps=1, simulate=True).shape == (24, 27)


@pytest.mark.parametrize("kwargs", [{"blur_sigma": 1.0}, {"kernel": np.ones((3, 3))}])
def test_deblur_gray_runs_the_rgb_model_and_averages(tiny_weights: Path, kwargs: dict) -> None:
    x = img((20, 22))
    out = api.run(x, api.Problem("deblur", **kwargs), options=api.Options(steps=2))
    assert out.model == "rim-rgb-deblur" and out.image.shape == x.shape  # 3-channel model on a gray image


def test_rgb_with_a_gray_model_runs_per_channel(tiny_weights: Path) -> None:
    x = img((20, 22, 3))
    y = rimcli.denoise(x, 25, model="rim-gray-denoise", steps=1)
    assert y.shape == x.shape


def test_cs_pads_to_blocks_and_crops_back(tiny_weights: Path) -> None:
    x = img((40, 36, 3))
    out = api.run(x, api.Problem("cs", ensemble="binary", ratio=0.1, seed=3), options=api.Options(steps=2))
    assert out.image.shape == x.shape and out.model == "rim-3task"
    metrics = api.evaluate(out)  # cs is always a simulation: scored against the input
    assert set(metrics["input"]) == {"psnr", "ssim"} and np.isfinite(metrics["output"]["psnr"])


def test_return_steps(tiny_weights: Path) -> None:
    x = img((20, 22, 4), np.uint16)
    y, steps = rimcli.denoise(x, 10, steps=3, return_steps=True)
    assert len(steps) == 3
    assert all(s.shape == x.shape and s.dtype == np.uint16 for s in steps)
    np.testing.assert_array_equal(steps[-1], y)
    assert all((s[..., 3] == x[..., 3]).all() for s in steps)


def test_default_steps_come_from_the_manifest(tiny_weights: Path) -> None:
    out = api.run(img((16, 16)), api.Problem("denoise", sigma=5))
    assert out.n_steps == 3  # the tiny manifest's default_steps


def test_simulation_is_seeded_and_scored(tiny_weights: Path) -> None:
    x = img((24, 24))
    runs = [api.run(x, api.Problem("denoise", sigma=30, simulate=True, seed=7), options=api.Options(steps=2, return_steps=True))
            for _ in range(2)]
    np.testing.assert_array_equal(runs[0].image, runs[1].image)
    m = api.evaluate(runs[0])
    assert len(m["psnr_per_step"]) == 3 and m["psnr_per_step"][0] == m["input"]["psnr"]
    assert m["input"]["psnr"] < 25  # sigma 30 noise


def test_reference_must_match(tiny_weights: Path) -> None:
    out = api.run(img((20, 20, 3)), api.Problem("denoise", sigma=5), options=api.Options(steps=1))
    assert api.evaluate(out) is None
    assert api.evaluate(out, img((20, 20, 3)))["output"]["psnr"] > 0
    with pytest.raises(ValueError, match="reference is 21x20"):
        api.evaluate(out, img((20, 21, 3)))


def test_sigma_auto_and_estimate() -> None:
    flat = np.full((64, 64), 0.5) + np.random.default_rng(0).normal(0, 20 / 255, (64, 64))
    assert abs(rimcli.estimate_sigma(flat) - 20) < 2
    rgba = np.dstack([flat, flat, flat, np.ones_like(flat)])
    assert abs(rimcli.estimate_sigma(rgba) - 20) < 2  # alpha ignored


def test_sigma_auto_in_denoise(tiny_weights: Path) -> None:
    out = api.run(img((24, 24)), api.Problem("denoise", sigma="auto"), options=api.Options(steps=1))
    assert out.sigma_estimated and out.sigma > 0


@pytest.mark.parametrize(
    "problem, match",
    [
        (api.Problem("denoise", sigma=-1), "sigma must be >= 0"),
        (api.Problem("denoise", sigma=float("inf")), "sigma must be >= 0 and <= 255"),
        (api.Problem("denoise", sigma=float("nan")), "sigma must be >= 0 and <= 255"),
        (api.Problem("superres", sigma=1e9), "sigma must be >= 0 and <= 255"),
        (api.Problem("deblur", blur_sigma=float("inf")), "blur sigma must be > 0 and <= 100"),
        (api.Problem("superres", scale=5), "unsupported scale 5"),
        (api.Problem("deblur"), "exactly one"),
        (api.Problem("deblur", blur_sigma=1, kernel=np.ones((3, 3))), "exactly one"),
        (api.Problem("deblur", blur_sigma=0), "blur sigma must be > 0"),
        (api.Problem("cs", ensemble="foo"), "unknown ensemble"),
        (api.Problem("cs", ratio=0), "ratio"),
        (api.Problem("superres", sigma="auto"), "only available for denoising"),
        (api.Problem("denoise", sigma="auto", simulate=True), "simulation"),
        (api.Problem("inpaint"), "unknown task"),
    ],
)
def test_bad_problems(problem: api.Problem, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        problem.check()


def test_bad_arrays_and_options(tiny_weights: Path) -> None:
    with pytest.raises(ValueError, match="dtype"):
        rimcli.denoise(np.zeros((8, 8), np.int32))
    with pytest.raises(ValueError, match="shape"):
        rimcli.denoise(np.zeros((8, 8, 5), np.uint8))
    with pytest.raises(ValueError, match="steps must be >= 1"):
        rimcli.denoise(np.zeros((8, 8), np.uint8), steps=0)
    with pytest.raises(ValueError, match="self-ensemble must be one of 1, 2, 4, 8, got 3"):
        rimcli.superres(np.zeros((8, 8), np.uint8), self_ensemble=3)
    with pytest.raises(ValueError, match="operator 'cs' has no self-ensemble"):
        api.run(img((32, 32)), api.Problem("cs"), options=api.Options(steps=1, self_ensemble=2))


@pytest.mark.parametrize(
    "values, match",
    [([0.0, 255.0], r"in \[0, 1\], got values in \[0, 255\]"), ([-0.5, 0.5], r"in \[0, 1\]"),
     ([0.0, float("nan")], "inf or NaN"), ([0.0, float("inf")], "inf or NaN")],
)
def test_float_images_must_be_finite_and_in_0_1(tiny_weights: Path, values: list[float], match: str) -> None:
    x = img((8, 8, 3), np.float32)
    x[0, 0, 0], x[1, 1, 1] = values
    with pytest.raises(ValueError, match=match):
        rimcli.denoise(x, steps=1)
    with pytest.raises(ValueError, match=match):
        api.evaluate(api.run(img((8, 8, 3), np.float32), api.Problem("denoise"), options=api.Options(steps=1)), x)


def test_non_finite_weights_are_refused(tiny_weights: Path, tmp_path: Path) -> None:
    import torch

    from rimcli.model import RIM, RIMConfig
    from rimcli.weights import WeightsError, save_model

    net = RIM(RIMConfig(channels=1, hidden=8))
    with torch.no_grad():
        next(net.parameters()).view(-1)[0] = float("inf")
    save_model(net, tmp_path / "inf.safetensors")
    with pytest.raises(WeightsError, match="inf or NaN weights"):
        rimcli.load_model(tmp_path / "inf.safetensors")
    with pytest.raises(WeightsError, match="inf or NaN weights"):
        rimcli.denoise(img((8, 8)), model=net, steps=1)


def test_non_finite_result_is_an_error(tiny_weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def nan_restore(y, *args):  # what fp16 overflow or a diverged model produces
        return np.full((y.shape[2], y.shape[3], y.shape[1]), np.nan, np.float32), None, 0, "fp16"

    monkeypatch.setattr(api, "_reconstruct", nan_restore)
    with pytest.raises(RuntimeError, match="inf or NaN"):
        rimcli.denoise(img((8, 8)), steps=1)


def test_output_shape_is_known_before_the_work(tiny_weights: Path) -> None:
    cases = [(img((25, 28, 4)), api.Problem("superres", scale=3)),
             (img((25, 28)), api.Problem("superres", scale=3, simulate=True)),
             (img((25, 28, 3)), api.Problem("cs")), (img((25, 28, 2)), api.Problem("deblur", blur_sigma=1))]
    for x, problem in cases:
        assert api.output_shape(x, problem) == api.run(x, problem, options=api.Options(steps=1)).restored.shape


def test_tiling_calls_back_per_tile(tiny_weights: Path) -> None:
    calls: list[tuple[int, int]] = []
    options = api.Options(steps=1, tile=16, on_tile=lambda done, total: calls.append((done, total)))
    out = api.run(img((40, 36)), api.Problem("denoise", sigma=10), options=options)
    assert out.tile == 16 and calls[-1] == (9, 9) and out.image.shape == (40, 36)


def test_auto_tile_only_for_large_work() -> None:
    assert api.auto_tile(1, 512, 512, 64) == 0
    assert api.auto_tile(3, 4000, 3000, 64) == api.AUTO_TILE


def test_models_load_once(tiny_weights: Path) -> None:
    a = rimcli.load_model("rim-sr")
    assert rimcli.load_model("rim-sr") is a and a.channels == 3 and a.tasks == ["superres"]
    assert rimcli.load_model(task="denoise", channels=1).name == "rim-gray-denoise"
    assert rimcli.load_model(tiny_weights / "rim-sr.safetensors").entry is None


def test_missing_model_file(tiny_weights: Path) -> None:
    from rimcli.weights import WeightsError

    with pytest.raises(WeightsError, match="not found"):
        rimcli.load_model("nope.safetensors")
    with pytest.raises(WeightsError, match="unknown model"):
        rimcli.load_model("nope")


def test_import_stays_cheap() -> None:
    code = "import sys, rimcli, rimcli.api, rimcli.io; rimcli.denoise; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_rounding_step_of_a_saved_result() -> None:
    from rimcli.io import quantum

    assert quantum(np.uint8) == 1 / 255 and quantum(np.dtype(np.uint16)) == 1 / 65535
    assert quantum(np.float32) == 0.0


def test_outcome_says_what_precision_ran(tiny_weights: Path) -> None:
    """`Outcome.precision`: what was asked, except under the low-noise guard, which runs fp32."""
    from rimcli.api import Options, Problem, run

    x = img((16, 16))
    for sigma, asked, ran in ((25, "bf16", "bf16"), (2, "bf16", "fp32"), (25, "fp32", "fp32")):
        out = run(x, Problem("denoise", sigma=sigma), options=Options(steps=1, device="cpu", precision=asked))
        assert out.precision == ran
