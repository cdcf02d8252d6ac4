"""`rim benchmark`: protocol helpers, baselines and end-to-end runs on small generated sets.

The runs here use tiny untrained models and generated images, so they need no `../shared` and
take seconds; `test_protocol.py` runs the real sets."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import load_script
from rimcli import baselines
from rimcli import benchmark as bm
from rimcli.cli import _register, app
from rimcli.metrics import psnr, to_uint8_scale
from test_datasets import make_denoise_set, make_sr_set

_register()
runner = CliRunner()


def _run(args: list[str], code: int = 0):  # noqa: ANN202 - a click Result
    r = runner.invoke(app, ["benchmark", *args])
    assert r.exit_code == code, r.output
    return r


def _smooth(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A smooth test image on [0,1] (denoisers have something to gain on it)."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]] / max(shape[:2])
    rng = np.random.default_rng(seed)
    img = 0.5 + 0.3 * np.sin(6 * xx + rng.uniform(0, 3)) * np.cos(4 * yy)
    return np.repeat(img[..., None], shape[2], axis=2) if len(shape) == 3 else img


# ---------------------------------------------------------------- protocol helpers


def test_add_noise_is_seeded_and_scaled() -> None:
    clean = np.full((8, 9), 0.5)
    a, b = bm.add_noise(clean, 25, seed=3), bm.add_noise(clean, 25, seed=3)
    assert np.array_equal(a, b) and not np.array_equal(a, bm.add_noise(clean, 25, seed=4))
    expected = 0.5 + 25 / 255 * np.random.default_rng(3).standard_normal((8, 9))
    assert np.allclose(a, expected, atol=0, rtol=0)
    # the same draw, scaled, for every sigma; no clipping without --quantize
    assert np.allclose(bm.add_noise(clean, 50, seed=3) - 0.5, 2 * (a - 0.5))
    q = bm.add_noise(np.zeros((50, 50)), 25, seed=0, quantize=True)
    assert q.min() == 0 and np.allclose(q * 255, np.round(q * 255))
    assert bm.add_noise(np.zeros((50, 50)), 25, seed=0).min() < 0


def test_variant_strings_state_the_protocol() -> None:
    assert bm.denoise_variant(25, 0, False).startswith("awgn sigma=25 seed=0+i float (not quantised)")
    assert "8-bit quantised" in bm.denoise_variant(15, 7, True)
    assert "shave 3" in bm.sr_variant(3, 0) and "rounded" in bm.sr_variant(3, 0)
    assert "ratio=0.125" in bm.cs_variant("binary", 0.125, 0.01, 0, 10)


def test_sample_patches_seeded() -> None:
    imgs = [np.arange(40 * 50, dtype=np.float64).reshape(40, 50) % 256, np.full((33, 60), 255.0)]
    p = bm.sample_patches(imgs, 20, seed=1)
    assert p.shape == (20, 32, 32) and p.dtype == np.float32
    assert np.array_equal(p, bm.sample_patches(imgs, 20, seed=1))
    assert not np.array_equal(p, bm.sample_patches(imgs, 20, seed=2))
    assert 0 <= p.min() and p.max() <= 1


# ---------------------------------------------------------------- baselines


def test_tv_weight_rule() -> None:
    assert baselines.tv_weight(25) == pytest.approx(0.80 * 25 / 255)
    assert baselines.tv_weight(5) == pytest.approx(0.70 * 5 / 255)  # held constant outside 15..50
    assert baselines.tv_weight(37.5) == pytest.approx(0.875 * 37.5 / 255)


@pytest.mark.parametrize("name", ["nlm", "tv", "wavelet", "bm3d"])
@pytest.mark.parametrize("shape", [(48, 48), (40, 44, 3)])
def test_denoisers_improve_a_noisy_image(name: str, shape: tuple[int, ...]) -> None:
    if name == "bm3d":
        pytest.importorskip("bm3d")
    clean = _smooth(shape)
    noisy = bm.add_noise(clean, 25, seed=0)
    out = baselines.denoiser(name)(noisy, 25)
    assert out.shape == clean.shape
    assert psnr(to_uint8_scale(out), clean * 255) > psnr(to_uint8_scale(noisy), clean * 255) + 3


@pytest.mark.parametrize("name", ["wiener", "bm3d"])
@pytest.mark.parametrize("shape", [(48, 56), (40, 44, 3)])
def test_deblurrers_sharpen_a_blurred_image(name: str, shape: tuple[int, ...]) -> None:
    if name == "bm3d":
        pytest.importorskip("bm3d")
    from rimcli.tasks import deblur_operator

    clean = _smooth(shape) + 0.15 * (np.indices(shape[:2]).sum(0) % 8 < 4)[(...,) + (None,) * (len(shape) - 2)]
    op = deblur_operator(1.5)
    blurred = bm.add_noise(bm.blur_image(clean, op), 1, seed=0)
    had_trapz = hasattr(np, "trapz")
    out = baselines.deblurrer(name)(blurred.copy(), 1.0, op.kernel.double().numpy())
    assert out.shape == clean.shape
    assert psnr(to_uint8_scale(out), clean * 255) > psnr(to_uint8_scale(blurred), clean * 255) + 1
    assert hasattr(np, "trapz") == had_trapz  # lent to bm4d for the call only
    # registered, not shifted: the crop back from the reflected margin is exact
    err = [np.mean((out - np.roll(clean, d, axis=a)) ** 2) for a in (0, 1) for d in (-1, 1)]
    assert np.mean((out - clean) ** 2) < min(err)


def test_unknown_deblurring_baseline() -> None:
    with pytest.raises(ValueError, match="unknown deblurring baseline"):
        baselines.deblurrer("nlm")


def test_blur_image_is_the_operator_the_rim_is_given() -> None:
    import torch

    from rimcli.tasks import deblur_operator

    img = np.random.default_rng(0).random((20, 24, 3))
    op = deblur_operator(1.2)
    want = op.A(torch.from_numpy(img).permute(2, 0, 1)[None].float())[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(bm.blur_image(img, op), want, atol=1e-6)
    np.testing.assert_allclose(bm.blur_image(img[..., 0], op), want[..., 0], atol=1e-6)
    assert bm.blur_image(img, op).mean() == pytest.approx(img.mean(), abs=0.01)  # a kernel of sum 1


def test_upscalers() -> None:
    from rimcli.resize import imresize_np

    lr = (np.random.default_rng(0).integers(0, 256, (10, 12, 3))).astype(np.uint8)
    assert np.array_equal(baselines.upscaler("bicubic")(lr, 3), imresize_np(lr.astype(np.float64), 3))
    assert baselines.upscaler("pil")(lr, 3).shape == (30, 36, 3)
    assert baselines.upscaler("pil")(lr[..., 0], 2).shape == (20, 24)
    with pytest.raises(ValueError):
        baselines.upscaler("lanczos")


def test_missing_bm3d_is_one_clear_line(tiny_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "bm3d", None)  # `import bm3d` now raises ImportError
    with pytest.raises(baselines.MissingBaseline):
        baselines.denoiser("bm3d")
    assert not baselines.bm3d_available()
    data = make_denoise_set(tmp_path / "bsd68")
    r = _run(["bsd68", "--sigma", "25", "--baselines", "bm3d", "--data", str(data)], code=2)
    assert r.stderr.strip() == "error: the bm3d baseline needs the optional `bm3d` package: pip install 'rimcli[bm3d]'"
    # by default the denoising baselines just leave bm3d out when it is missing
    r = _run(["bsd68", "--sigma", "25", "--steps", "1", "--max-steps", "1", "--data", str(data)])
    assert "wavelet" in r.stdout and "bm3d" not in r.stdout


# ---------------------------------------------------------------- end to end on generated sets


def test_denoise_benchmark_writes_every_output(tiny_weights: Path, tmp_path: Path) -> None:
    data = make_denoise_set(tmp_path / "bsd68", n=3)
    out = tmp_path / "out"
    r = _run(["bsd68", "--sigma", "15,25", "--limit", "2", "--baselines", "tv,wavelet", "--data", str(data),
              "--out", str(out), "--json", str(tmp_path / "elsewhere" / "r.json"), "--seed", "5"])
    assert "RIM rim-gray-denoise (T=3)" in r.stdout and "wavelet" in r.stdout  # the summary table, on stdout
    names = sorted(p.name for p in out.iterdir())
    assert names == ["convergence_sigma15.png", "convergence_sigma25.png", "results.csv", "results.json", "results.md"]
    rep = json.loads((out / "results.json").read_text())
    assert json.loads((tmp_path / "elsewhere" / "r.json").read_text())["runs"] == rep["runs"]
    manifest = {m["name"]: m for m in json.loads((tiny_weights / "manifest.json").read_text())["models"]}
    (model,) = rep["models"]
    assert model["sha256"] == manifest["rim-gray-denoise"]["sha256"]
    assert (model["steps"], model["max_steps"]) == (3, 6)  # 2x the steps when no training horizon is recorded
    assert rep["protocol"]["seed"] == 5 and rep["protocol"]["quantize"] is False
    assert rep["machine"]["device"] == "cpu" and rep["machine"]["torch"] and rep["date"].endswith("+00:00")
    assert rep["command"].startswith("rim benchmark bsd68 --sigma 15,25 --model rim-gray-denoise")
    run = rep["runs"][1]
    assert run["setting"] == {"sigma": 25.0} and run["variant"].startswith("awgn sigma=25 seed=5+i float")
    assert [im["name"] for im in run["images"]] == ["01", "02"] and [im["seed"] for im in run["images"]] == [5, 6]
    for im in run["images"]:
        rim = im["methods"]["rim-gray-denoise"]
        assert len(rim["psnr_steps"]) == 6
        # the timed headline run and the curve run agree at the headline step
        assert rim["psnr_steps"][2] == pytest.approx(rim["psnr"], abs=1e-9)
        assert rim["seconds"] > 0
    methods = [s["method"] for s in run["summary"]]
    assert methods == ["noisy", "rim-gray-denoise", "tv", "wavelet"]
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 2 * 2 * 4 and {r["method"] for r in rows} == set(methods)
    md = (out / "results.md").read_text()
    assert "| method | PSNR (dB) | SSIM | s/image |" in md and "awgn sigma=15 seed=5+i" in md and "- machine:" in md


def test_colour_denoise_with_gray_and_colour_models(tiny_weights: Path, tmp_path: Path) -> None:
    data = make_denoise_set(tmp_path / "cbsd68", n=1, colour=True)
    r = _run(["cbsd68", "--sigma", "50", "--quantize", "--baselines", "none", "--model", "rim-rgb-denoise",
              "--model", "rim-gray-denoise", "--max-steps", "3", "--data", str(data), "--json", str(tmp_path / "r.json")])
    rep = json.loads((tmp_path / "r.json").read_text())
    assert "8-bit quantised" in rep["runs"][0]["variant"]
    assert [m["label"] for m in rep["models"]] == ["rim-rgb-denoise", "rim-gray-denoise"]
    (im,) = rep["runs"][0]["images"]
    assert im["shape"] == [40, 48, 3] and set(im["methods"]) == {"noisy", "rim-rgb-denoise", "rim-gray-denoise"}
    assert "noisy input" in r.stdout


def test_deblur_benchmark_on_a_denoising_set(tiny_weights: Path, tmp_path: Path) -> None:
    from rimcli.datasets import denoise_images
    from rimcli.tasks import deblur_operator

    data = make_denoise_set(tmp_path / "cbsd68", n=2, colour=True)
    out = tmp_path / "out"
    r = _run(["cbsd68", "--blur", "1,2.5", "--quantize", "--baselines", "wiener", "--max-steps", "4", "--data", str(data),
              "--out", str(out), "--seed", "3"])
    assert "blurred input" in r.stdout and "RIM rim-rgb-deblur (T=3)" in r.stdout
    rep = json.loads((out / "results.json").read_text())
    assert rep["task"] == "deblur" and rep["protocol"]["blur"] == [1.0, 2.5] and rep["protocol"]["quantize"] is True
    assert rep["command"].startswith("rim benchmark cbsd68 --blur 1,2.5 --sigma 2 --quantize --model rim-rgb-deblur")
    assert "unsupervised_wiener" in rep["baselines"]["wiener"]
    assert [run["label"] for run in rep["runs"]] == ["sigma=2 blur=1", "sigma=2 blur=2.5"]
    run = rep["runs"][1]
    assert run["setting"] == {"blur": 2.5, "sigma": 2.0}
    assert run["variant"].startswith("gaussian blur std=2.5 px (17x17 kernel, reflected borders) then awgn sigma=2 "
                                     "seed=3+i 8-bit")
    assert [s["method"] for s in run["summary"]] == ["blurred", "rim-rgb-deblur", "wiener"]
    # the input row scores exactly the protocol's measurement: blurred by the RIM's operator, then noised
    for i, (im, (_, clean_u8)) in enumerate(zip(run["images"], denoise_images(data, 3), strict=True)):
        y = bm.add_noise(bm.blur_image(clean_u8 / 255, deblur_operator(2.5)), 2, seed=3 + i, quantize=True)
        assert im["methods"]["blurred"]["psnr"] == pytest.approx(psnr(to_uint8_scale(y), clean_u8.astype(float)), abs=1e-9)
        assert len(im["methods"]["rim-rgb-deblur"]["psnr_steps"]) == 4
        # the baseline got that same measurement, kernel and sigma
        want = psnr(to_uint8_scale(baselines.wiener_deblur(y, 2.0, deblur_operator(2.5).kernel.double().numpy())),
                    clean_u8.astype(float))
        assert im["methods"]["wiener"]["psnr"] == pytest.approx(want, abs=1e-9)
    assert {p.name for p in out.glob("*.png")} == {"convergence_sigma2_blur1.png", "convergence_sigma2_blur2.5.png"}
    assert "# cbsd68 deblurring" in (out / "results.md").read_text()
    _run(["set5", "--blur", "1", "--data", str(data)], code=2)
    for bad in ("0", "nan", "inf", "101"):
        assert "--blur needs stds > 0" in _run(["cbsd68", "--blur", bad, "--data", str(data)], code=2).stderr
    assert "finite sigma" in _run(["cbsd68", "--blur", "1", "--sigma", "nan", "--data", str(data)], code=2).stderr
    assert "larger than the smallest image" in _run(["cbsd68", "--blur", "9", "--data", str(data)], code=2).stderr
    assert "unknown deblurring baseline" in _run(["cbsd68", "--blur", "1", "--baselines", "nlm", "--data", str(data)],
                                                 code=2).stderr
    assert "not trained for deblur" in _run(["cbsd68", "--blur", "1", "--model", "rim-rgb-denoise", "--baselines",
                                             "none", "--data", str(data)], code=2).stderr


def test_deblur_benchmark_with_kernel_files(tiny_weights: Path, tmp_path: Path) -> None:
    """--kernel: any blur (here camera shake) under the same protocol, beside a Gaussian --blur."""
    from rimcli.datasets import denoise_images
    from rimcli.tasks import kernel_operator

    data = make_denoise_set(tmp_path / "cbsd68", n=2, colour=True)
    shake = tmp_path / "shake.npy"
    k = np.zeros((9, 9))
    k[4, 2:9], k[0:5, 2] = 2.0, 2.0  # an L: no symmetry hides a flipped kernel; unnormalised on purpose
    np.save(shake, k)
    _run(["cbsd68", "--blur", "1", "--kernel", str(shake), "--baselines", "wiener", "--max-steps", "2",
              "--data", str(data), "--json", str(tmp_path / "r.json")])
    rep = json.loads((tmp_path / "r.json").read_text())
    assert [run["label"] for run in rep["runs"]] == ["sigma=2 blur=1", "sigma=2 kernel=shake.npy"]
    assert rep["command"].startswith(f"rim benchmark cbsd68 --blur 1 --kernel {shake} --sigma 2 --model rim-rgb-deblur")
    run = rep["runs"][1]
    assert run["setting"] == {"kernel": "shake.npy", "sigma": 2.0}
    assert run["variant"].startswith("kernel file shake.npy (9x9, normalised float32 sha256 ")
    op = kernel_operator(shake)
    for i, (im, (_, clean_u8)) in enumerate(zip(run["images"], denoise_images(data, 3), strict=True)):
        y = bm.add_noise(bm.blur_image(clean_u8 / 255, op), 2, seed=i)
        assert im["methods"]["blurred"]["psnr"] == pytest.approx(psnr(to_uint8_scale(y), clean_u8.astype(float)), abs=1e-9)
        want = psnr(to_uint8_scale(baselines.wiener_deblur(y, 2.0, op.kernel.double().numpy())), clean_u8.astype(float))
        assert im["methods"]["wiener"]["psnr"] == pytest.approx(want, abs=1e-9)
        assert want > im["methods"]["blurred"]["psnr"] + 1  # the baseline undid the blur it was told of
    (tmp_path / "bad.npy").write_text("not an array")
    np.save(tmp_path / "even.npy", np.ones((4, 4)))
    np.save(tmp_path / "huge.npy", np.ones((101, 101)))
    for bad, why in [("bad.npy", "not a readable .npy"), ("even.npy", "even.npy: blur kernel must be 2-D with odd sides"),
                     ("missing.png", "missing.png"),
                     ("huge.npy", "larger than the smallest image")]:
        err = _run(["cbsd68", "--kernel", str(tmp_path / bad), "--data", str(data)], code=2).stderr
        assert why in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "at least one kernel" in _run(["cbsd68", "--kernel", ",", "--data", str(data)], code=2).stderr
    (tmp_path / "other").mkdir()
    np.save(tmp_path / "other" / "shake.npy", k)
    assert "distinct names" in _run(["cbsd68", "--kernel", f"{shake},{tmp_path / 'other' / 'shake.npy'}", "--data",
                                     str(data)], code=2).stderr
    assert "deblur a denoising set" in _run(["set5", "--kernel", str(shake), "--data", str(data)], code=2).stderr


def test_sr_benchmark_with_a_gray_image(tiny_weights: Path, tmp_path: Path) -> None:
    from rimcli.benchmark import sr_psnr
    from rimcli.datasets import sr_pairs

    data = make_sr_set(tmp_path / "Set14", scales=(2, 3))
    out = tmp_path / "out"
    _run(["set14", "--scale", "2,3", "--data", str(tmp_path), "--out", str(out)])
    rep = json.loads((out / "results.json").read_text())
    assert [run["label"] for run in rep["runs"]] == ["x2", "x3"]
    assert {p.name for p in out.glob("*.png")} == {"convergence_x2.png", "convergence_x3.png"}
    run = rep["runs"][1]
    assert [s["method"] for s in run["summary"]] == ["rim-sr", "bicubic", "pil"]
    for im, (_, hr, lr) in zip(run["images"], sr_pairs(data, 3), strict=True):
        up = np.clip(np.round(baselines.bicubic_matlab(lr, 3)), 0, 255)
        assert im["methods"]["bicubic"]["psnr"] == pytest.approx(sr_psnr(up, hr, 3), abs=1e-9)
        assert len(im["methods"]["rim-sr"]["psnr_steps"]) == 6
    _run(["set14", "--scale", "4", "--data", str(tmp_path)], code=2)  # no x4 folder: a clear error
    _run(["set14", "--sigma", "1,2", "--data", str(tmp_path)], code=2)


def test_projections_compare_models_in_one_run(tiny_weights: Path, tmp_path: Path) -> None:
    import torch

    from rimcli.model import RIM, RIMConfig
    from rimcli.weights import save_model

    torch.manual_seed(0)
    gdn = tmp_path / "gdn-ablation.safetensors"
    save_model(RIM(RIMConfig(channels=1, hidden=8, arch="gdn")), gdn, metadata={"default_steps": 2})
    data = make_denoise_set(tmp_path / "bsd68", n=2, shape=(40, 50))
    out = tmp_path / "out"
    r = _run(["projections", "--patches", "6", "--batch", "4", "--ensembles", "gaussian,fourier", "--ratios", "1/8",
              "--max-steps", "3", "--model", "rim-3task", "--model", str(gdn), "--data", str(data), "--out", str(out)])
    assert "pseudo-inverse" in r.stdout
    rep = json.loads((out / "results.json").read_text())
    assert [run["label"] for run in rep["runs"]] == ["gaussian 1/8", "fourier 1/8"]
    assert [(m["label"], m["steps"], m["arch"]) for m in rep["models"]] == [("rim-3task", 3, "rim"), ("gdn-ablation", 2, "gdn")]
    assert rep["protocol"]["sigma"] == pytest.approx(0.01) and rep["protocol"]["patches"] == 6
    for run in rep["runs"]:
        rims = [s for s in run["summary"] if s["kind"] == "rim"]
        assert [len(s["psnr_steps"]) for s in rims] == [3, 3]
        assert all(len(s["psnr_steps_std"]) == 3 for s in rims)
        assert rims[1]["psnr"] == pytest.approx(rims[1]["psnr_steps"][1])  # headline at its own T=2
        assert run["summary"][-1]["method"] == "pinv" and np.isfinite(run["summary"][-1]["psnr"])
    assert {p.name for p in out.glob("*.png")} == {"convergence_gaussian.png", "convergence_fourier.png"}
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 2 * (2 * 3 + 1)
    assert "PSNR (dB) by RIM step" in (out / "results.md").read_text()


@pytest.mark.parametrize(("args", "message"), [
    (["urban100"], "unknown benchmark"),
    (["bsd68", "--sigma", "x"], "bad sigma"),
    (["bsd68", "--baselines", "bicubic"], "unknown denoising baseline"),
    (["set5", "--baselines", "bm3d"], "unknown super-resolution baseline"),
    (["projections", "--ratios", "2"], "ratios must lie in"),
    (["projections", "--ensembles", "sparse"], "unknown ensemble"),
    (["projections", "--baselines", "bm3d"], "unknown projections baseline"),
])
def test_bad_arguments_are_one_line(tiny_weights: Path, args: list[str], message: str) -> None:
    r = _run(args, code=2)
    assert message in r.stderr and r.stderr.count("\n") == 1


def test_a_self_ensemble_is_its_own_row_and_not_the_files_figure(tiny_weights: Path, tmp_path: Path) -> None:
    data = make_denoise_set(tmp_path / "bsd68", n=1)
    out = tmp_path / "runs" / "ens"
    _run(["bsd68", "--sigma", "25", "--baselines", "none", "--self-ensemble", "2", "--model", "rim-gray-denoise",
          "--model", "rim-3task", "--data", str(data), "--out", str(out)])
    rep = json.loads((out / "results.json").read_text())
    assert [(m["label"], m["self_ensemble"]) for m in rep["models"]] == [("rim-gray-denoise+se2", 2), ("rim-3task+se2", 2)]
    assert "--self-ensemble 2" in rep["command"]
    assert [s["method"] for s in rep["runs"][0]["summary"]] == ["noisy", "rim-gray-denoise+se2", "rim-3task+se2"]
    _run(["bsd68", "--sigma", "25", "--baselines", "none", "--data", str(data), "--out", str(tmp_path / "runs" / "a")])
    found = load_script("record_metrics").collect(tmp_path / "runs")  # the plain run's figures, never the ensemble's
    gray = {m["name"]: m["sha256"] for m in json.loads((tiny_weights / "manifest.json").read_text())["models"]}
    assert set(found) == {gray["rim-gray-denoise"]}  # rim-3task ran only as an ensemble
    assert "--self-ensemble" not in found[gray["rim-gray-denoise"]]["bsd68"]["sigma=25"]["command"]
    for args, message in ((["projections", "--self-ensemble", "2", "--data", str(data)], "the cs task has no self-ensemble"),
                          (["bsd68", "--self-ensemble", "3", "--data", str(data)], "self-ensemble must be one of")):
        r = _run(args, code=2)
        assert message in r.stderr and r.stderr.count("\n") == 1


def test_precisions_compare_in_one_report_and_only_fp32_is_the_files_figure(tiny_weights: Path, tmp_path: Path) -> None:
    """`--precision fp32,bf16` runs each model both ways (bf16 labelled +bf16, close to fp32); the
    manifest's figures (record_metrics) come from the fp32 run only."""
    data = make_denoise_set(tmp_path / "bsd68", n=1)
    out = tmp_path / "runs" / "prec"
    _run(["bsd68", "--sigma", "25", "--baselines", "none", "--precision", "fp32,bf16", "--model", "rim-gray-denoise",
          "--max-steps", "2", "--data", str(data), "--out", str(out)])
    rep = json.loads((out / "results.json").read_text())
    assert [(m["label"], m["precision"]) for m in rep["models"]] == [("rim-gray-denoise", "fp32"),
                                                                      ("rim-gray-denoise+bf16", "bf16")]
    assert "--model rim-gray-denoise --steps" not in rep["command"] and rep["command"].count("--model") == 1
    assert "--precision fp32,bf16" in rep["command"]
    fp32, bf16 = (s["psnr"] for s in rep["runs"][0]["summary"] if s["kind"] == "rim")
    assert abs(fp32 - bf16) < 0.1
    found = load_script("record_metrics").collect(tmp_path / "runs")
    assert [f["psnr"] for f in found[rep["models"][0]["sha256"]]["bsd68"].values()] == [round(fp32, 4)]
    text, table = load_script("make_benchmarks_md").build(tmp_path / "runs")  # its own table, not the summary's
    assert "## bf16 against fp32" in text and "| bsd68 | sigma=25 | rim-gray-denoise (T=" in text
    summary = text.split("## Summary")[1].split("## bf16 against fp32")[0]
    assert "_No quality benchmarks yet._" in table and "+bf16" not in summary and "rim-gray" not in summary
    for precision in ("int8", "fp32,", ""):
        r = _run(["bsd68", "--precision", precision, "--data", str(data)], code=2)
        assert "precision must be one or more of fp32, bf16, fp16" in r.stderr and r.stderr.count("\n") == 1


def test_model_for_the_wrong_task(tiny_weights: Path, tmp_path: Path) -> None:
    data = make_denoise_set(tmp_path / "bsd68")
    r = _run(["bsd68", "--model", "rim-sr", "--data", str(data)], code=2)
    assert "not trained for denoise" in r.stderr


def test_an_exported_file_benchmarks_by_path_without_steps(tmp_path: Path) -> None:
    """Issue 13's "done when": `rim export` writes a self-describing file, and `rim benchmark
    --model FILE` (a copy, away from any manifest) takes its headline steps (the file's
    default_steps) and curve length (twice its training horizon) from the file: no --steps."""
    import shutil

    from rimcli.export import export_run
    from rimcli.training import TrainConfig, train

    run = train(TrainConfig.from_dict(dict(
        task="denoise", channels=1, data=str(make_denoise_set(tmp_path / "train", n=3)), out=str(tmp_path / "run"),
        patch=24, batch=2, iters=1, steps=2, hidden=8, val_split=1, val_images=1, val_crop=24, val_every=1, warmup=1)))
    entry = export_run(run, "tiny-export", weights_dir=tmp_path / "w", default_steps=3)
    file = tmp_path / "elsewhere" / "copy.safetensors"
    file.parent.mkdir()
    shutil.copy(tmp_path / "w" / entry.file, file)

    (spec,) = bm.load_models([str(file)], "denoise", 1, steps=None, max_steps=None)
    assert (spec.label, spec.steps, spec.training_steps, spec.max_steps) == ("tiny-export", 3, 2, 4)
    assert spec.sha256 == entry.sha256
    with pytest.raises(bm.BenchmarkError, match="not trained for superres"):
        bm.load_models([str(file)], "superres", 3, steps=None, max_steps=None)

    out = tmp_path / "out"
    _run(["bsd68", "--model", str(file), "--sigma", "25", "--baselines", "none",
          "--data", str(make_denoise_set(tmp_path / "bsd68", n=1)), "--out", str(out)])
    rep = json.loads((out / "results.json").read_text())
    (m,) = rep["models"]
    assert (m["label"], m["steps"], m["max_steps"], m["sha256"]) == ("tiny-export", 3, 4, entry.sha256)
    (im,) = rep["runs"][0]["images"]
    assert len(im["methods"]["tiny-export"]["psnr_steps"]) == 4
    assert "--steps" not in rep["command"]


# ---------------------------------------------------------------- scripts


def test_make_benchmarks_md(tiny_weights: Path, tmp_path: Path) -> None:
    mk = load_script("make_benchmarks_md")
    text, table = mk.build(tmp_path / "empty")
    assert "No benchmark results yet" in text and "rim benchmark bsd68" in text
    data = make_denoise_set(tmp_path / "bsd68")
    _run(["bsd68", "--sigma", "25", "--baselines", "tv", "--max-steps", "3", "--data", str(data),
          "--out", str(tmp_path / "runs" / "bsd68")])
    text, table = mk.build(tmp_path / "runs")
    assert "| bsd68 | sigma=25 | 2 of 68 (partial) | rim-gray-denoise (T=3)" in text and "| tv " in text
    assert "partial" not in table  # the README's table keeps whole-set runs only
    assert "## bsd68 (bsd68)" in text and "- command: `rim benchmark bsd68" in text and "### bsd68 sigma=25" in text
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{mk.START}\nold table\n{mk.END}\nrest\n")
    assert mk.update_readme(readme, table)
    assert readme.read_text() == f"intro\n{mk.START}\n{table}\n{mk.END}\nrest\n"
    readme.write_text("no markers\n")
    assert not mk.update_readme(readme, table) and readme.read_text() == "no markers\n"
    # --update: what was re-run replaces its row and section; everything else stays
    old_row = "| bsd68 | sigma=25 | 68 | rim-gray-denoise (T=9) 1.00 / 0.1000 | - | 9.99 |"
    other_row = "| bsd68 | sigma=25 | 68 | rim-3task (T=8) 2.00 / 0.2000 | - | 9.99 |"  # another model: kept
    kept_row = "| set5 | x2 | 5 | rim-sr (T=6) 35.97 / 0.9495 | bicubic 33.65 / 0.9293 | 4.36 |"
    header = table.split("\n")[:2]
    existing = "\n".join([mk.INTRO, "## Summary", "", *header, old_row, other_row, kept_row, "",
                          "## bsd68 (bsd68)", "", "old section", "", "## set5 (set5)", "", "kept section", ""])
    merged, rows = mk.update(existing, tmp_path / "runs")
    assert old_row not in merged and kept_row in merged and "kept section" in merged and "old section" not in merged
    assert other_row in merged and merged.index("| rim-gray-denoise (T=3)") < merged.index(other_row)
    assert merged.count("| bsd68 | sigma=25 |") == 2 and merged.count("## bsd68 (bsd68)") == 1
    assert "- command: `rim benchmark bsd68" in merged and merged.index("| bsd68 |") < merged.index("| set5 |")
    readme.write_text(f"intro\n{mk.START}\n" + "\n".join([*header, kept_row]) + f"\n{mk.END}\nrest\n")
    assert mk.update_readme_rows(readme, ["| bsd68 | sigma=50 | 68 | new |  |  |", kept_row.replace("35.97", "36.50")])
    assert readme.read_text().count("| set5 | x2 |") == 1 and "36.50" in readme.read_text()
    assert "| bsd68 | sigma=50 | 68 | new |" in readme.read_text() and readme.read_text().endswith(f"{mk.END}\nrest\n")


def test_summary_names_a_second_file_under_one_name_by_its_sha() -> None:
    mk = load_script("make_benchmarks_md")
    rim = {"kind": "rim", "psnr": 30.0, "ssim": 0.9, "seconds": 1.0, "steps": 4}
    rep = {"benchmark": "bsd68", "protocol": {}, "runs": [{"label": "sigma=25", "images": ["a"] * 68, "summary": [
        {**rim, "method": "rim-gray-denoise"}, {**rim, "method": "rim-gray-denoise#2"}]}],
        "models": [{"label": "rim-gray-denoise", "sha256": "a" * 64},
                   {"label": "rim-gray-denoise#2", "sha256": "0123456789" + "b" * 54}]}
    rows = mk.headline([(Path("r.json"), rep)], bundled={"rim-gray-denoise": "a" * 64}).split("\n")[2:]
    assert [r.split(" | ")[3] for r in rows] == ["rim-gray-denoise (T=4) 30.00 / 0.9000",
                                                  "rim-gray-denoise#2 (01234567, T=4) 30.00 / 0.9000"]
    assert len({mk._row_key(r) for r in rows}) == 2
    # a row kept from a file since replaced under its name (a self-ensemble's too) names that file
    rep["runs"][0]["summary"][0]["method"] = rep["models"][0]["label"] = "rim-gray-denoise+se8"
    rows = mk.headline([(Path("r.json"), rep)], bundled={"rim-gray-denoise": "c" * 64}).split("\n")[2:]
    assert rows[0].split(" | ")[3] == "rim-gray-denoise+se8 (aaaaaaaa, T=4) 30.00 / 0.9000"
    assert mk.headline([(Path("r.json"), rep)], bundled={}).split("\n")[2].split(" | ")[3].startswith(
        "rim-gray-denoise+se8 (T=4)")  # a name not bundled: nothing to tell apart


def test_bench_speed_script(tiny_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    """It times `rim`'s own CPU precision (here, as on a CPU with native bf16, bf16) and then fp32,
    for the RIM and the yardstick alike."""
    import rimcli.inference as inference

    monkeypatch.setattr(inference, "native_bf16", lambda: True)
    speed = load_script("bench_speed")
    out = tmp_path / "speed.json"
    monkeypatch.setattr(sys, "argv", ["bench_speed.py", "--width", "40", "--height", "32", "--repeats", "1",
                                      "--baselines", "nlm", "--device", "cpu", "--json", str(out)])
    speed.main()
    md = capsys.readouterr().out
    assert "Seconds per 40x32 image" in md and "| RIM, default steps |" in md and "| NL-means |" in md
    rep = json.loads(out.read_text())
    assert {(r["image"], r["method"]) for r in rep["cpu"]} >= {("gray", "NL-means"), ("RGB", "RIM, default steps")}
    assert rep["gpu"] == [] and rep["machine"]["cpu"]
    timed = {(r["image"], r["method"]): r.get("precision") for r in rep["cpu"]}
    assert timed[("gray", "RIM, default steps")] == "bf16" and timed[("gray", "RIM, default steps, fp32")] == "fp32"
    assert timed[("RGB", "DnCNN-sized conv net (yardstick)")] == "bf16"
    assert timed[("RGB", "DnCNN-sized conv net (yardstick), fp32")] == "fp32"
    assert mk_section(tmp_path, out)
    argv = [*sys.argv[1:], "--steps", "2"]  # other steps than the files': the table says which
    monkeypatch.setattr(sys, "argv", ["bench_speed.py", *argv])
    speed.main()
    assert "| RIM, --steps 2 |" in capsys.readouterr().out and "default steps" not in out.read_text()


def test_bench_train_times_the_first_cell_beside_todays(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 14's yardstick: the cell as first landed (read from git) on the same batches."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    if subprocess.run(["git", "-C", str(root), "cat-file", "-e", "bdf1c0c"], capture_output=True).returncode:
        pytest.skip("not a git checkout with the first commit")
    monkeypatch.setattr(sys, "argv", ["bench_train.py", "--hidden", "8", "--patch", "16", "--batch", "2", "--steps", "2",
                                      "--iters", "1", "--warmup", "0", "--amp", "bf16", "--first-cell", "bdf1c0c"])
    load_script("bench_train").main()
    out = capsys.readouterr().out
    assert "| train step | bf16 | off | off |" in out and "| first cell (bdf1c0c) | off | off | off |" in out
    assert "x the patches/s of the first cell's plain fp32 NCHW step" in out


def mk_section(tmp_path: Path, speed_json: Path) -> bool:
    """make_benchmarks_md picks the speed table up."""
    folder = tmp_path / "runs"
    folder.mkdir(exist_ok=True)
    (folder / "speed.json").write_text(speed_json.read_text())
    text, _ = load_script("make_benchmarks_md").build(folder)
    return "## Speed" in text and "| RIM, default steps |" in text


def test_headline_groups_settings_that_share_a_name() -> None:
    from rimcli.benchmark_report import headline

    f = lambda v: {"psnr": v}  # noqa: E731
    bench = {"bsd68": {"sigma=15": f(30.444), "sigma=25": f(28.2)},
             "projections": {"gaussian 1/2": f(29.24), "gaussian 1/4": f(27.7), "fourier 1/2": f(25.3)},
             "b100": {"x2": f(31.25), "x3": f(28.36)}}
    assert headline(bench) == ("bsd68 sigma 15,25: 30.44/28.20 dB; "
                               "projections gaussian 1/2,1/4: 29.24/27.70, fourier 1/2: 25.30 dB; "
                               "b100 x2/x3: 31.25/28.36 dB")


def test_gpu_speed_section_says_which_steps_were_timed() -> None:
    """Files from gpu_recipe's speed stage before 2026-11-24's third window timed each RIM at its
    training horizon; later ones at its default steps, and name its width."""
    mk = load_script("make_benchmarks_md")
    rows = [{"model": "rim-x", "steps": 4, "precision": p, "megapixels_per_s": v} for p, v in (("fp32", 10.0), ("bf16", 15.0))]
    old = "\n".join(mk.gpu_speed(Path("g/speed.json"), {"image": [64, 64], "device": "GPU", "rows": rows}))
    assert "its training horizon" in old and "| rim-x | 4 | 10.0 | 15.0 | 1.50x |" in old
    new = {"image": [64, 64], "device": "GPU", "rim_steps": "default", "rows": [{**r, "hidden": 96} for r in rows]}
    text = "\n".join(mk.gpu_speed(Path("g/speed.json"), new))
    assert "its default steps, as shipped" in text and "| rim-x (hidden 96) | 4 | 10.0 | 15.0 | 1.50x |" in text
