"""Issue 12, items 6-9: small surprises, one meaning per flag, readable help and tables, more
input formats, and the corrupted input written beside a simulation's result."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
import typer.main
from PIL import Image

import rimcli
import rimcli.cli
from rimcli.cli import common
from rimcli.io import read_image
from test_cli_restore import H, W, files_in, one_error_line, rand, rim, save

RNG_F = np.random.default_rng(8)


@pytest.fixture
def work(tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _commands(group=None, path: tuple[str, ...] = ()):  # noqa: ANN001, ANN202 - click objects
    """Every (command path, click command) of `rim`, groups included."""
    group = group or typer.main.get_command(rimcli.cli.app)
    yield path, group
    for name, sub in getattr(group, "commands", {}).items():
        yield from _commands(sub, (*path, name))


# --------------------------------------------------------------------------- 6: small surprises


@pytest.mark.parametrize("output, match", [("in", "input folder in is also the --output folder in "),
                                           (".", "input folder in is inside the --output folder .")])
def test_input_folder_that_is_the_output_folder(work: Path, output: str, match: str) -> None:
    save(work / "in" / "a.png", rand((H, W)))
    code, _, err = rim("denoise", "in", "-o", output, "--steps", 1)
    assert code == 2 and match in one_error_line(err) and "choose another --output" in err
    assert files_in(work) == ["in/a.png"]


def test_unsupported_output_extension_is_refused_not_a_folder(work: Path) -> None:
    src = save(work / "a.png", rand((H, W)))
    code, _, err = rim("denoise", src, "-o", "result.gif", "--steps", 1)
    assert code == 2 and "cannot write .gif" in one_error_line(err)
    assert not (work / "result.gif").exists() and files_in(work) == ["a.png"]


def test_json_dash_is_stdout_in_restore_commands(work: Path) -> None:
    src = save(work / "a.png", rand((H, W)))
    code, out, _ = rim("denoise", src, "--steps", 1, "-o", "out", "--json", "-")
    assert code == 0 and json.loads(out)["files"][0]["output"] == str(Path("out") / "a_denoised.png")
    assert not (work / "-").exists()


def test_json_dash_is_stdout_in_benchmark_and_o_is_output(tiny_weights: Path, tmp_path: Path) -> None:
    from test_datasets import make_denoise_set

    data = make_denoise_set(tmp_path / "bsd68", n=2)
    code, out, _ = rim("benchmark", "bsd68", "--sigma", 25, "--limit", 1, "--baselines", "none", "--steps", 1,
                       "--max-steps", 1, "--data", data, "-o", tmp_path / "o", "--json", "-")
    assert code == 0 and json.loads(out)["benchmark"] == "bsd68"  # the tables went to stderr
    assert (tmp_path / "o" / "results.json").is_file() and not Path("-").exists()


def test_example_refuses_to_overwrite(work: Path) -> None:
    assert rim("example", "camera", "-o", "cam.png")[0] == 0
    (work / "cam.png").write_bytes(b"mine")
    code, _, err = rim("example", "camera", "-o", "cam.png")
    assert code == 2 and "--overwrite" in one_error_line(err)
    assert (work / "cam.png").read_bytes() == b"mine"
    assert rim("example", "camera", "-o", "cam.png", "--overwrite")[0] == 0
    assert read_image(work / "cam.png").data.shape == (512, 512)
    assert rim("example", "rocket", "-o", "r.png")[0] == 0  # a JPEG example, re-encoded for the name asked
    assert read_image(work / "r.png").mode == "RGB"


def test_sigma_auto_on_a_tiny_image_is_one_clear_line(work: Path) -> None:
    src = save(work / "tiny.png", rand((6, 4)))
    code, _, err = rim("denoise", src, "--sigma", "auto", "--steps", 1, "-o", "out")
    assert code == 2 and "too small to estimate its noise" in one_error_line(err)
    assert files_in(work / "out") == []


def test_sigma_estimate_leaks_no_warnings() -> None:
    x = np.random.default_rng(0).random((16, 20))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rimcli.estimate_sigma(x)
        rimcli.estimate_sigma(np.dstack([x, x, x]))
        with pytest.raises(ValueError, match=r"image is 3x16, too small to estimate its noise"):
            rimcli.estimate_sigma(x[:, :3])  # scikit-image warned here (and guessed wildly)


# --------------------------------------------------------------------------- 7: one meaning per flag, help, tables


def test_short_flags_mean_one_thing() -> None:
    meaning = {"-n": "--model", "-o": "--output", "-q": "--quiet", "-r": "--recursive", "-h": "--help"}
    for path, command in _commands():
        for param in getattr(command, "params", []):
            for short, long in meaning.items():
                if short in param.opts:
                    assert long in param.opts, f"rim {' '.join(path)}: {short} is {param.opts}"


def test_output_is_o_output_everywhere_and_out_a_hidden_alias() -> None:
    for path, command in _commands():
        for param in getattr(command, "params", []):
            if "--out" in param.opts:
                assert param.hidden and param.opts == ["--out"], path
                assert any({"-o", "--output"} == set(p.opts) for p in command.params), path
    for cmd in (["train", "--data", "x"], ["benchmark", "bsd68"]):
        code, _, err = rim(*cmd, "-o", "a", "--out", "b")
        assert code == 2 and "--out is the old spelling of --output" in one_error_line(err)


_TYPE_NAMES = re.compile(r"<(?:bool|int|float|str|path|file|datetime|list\[[^>]*\]|\w+ range)>|list\[|NoneType|\bbool\b")


def test_help_shows_no_python_type_names() -> None:
    seen = 0
    for path, _ in _commands():
        code, out, _ = rim(*path, "--help")
        assert code == 0 and out, path
        assert not _TYPE_NAMES.search(out), f"rim {' '.join(path)} --help: {_TYPE_NAMES.search(out)[0]}"
        seen += 1
    assert seen > 10


def test_simulate_help_names_the_corrupted_file() -> None:
    _, out, _ = rim("denoise", "--help")
    assert "NAME_noisy" in re.sub(r"[\s│]+", " ", out)


def _table_rim(work: Path, names: list[str]) -> tuple[str, dict]:
    for name in names:
        save(work / "in" / name, rand((H, W, 3)))
    src = work / "in" / names[0] if len(names) == 1 else work / "in"
    code, _, err = rim("denoise", src, "--simulate", "--sigma", 25, "--steps", 1, "--json", "r.json")
    assert code == 0
    assert max(len(line) for line in err.splitlines()) <= 80, err
    return err, {Path(f["input"]).name: f for f in json.loads((work / "r.json").read_text())["files"]}


def _figures_on_the_name_lines(err: str, name: str, stem: str, record: dict) -> None:
    """The input's PSNR and SSIM on the input's line, the output's on the output's line."""
    lines = err.splitlines()
    for shown, side in ((name, "input"), (f"{stem}_denoised.png", "output")):
        line = next((ln for ln in lines if ln.startswith(shown + " ")), None)
        assert line is not None, err  # the whole name, never broken
        m = record["metrics"][side]
        assert f"{m['psnr']:.2f}" in line and f"{m['ssim']:.3f}" in line, (side, err)


@pytest.mark.parametrize("names", [["astronaut.png"], ["astronaut.png", "a_rather_long_holiday_photo.png"]])
def test_result_table_fits_80_columns_without_breaking_names(work: Path, monkeypatch: pytest.MonkeyPatch,
                                                             names: list[str]) -> None:
    monkeypatch.setattr(common.console, "_width", 80)
    err, records = _table_rim(work, names)
    for name in names:
        _figures_on_the_name_lines(err, name, Path(name).stem, records[name])


def test_result_table_keeps_figures_whole_beside_a_very_long_name(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A name longer than the terminal folds; the figures stay whole, on the input's first line."""
    monkeypatch.setattr(common.console, "_width", 80)
    name = "holiday_" + "x" * 62 + ".png"
    err, records = _table_rim(work, [name])
    m = records[name]["metrics"]
    lines = err.splitlines()
    rows = lines[next(i for i, ln in enumerate(lines) if ln.startswith("───")) + 1:]  # below the header
    assert f"{m['input']['psnr']:.2f}" in rows[0] and f"{m['input']['ssim']:.3f}" in rows[0], err
    assert f"{m['output']['psnr']:.2f}" in rows[1] and f"{m['output']['ssim']:.3f}" in rows[1], err
    assert rows[0].split()[0] + rows[1].split()[0] == name, err  # folded, never cut


# --------------------------------------------------------------------------- 8: CMYK and float TIFF


def test_cmyk_jpeg_is_converted_and_said_so(work: Path) -> None:
    Image.new("CMYK", (W, H), (0, 255, 0, 0)).save(work / "c.jpg")  # full magenta ink
    code, _, err = rim("denoise", work / "c.jpg", "--steps", 1, "-o", "out")
    assert code == 0
    notes = [ln for ln in err.splitlines() if "CMYK" in ln]
    assert len(notes) == 1 and "converted from CMYK to RGB" in notes[0]
    assert read_image(work / "out" / "c_denoised.jpg").mode == "RGB"
    assert rim("denoise", work / "c.jpg", "--steps", 1, "-o", "q", "-q")[2] == ""  # -q: no note


@pytest.mark.parametrize("shape", [(H, W), (H, W, 3)])
def test_float_tiff_in_0_1_restores_to_float_tiff(work: Path, shape: tuple[int, ...]) -> None:
    tifffile.imwrite(work / "f.tif", RNG_F.random(shape, dtype=np.float32), photometric="rgb" if len(shape) == 3 else None)
    code, _, err = rim("denoise", work / "f.tif", "--steps", 1, "-o", "out", "--json", "r.json")
    assert code == 0, err
    pic = read_image(work / "out" / "f_denoised.tif")
    assert pic.data.dtype == np.float32 and pic.data.shape == shape and 0 <= pic.data.min() <= pic.data.max() <= 1
    assert json.loads((work / "r.json").read_text())["files"][0]["bit_depth"] == 32


@pytest.mark.parametrize("args, match", [(["bad.tif"], "must hold values in [0, 1], found [0, 2]"),
                                         (["f.tif", "--ext", "png"], "float images can only be written as TIFF")])
def test_float_tiff_errors(work: Path, args: list[str], match: str) -> None:
    tifffile.imwrite(work / "bad.tif", np.linspace(0, 2, H * W, dtype=np.float32).reshape(H, W))
    tifffile.imwrite(work / "f.tif", np.full((H, W), 0.5, np.float32))
    code, _, err = rim("denoise", *args, "--steps", 1, "-o", "out")
    assert code == 2 and match in one_error_line(err)
    assert files_in(work / "out") == []


# --------------------------------------------------------------------------- 9: --simulate writes the corrupted input


def test_simulate_writes_the_corrupted_input_beside_the_result(work: Path) -> None:
    clean = rand((H, W, 3))
    src = save(work / "a.png", clean)
    code, _, err = rim("denoise", src, "--simulate", "--sigma", 30, "--steps", 1, "-o", "out", "--json", "r.json")
    assert code == 0 and "a_noisy.png" in err
    assert files_in(work / "out") == ["a_denoised.png", "a_noisy.png"]
    noisy = read_image(work / "out" / "a_noisy.png")
    assert noisy.data.shape == clean.shape and noisy.data.dtype == np.uint8
    rec = json.loads((work / "r.json").read_text())["files"][0]
    assert rec["simulated_input"] == str(Path("out") / "a_noisy.png")
    from rimcli.metrics import psnr

    assert psnr(noisy.data.astype(float), clean.astype(float)) == pytest.approx(rec["metrics"]["input"]["psnr"], abs=0.01)


def test_simulate_superres_writes_the_bicubic_input_with_alpha(work: Path) -> None:
    src = save(work / "hr.png", rand((H, W, 4)))
    assert rim("superres", src, "--simulate", "--scale", 2, "--steps", 1, "-o", "o", "-q")[0] == 0
    assert files_in(work / "o") == ["hr_bicubic.png", "hr_x2.png"]
    assert read_image(work / "o" / "hr_bicubic.png").array.shape == (H, W, 4)


def test_simulated_input_respects_overwrite(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rimcli.api

    src = save(work / "a.png", rand((H, W)))
    old = save(work / "out" / "a_noisy.png", rand((H, W))).read_bytes()
    real = rimcli.api._reconstruct
    monkeypatch.setattr(rimcli.api, "_reconstruct", lambda *a: pytest.fail("restored although bound to fail"))
    code, _, err = rim("denoise", src, "--simulate", "--steps", 1, "-o", "out")
    assert code == 2 and "a_noisy.png exists (use --overwrite" in one_error_line(err)
    assert files_in(work / "out") == ["a_noisy.png"] and (work / "out" / "a_noisy.png").read_bytes() == old
    monkeypatch.setattr(rimcli.api, "_reconstruct", real)
    assert rim("denoise", src, "--simulate", "--steps", 1, "-o", "out", "--overwrite", "-q")[0] == 0
    assert (work / "out" / "a_noisy.png").read_bytes() != old


def test_simulated_input_never_clashes_with_a_result(work: Path) -> None:
    src = save(work / "a.png", rand((H, W)))
    code, _, err = rim("denoise", src, "--simulate", "--steps", 1, "-o", "a_noisy.png")
    assert code == 2 and "is also its own result" in one_error_line(err)
    assert files_in(work) == ["a.png"]
