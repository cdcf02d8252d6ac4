"""End to end: the real `rim` restore commands on tiny images made here, with tiny untrained models."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from typer.testing import CliRunner

import rimcli.cli
from rimcli.cli import common
from rimcli.io import read_image, write_image
from rimcli.weights import read_manifest

rimcli.cli._register()
RNG = np.random.default_rng(2)
H, W = 40, 48


def rand(shape: tuple[int, ...], dtype: type = np.uint8) -> np.ndarray:
    return RNG.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)


def rim(*args: object) -> tuple[int, str, str]:
    """Run `rim ARGS`; returns (exit code, stdout, stderr) and checks no traceback ever shows."""
    result = CliRunner().invoke(rimcli.cli.app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.fixture
def work(tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def save(path: Path, arr: np.ndarray) -> Path:
    write_image(path, arr)
    return path


# --------------------------------------------------------------------------- every subcommand


def test_denoise_gray_default_output_folder_and_table(work: Path) -> None:
    src = save(work / "g.png", rand((H, W)))
    code, out, err = rim("denoise", src, "--steps", 2)
    assert code == 0 and out == ""
    assert "g.png" in err and "g_denoised.png" in err  # the summary table (stderr)
    pic = read_image(work / "results" / "g_denoised.png")
    assert pic.mode == "gray" and pic.data.shape == (H, W) and pic.bits == 8


@pytest.mark.parametrize(
    "shape, dtype, ext",
    [((H, W, 3), np.uint8, ".png"), ((H, W, 4), np.uint8, ".png"), ((H, W, 3), np.uint16, ".png"),
     ((H, W, 4), np.uint16, ".tif"), ((H, W), np.uint16, ".tif"), ((H, W, 2), np.uint8, ".png")],
)
def test_denoise_keeps_mode_depth_and_alpha(work: Path, shape: tuple[int, ...], dtype: type, ext: str) -> None:
    arr = rand(shape, dtype)
    src = save(work / f"in{ext}", arr)
    code, _, err = rim("denoise", src, "-o", "out", "--steps", 2, "-q")
    assert code == 0 and err == ""
    pic = read_image(work / "out" / f"in_denoised{ext}")
    assert pic.array.shape == arr.shape and pic.array.dtype == dtype
    if len(shape) == 3 and shape[2] in (2, 4):
        np.testing.assert_array_equal(pic.alpha, arr[..., -1])


def test_exif_orientation_applied_and_icc_kept(work: Path) -> None:
    im = Image.fromarray(rand((H, W, 3)))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    im.save(work / "photo.jpg", exif=exif.tobytes(), icc_profile=b"fake icc profile")
    assert rim("denoise", work / "photo.jpg", "--steps", 1, "-o", "o", "--ext", "png")[0] == 0
    pic = read_image(work / "o" / "photo_denoised.png")
    assert pic.size == (H, W) and pic.icc == b"fake icc profile"


def test_superres_rgba_scales_and_resizes_alpha(work: Path) -> None:
    src = save(work / "a.png", rand((H // 2, W // 2, 4)))
    code, _, _ = rim("superres", src, "--scale", 2, "-o", "out", "--steps", 2)
    assert code == 0
    pic = read_image(work / "out" / "a_x2.png")
    assert pic.size == (W, H) and pic.alpha is not None


def test_deblur_with_gaussian_and_kernel_file(work: Path) -> None:
    src = save(work / "b.png", rand((H, W, 3)))
    kernel = np.zeros((5, 5), np.uint8)
    kernel[2, :] = 255  # horizontal motion blur
    Image.fromarray(kernel).save(work / "k.png")
    assert rim("deblur", src, "--blur-sigma", 1.2, "--steps", 2, "-o", "o1")[0] == 0
    assert rim("deblur", src, "--kernel", work / "k.png", "--steps", 2, "-o", "o2", "--json", "r.json")[0] == 0
    assert json.loads((work / "r.json").read_text())["problem"]["kernel"] == str(work / "k.png")
    assert (work / "o1" / "b_deblurred.png").is_file() and (work / "o2" / "b_deblurred.png").is_file()


def test_cs_reports_pseudo_inverse_and_result(work: Path) -> None:
    src = save(work / "c.png", rand((H, W)))
    code, _, err = rim("cs", src, "--ensemble", "fourier", "--ratio", 0.1, "--steps", 2, "-o", "out", "--json", "r.json")
    assert code == 0 and "PSNR" in err
    rec = json.loads((work / "r.json").read_text())["files"][0]
    assert rec["output_size"] == [W, H] and rec["model"] == "rim-3task"
    assert {"input", "output", "protocol"} <= set(rec["metrics"])
    assert read_image(work / "out" / "c_cs.png").data.shape == (H, W)


def test_models_table_and_json(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = rim("models")
    assert code == 0 and "rim-gray-denoise" in out and "rim-sr" in out
    for width in (80, 200):  # narrow: the figures as lines under the table, whole words, within the width
        monkeypatch.setattr(common.out, "_width", width)
        code, out, _ = rim("models")
        assert code == 0 and max(map(len, out.splitlines())) <= width
        for e in read_manifest().values():
            if e.metrics.get("headline"):
                assert e.metrics["headline"].split()[-2] in out, out  # its last figures, unbroken
    code, out, _ = rim("models", "--json", "-")
    data = json.loads(out)
    assert {m["name"] for m in data["models"]} == {"rim-gray-denoise", "rim-rgb-denoise", "rim-rgb-deblur", "rim-sr", "rim-3task"}
    assert all(m["params"] > 0 and m["file_size"] > 0 for m in data["models"])
    assert rim("models", "--json", work / "m.json")[0] == 0
    assert json.loads((work / "m.json").read_text())["models"]


# --------------------------------------------------------------------------- batches and naming


def test_folder_recursive_keeps_layout(work: Path) -> None:
    save(work / "in" / "a.png", rand((H, W)))
    save(work / "in" / "sub" / "b.jpg", rand((H, W, 3)))
    (work / "in" / "notes.txt").write_text("skip me")
    assert rim("denoise", work / "in", "-o", "flat", "--steps", 1, "-q")[0] == 0
    assert files_in(work / "flat") == ["a_denoised.png"]
    assert rim("denoise", work / "in", "-r", "-o", "deep", "--steps", 1, "--suffix", "", "--ext", "png", "-q")[0] == 0
    assert files_in(work / "deep") == ["a.png", "sub/b.png"]


def test_rerun_in_place_does_not_eat_its_own_results(work: Path) -> None:
    save(work / "a.png", rand((H, W)))
    assert rim("denoise", ".", "-r", "--steps", 1, "-q")[0] == 0
    assert rim("denoise", ".", "-r", "--steps", 1, "-q", "--overwrite")[0] == 0
    assert files_in(work / "results") == ["a_denoised.png"]


def test_model_loads_once_per_run(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rimcli.api
    import rimcli.weights

    loads: list[str] = []
    real = rimcli.weights.resolve
    monkeypatch.setattr(rimcli.api, "_CACHE", {})
    monkeypatch.setattr(rimcli.weights, "resolve", lambda name: loads.append(name) or real(name))
    for i in range(3):
        save(work / "in" / f"{i}.png", rand((H, W)))
    save(work / "in" / "rgb.png", rand((H, W, 3)))
    assert rim("denoise", work / "in", "--steps", 1, "-q")[0] == 0
    assert sorted(loads) == ["rim-gray-denoise", "rim-rgb-denoise"]  # gray images: gray model; colour: RGB model


def test_palette_input_is_restored_as_rgb(work: Path) -> None:
    Image.fromarray(rand((H, W, 3))).convert("P").save(work / "p.png")
    assert rim("denoise", work / "p.png", "--steps", 1, "-o", "out")[0] == 0
    assert read_image(work / "out" / "p_denoised.png").mode == "RGB"


def test_output_file_and_ext(work: Path) -> None:
    src = save(work / "a.jpg", rand((H, W, 3)))
    assert rim("denoise", src, "-o", work / "exact.png", "--steps", 1)[0] == 0
    assert read_image(work / "exact.png").mode == "RGB"
    assert rim("denoise", src, "--ext", "tif", "-o", "o", "--steps", 1)[0] == 0
    assert files_in(work / "o") == ["a_denoised.tif"]


def test_tiles(work: Path) -> None:
    src = save(work / "a.png", rand((H, W)))
    assert rim("denoise", src, "--tile", 16, "--tile-overlap", 4, "--steps", 1, "-o", "o", "--json", "r.json")[0] == 0
    assert json.loads((work / "r.json").read_text())["files"][0]["tile"] == 16


def test_self_ensemble_runs_and_is_reported(work: Path) -> None:
    src = save(work / "a.png", rand((H, W, 3)))
    for n in (1, 8):
        assert rim("deblur", src, "--blur-sigma", 1.2, "--steps", 1, "--self-ensemble", n, "-o", f"o{n}",
                   "--json", f"r{n}.json", "-q")[0] == 0
        assert json.loads((work / f"r{n}.json").read_text())["self_ensemble"] == n
    one, eight = (read_image(work / f"o{n}" / "a_deblurred.png").data.astype(int) for n in (1, 8))
    assert one.shape == eight.shape == (H, W, 3) and (one != eight).any()


def test_a_self_ensemble_that_cannot_be_is_a_usage_error(work: Path) -> None:
    src = save(work / "a.png", rand((64, 64)))
    code, _, err = rim("denoise", src, "--self-ensemble", 3, "--steps", 1, "-o", "o")
    assert code == 2 and "self-ensemble must be one of 1, 2, 4, 8" in one_error_line(err)
    # a projection has no symmetry: cs does not offer the flag at all
    code, _, err = rim("cs", src, "--self-ensemble", 2, "--steps", 1, "-o", "o")
    assert code == 2 and "No such option: --self-ensemble" in err
    assert files_in(work / "o") == []
    assert "--self-ensemble" not in rim("cs", "--help")[1] and "--self-ensemble" in rim("denoise", "--help")[1]


# --------------------------------------------------------------------------- evaluation


def test_simulate_save_steps_and_json(work: Path) -> None:
    src = save(work / "clean.png", rand((H, W, 3)))
    code, _, err = rim("denoise", src, "--simulate", "--sigma", 30, "--steps", 2, "-o", "out", "--save-steps", "steps",
                       "--json", "r.json", "--seed", 5)
    assert code == 0
    psnr = json.loads((work / "r.json").read_text())["files"][0]["metrics"]["output"]["psnr"]
    assert f"{psnr:.2f}" in err  # the table shows the score
    names = ("psnr_vs_step.png", "step_00.png", "step_01.png", "step_02.png", "steps.gif")
    assert files_in(work / "steps") == [f"clean/{n}" for n in names]
    assert Image.open(work / "steps" / "clean" / "steps.gif").n_frames == 3
    report = json.loads((work / "r.json").read_text())
    rec = report["files"][0]
    assert report["exit_code"] == 0 and report["problem"]["simulate"] and report["problem"]["seed"] == 5
    assert rec["metrics"]["input"]["psnr"] < 25 and len(rec["metrics"]["psnr_per_step"]) == 3
    for key in ("input", "output", "size", "channels", "bit_depth", "model", "steps", "sigma", "time_s", "error"):
        assert key in rec


@pytest.mark.parametrize("native", [True, False])
def test_cpu_precision_is_bf16_where_native_and_fp32_on_request(work: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 native: bool) -> None:
    """On the CPU `rim` runs bf16 only where the CPU has it natively; --fp32 always runs fp32;
    the report says what was asked, and each file's record what ran: the low-noise guard
    (sigma 5 and below) runs fp32 whatever was asked."""
    import rimcli.inference as inference

    monkeypatch.setattr(inference, "native_bf16", lambda: native)
    ran, unroll = [], inference.unroll
    monkeypatch.setattr(inference, "unroll", lambda *a, **k: ran.append(k["autocast"]) or unroll(*a, **k))
    src = save(work / "a.png", rand((H, W)))
    for flags, expected in (([], "bf16" if native else "fp32"), (["--fp32"], "fp32")):
        assert rim("denoise", src, "--steps", 1, "--device", "cpu", "-o", "o", "--overwrite", "--json", "r.json",
                   *flags)[0] == 0
        report = json.loads((work / "r.json").read_text())
        assert report["precision"] == expected and report["files"][0]["precision"] == expected
        assert ran.pop() == (torch.bfloat16 if native and not flags else None) and not ran
    assert rim("denoise", src, "--sigma", 2, "--steps", 1, "--device", "cpu", "-o", "o", "--overwrite",
               "--json", "r.json")[0] == 0
    report = json.loads((work / "r.json").read_text())
    assert report["precision"] == ("bf16" if native else "fp32") and report["files"][0]["precision"] == "fp32"
    assert ran.pop() is None and not ran


def test_superres_simulate(work: Path) -> None:
    src = save(work / "hr.png", rand((H, W, 3)))
    assert rim("superres", src, "--simulate", "--scale", 4, "--steps", 1, "-o", "o", "--json", "r.json")[0] == 0
    rec = json.loads((work / "r.json").read_text())["files"][0]
    assert rec["output_size"] == [W, H] and "Y of MATLAB" in rec["metrics"]["protocol"]


def test_reference_file_and_folder(work: Path) -> None:
    clean = rand((H, W))
    save(work / "ref" / "n.png", clean)
    noisy = save(work / "n.png", np.clip(clean + RNG.normal(0, 20, clean.shape), 0, 255).astype(np.uint8))
    for ref in (work / "ref" / "n.png", work / "ref"):
        code, _, err = rim("denoise", noisy, "--reference", ref, "--steps", 2, "-o", "o", "--overwrite", "--json", "r.json")
        assert code == 0 and "PSNR" in err
        m = json.loads((work / "r.json").read_text())["files"][0]["metrics"]
        assert 15 < m["input"]["psnr"] < 30


def test_save_steps_without_truth_has_no_plot(work: Path) -> None:
    src = save(work / "a.png", rand((H, W)))
    assert rim("denoise", src, "--steps", 1, "-o", "o", "--save-steps", "s", "-q")[0] == 0
    assert files_in(work / "s") == ["a/step_00.png", "a/step_01.png", "a/steps.gif"]


def test_sigma_auto_is_printed(work: Path) -> None:
    src = save(work / "a.png", rand((H, W)))
    code, _, err = rim("denoise", src, "--sigma", "auto", "--steps", 1, "-o", "o", "--json", "r.json")
    assert code == 0 and "estimated noise sigma" in err
    assert json.loads((work / "r.json").read_text())["files"][0]["sigma_estimated"] is True


def test_quiet_prints_nothing(work: Path) -> None:
    src = save(work / "a.png", rand((H, W)))
    assert rim("denoise", src, "--steps", 1, "-q", "--sigma", "auto") == (0, "", "")


# --------------------------------------------------------------------------- bad input: one line, exit 2, nothing written


def _inf_weights(p: Path) -> Path:
    import torch

    from rimcli.model import RIM, RIMConfig
    from rimcli.weights import save_model

    net = RIM(RIMConfig(channels=1, hidden=8))
    with torch.no_grad():
        next(net.parameters()).view(-1)[0] = float("inf")  # the whole output would be NaN: a black image
    save_model(net, p / "inf.safetensors")
    return p / "inf.safetensors"


def _text(p: Path) -> Path:
    (p / "t.png").write_text("this is not an image")
    return p / "t.png"


@pytest.mark.parametrize(
    "args, match",
    [
        (lambda p: ["denoise", p / "missing.png"], "no such file"),
        (lambda p: ["denoise", _text(p)], "not an image"),
        (lambda p: ["denoise", p / "ok.png", "--sigma", "-1"], "sigma must be >= 0"),
        (lambda p: ["denoise", p / "ok.png", "--sigma", "lots"], "--sigma must be a number"),
        (lambda p: ["denoise", p / "ok.png", "--sigma", "inf"], "sigma must be >= 0 and <= 255"),
        (lambda p: ["superres", p / "ok.png", "--sigma", "1e9"], "sigma must be >= 0 and <= 255"),
        (lambda p: ["deblur", p / "ok.png", "--blur-sigma", "inf"], "blur sigma must be > 0 and <= 100"),
        (lambda p: ["denoise", p / "ok.png", "-n", _inf_weights(p)], "inf or NaN weights"),
        (lambda p: ["superres", p / "ok.png", "--scale", "5"], "unsupported scale 5"),
        (lambda p: ["denoise", p / "ok.png", "--steps", "0"], "steps must be >= 1"),
        (lambda p: ["denoise", p / "ok.png", "--device", "cuda"], "CUDA is not available"),
        (lambda p: ["denoise", p / "ok.png", "--device", "tpu"], "unknown device"),
        (lambda p: ["denoise", p / "ok.png", "-n", "nope"], "unknown model"),
        (lambda p: ["denoise", p / "ok.png", "--ext", "gif"], "unsupported --ext"),
        (lambda p: ["denoise", p / "ok16.png", "--ext", "jpg"], "16-bit"),
        (lambda p: ["denoise", p / "ok.png", "--tile", "-1"], "tile must be >= 0"),
        (lambda p: ["denoise", p / "ok.png", "--simulate", "--reference", p / "ok.png"], "exclude each other"),
        (lambda p: ["denoise", p / "ok.png", "--reference", p / "small.png"], "reference is"),
        (lambda p: ["deblur", p / "ok.png"], "--kernel"),
        (lambda p: ["deblur", p / "ok.png", "--kernel", p / "missing.png"], "no such file"),
        (lambda p: ["deblur", p / "ok.png", "--kernel", p / "ok.png"], "odd sides"),
        (lambda p: ["deblur", p / "ok.png", "--kernel", p / "ok.png", "--blur-sigma", "1"], "not both"),
        (lambda p: ["cs", p / "ok.png", "--ensemble", "poisson"], "unknown ensemble"),
        (lambda p: ["cs", p / "ok.png", "--ratio", "1.5"], "ratio"),
        (lambda p: ["denoise", p / "ok.png", p / "ok16.png", "-o", p / "one.png"], "several inputs"),
        (lambda p: ["denoise", p / "empty"], "no images"),
    ],
)
def test_bad_input(work: Path, args, match: str) -> None:
    save(work / "ok.png", rand((H, W)))
    save(work / "ok16.png", rand((H, W), np.uint16))
    save(work / "small.png", rand((10, 10)))
    (work / "empty").mkdir()
    argv = args(work)
    argv += ([] if "--steps" in argv else ["--steps", 1]) + ([] if "-o" in argv else ["-o", "out"])
    before = files_in(work)
    code, _, err = rim(*argv)
    assert code == 2, err
    assert match in one_error_line(err)
    assert files_in(work / "out") == [] and files_in(work) == before


def test_existing_output_needs_overwrite(work: Path) -> None:
    src = save(work / "a.png", rand((H, W)))
    dst = save(work / "results" / "a_denoised.png", rand((H, W)))
    before = dst.read_bytes()
    code, _, err = rim("denoise", src, "--steps", 1)
    assert code == 2 and "--overwrite" in one_error_line(err)
    assert dst.read_bytes() == before
    assert rim("denoise", src, "--steps", 1, "--overwrite")[0] == 0
    assert dst.read_bytes() != before


@pytest.mark.parametrize(
    "args, match",
    [
        (["a.png", "-o", "a.png"], "would replace its own input"),
        (["a.png", "-o", "a.png", "--overwrite"], "would replace its own input"),
        (["in/b.png", "in/c.png", "-o", "in", "--suffix", "", "--overwrite"], "would replace its own input"),
        (["in/b.png", "in/b_denoised.png", "-o", "in", "--overwrite"], "would replace another input"),
        (["in", "-o", "in", "--suffix", "", "--overwrite"], "is also the --output folder"),
    ],
)
def test_output_never_replaces_an_input(work: Path, args: list[str], match: str) -> None:
    for name in ("a.png", "in/b.png", "in/c.png", "in/b_denoised.png"):
        save(work / name, rand((H, W)))
    before = {name: (work / name).read_bytes() for name in files_in(work)}
    code, _, err = rim("denoise", *args, "--steps", 1)
    line = one_error_line(err)
    assert code == 2 and match in line and "use --overwrite" not in line
    assert {name: (work / name).read_bytes() for name in files_in(work)} == before


def _forbid_work(monkeypatch: pytest.MonkeyPatch) -> None:
    import rimcli.api

    def no_work(*args: object) -> None:
        raise AssertionError("restored although the run was bound to fail")

    monkeypatch.setattr(rimcli.api, "_reconstruct", no_work)


@pytest.mark.parametrize(
    "args, match",
    [
        (["ok16.png", "--ext", "jpg"], "16-bit"),
        (["rgba.png", "--ext", "jpg"], "alpha"),
        (["rgba.png", "-o", "out/x.bmp"], "alpha"),
        (["ok.png", "--reference", "small.png"], "reference is 10x10"),
        (["ok.png", "--reference", "rgb.png"], "with 3 channel(s)"),
        (["ok.png", "--save-steps", "steps"], "is not empty"),
    ],
)
def test_checks_before_the_work(work: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], match: str) -> None:
    """What would fail after restoring (format, reference, --save-steps) fails before it."""
    _forbid_work(monkeypatch)
    save(work / "ok.png", rand((H, W)))
    save(work / "ok16.png", rand((H, W), np.uint16))
    save(work / "rgba.png", rand((H, W, 4)))
    save(work / "rgb.png", rand((H, W, 3)))
    save(work / "small.png", rand((10, 10)))
    save(work / "steps" / "ok" / "step_00.png", rand((H, W)))
    before = files_in(work)
    code, _, err = rim("denoise", *args, "--steps", 1)
    assert code == 2 and match in one_error_line(err)
    assert files_in(work) == before


def test_superres_reference_must_have_the_output_size(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _forbid_work(monkeypatch)
    src = save(work / "lr.png", rand((H // 2, W // 2, 3)))
    code, _, err = rim("superres", src, "--scale", 2, "--reference", src, "--steps", 1)
    assert code == 2 and f"reference is {W // 2}x{H // 2}" in one_error_line(err)


def test_non_finite_result_writes_nothing(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rimcli.api

    def nan_restore(y, *args):
        return np.full((y.shape[2], y.shape[3], y.shape[1]), np.nan, np.float32), None, 0, "fp32"

    monkeypatch.setattr(rimcli.api, "_reconstruct", nan_restore)
    src = save(work / "a.png", rand((H, W)))
    code, _, err = rim("denoise", src, "--steps", 1, "-o", "out")
    assert code == 2 and "inf or NaN" in one_error_line(err)
    assert files_in(work / "out") == []


def test_output_under_a_file(work: Path) -> None:
    src = save(work / "a.png", rand((H, W)))
    (work / "blocker").write_text("a file, not a folder")
    code, _, err = rim("denoise", src, "-o", work / "blocker" / "out", "--steps", 1)
    assert code == 2 and "is not a folder" in one_error_line(err)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores folder permissions")
def test_unwritable_folder(work: Path) -> None:
    src = save(work / "a.png", rand((H, W)))
    locked = work / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, _, err = rim("denoise", src, "-o", locked, "--steps", 1)
    finally:
        locked.chmod(0o700)
    assert code == 2 and "permission" in one_error_line(err)
    assert files_in(locked) == []


def test_folder_without_write_permission(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the chmod test above cannot run as root (root writes anywhere); this checks the same path
    src = save(work / "a.png", rand((H, W)))
    (work / "locked").mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p).name != "locked" and real_access(p, mode))
    code, _, err = rim("denoise", src, "-o", work / "locked" / "sub", "--steps", 1)
    assert code == 2 and "no permission to write" in one_error_line(err)


def test_failed_write_leaves_no_partial_file(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rimcli.io

    def full_disk(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    src = save(work / "a.png", rand((H, W)))
    monkeypatch.setattr(rimcli.io.os, "replace", full_disk)
    code, _, err = rim("denoise", src, "--steps", 1, "-o", "out")
    assert code == 2 and "No space left" in one_error_line(err)
    assert [p for p in (work / "out").rglob("*") if p.is_file()] == []  # not even a hidden temp file


def test_batch_with_one_bad_file(work: Path) -> None:
    save(work / "in" / "a.png", rand((H, W)))
    (work / "in" / "b.png").write_text("broken")
    save(work / "in" / "c.tif", rand((H, W, 3), np.uint16))
    code, _, err = rim("denoise", work / "in", "--steps", 1, "-o", "out", "--json", "r.json")
    assert code == 1
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "b.png" in errors[0]
    assert files_in(work / "out") == ["a_denoised.png", "c_denoised.tif"]
    report = json.loads((work / "r.json").read_text())
    assert report["ok"] == 2 and report["failed"] == 1 and report["exit_code"] == 1
    assert [r["error"] is not None for r in report["files"]] == [False, True, False]


def test_tiff_read_by_tifffile_16bit_rgb(work: Path) -> None:
    arr = rand((H, W, 3), np.uint16)
    tifffile.imwrite(work / "t.tiff", arr, photometric="rgb")
    assert rim("denoise", work / "t.tiff", "--steps", 1, "-o", "o", "-q")[0] == 0
    pic = read_image(work / "o" / "t_denoised.tiff")
    assert pic.data.dtype == np.uint16 and pic.data.shape == arr.shape
