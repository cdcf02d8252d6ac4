"""The published protocols, checked end to end through `rim benchmark` against known figures.

A protocol that misses these is wrong, whatever else passes (issue 5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import SHARED_DATA, requires_shared

BENCH = SHARED_DATA / "bench"


def _bench(args: list[str]) -> dict:
    from rimcli.cli import _register, app

    _register()
    r = CliRunner().invoke(app, ["benchmark", *args])
    assert r.exit_code == 0, r.output
    return r


def _summary(report: dict, label: str) -> dict[str, dict]:
    (run,) = [r for r in report["runs"] if r["label"] == label]
    return {s["method"]: s for s in run["summary"]}


@requires_shared
@pytest.mark.slow
def test_matlab_bicubic_scores_the_published_bsd100_and_set5_figures(tiny_weights: Path, tmp_path: Path) -> None:
    _bench(["b100", "--scale", "2,3,4", "--steps", "1", "--max-steps", "1", "--baselines", "bicubic",
            "--data", str(BENCH), "--out", str(tmp_path / "b100")])
    report = json.loads((tmp_path / "b100" / "results.json").read_text())
    published = {"x2": (29.55, 0.8425), "x3": (27.20, None), "x4": (25.96, None)}
    for run in report["runs"]:
        assert len(run["images"]) == 100
    for scale, (psnr, ssim) in published.items():
        (label,) = [r["label"] for r in report["runs"] if r["label"].endswith(scale[1:]) or r["label"] == scale]
        bic = _summary(report, label)["bicubic"]
        assert bic["psnr"] == pytest.approx(psnr, abs=0.01), (scale, bic["psnr"])
        if ssim is not None:
            assert bic["ssim"] == pytest.approx(ssim, abs=0.001)
    _bench(["set5", "--scale", "2", "--steps", "1", "--max-steps", "1", "--baselines", "bicubic",
            "--data", str(BENCH), "--out", str(tmp_path / "set5")])
    report = json.loads((tmp_path / "set5" / "results.json").read_text())
    assert report["runs"][0]["summary"][-1]["method"] == "bicubic"
    assert _summary(report, report["runs"][0]["label"])["bicubic"]["psnr"] == pytest.approx(33.64, abs=0.01)


@requires_shared
def test_bsd68_with_bm3d_writes_every_output(tiny_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "bsd68"
    _bench(["bsd68", "--sigma", "25", "--limit", "4", "--baselines", "bm3d", "--data", str(BENCH), "--out", str(out),
            "--json", str(tmp_path / "copy.json")])
    for name in ("results.json", "results.csv", "results.md"):
        assert (out / name).stat().st_size > 0
    assert list(out.glob("*.png")), "convergence plot missing"
    report = json.loads((out / "results.json").read_text())
    assert json.loads((tmp_path / "copy.json").read_text())["runs"] == report["runs"]
    methods = _summary(report, report["runs"][0]["label"])
    assert set(methods) >= {"rim-gray-denoise", "noisy", "bm3d"}
    # sigma 25 on these images: the noisy input sits near 20.2 dB, BM3D far above it
    assert methods["noisy"]["psnr"] == pytest.approx(20.2, abs=0.3)
    assert methods["bm3d"]["psnr"] > methods["noisy"]["psnr"] + 6
    assert report["models"][0]["sha256"] and report["machine"] and report["date"] and report["protocol"]
