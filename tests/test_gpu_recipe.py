"""scripts/gpu_recipe.py --dry-run: every stage of the GPU recipe, for every production model, on the CPU.

Tiny generated training images and benchmark sets (no ../shared): two time-boxed "GPU calls" (the second
resumes from the files the first collected), inference timing, export, benchmarks of the exported files."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from test_datasets import make_denoise_set, make_sr_set

ROOT = Path(__file__).resolve().parents[1]
NAMES = {"rgb": "rim-rgb-denoise", "gray": "rim-gray-denoise", "sr": "rim-sr", "3task": "rim-3task",
         "deblur": "rim-rgb-deblur"}


def _training_images(folder: Path, n: int = 6) -> Path:
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[0:48, 0:56] / 56
    for i in range(n):
        rng = np.random.default_rng(i)
        img = 0.5 + 0.4 * np.sin((4 + i) * xx[..., None] + rng.uniform(0, 3, 3)) * np.cos((3 + i) * yy[..., None])
        img = np.clip(img * 255 + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"img{i}.png")
    return folder


def _bench_root(root: Path) -> Path:
    """The layout of ../shared/data/bench: bsd68/, cbsd68/, set12/, sr/{Set5,Set14,BSD100}/image_SRF_s/."""
    make_denoise_set(root / "bsd68")
    make_denoise_set(root / "cbsd68", colour=True)
    make_denoise_set(root / "set12")
    for name in ("Set5", "Set14", "BSD100"):
        make_sr_set(root / "sr" / name, scales=(2, 3, 4))
    return root


def _check_out_limits(folder: Path) -> None:
    """What a GPU call's $OUT may hold to come back whole: 8 files of 16 MiB, 2 folders down."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert 0 < len(files) <= 8, files
    for p in files:
        rel = p.relative_to(folder)
        assert p.stat().st_size <= 16 << 20 and len(rel.parts) <= 3, rel
        assert all(c.isalnum() or c in "._-" for c in str(rel).replace("/", "")), rel


def _loss_iterations(tar_path: Path) -> list[int]:
    with tarfile.open(tar_path) as tar:
        log = tar.extractfile("log.jsonl").read().decode()
    return [r["iter"] for r in map(json.loads, log.splitlines()) if "loss" in r]


def test_dry_run_every_stage_every_model(tmp_path: Path) -> None:
    data = _training_images(tmp_path / "train" / "bsds400")
    bench = _bench_root(tmp_path / "bench")
    out = tmp_path / "dry"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_recipe.py"), "--dry-run", "--data", str(data),
                        "--bench", str(bench), "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]

    # each simulated GPU call returned a flat $OUT within the limits: one tar per model + gpu.json
    for call in ("gpu-1", "gpu-2", "gpu-3"):
        _check_out_limits(out / call)
        assert {p.name for p in (out / call).iterdir()} >= {f"{k}.tar" for k in NAMES} | {"gpu.json"}

    # the second call resumed every model from the first call's files and ran it to its plan
    first, second = (json.loads((out / c / "gpu.json").read_text())["models"] for c in ("gpu-1", "gpu-2"))
    for key in NAMES:
        assert first[key]["exit_code"] == second[key]["exit_code"] == 0
        assert 0 < first[key]["iteration"] < second[key]["iteration"] == second[key]["iters"]
        assert first[key]["choice"] == second[key]["choice"]  # the probe's plan carried over
    # the third call extended each finished plan by two iterations (--extend) and ran them
    third = json.loads((out / "gpu-3" / "gpu.json").read_text())["models"]
    for key in NAMES:
        assert third[key]["exit_code"] == 0 and third[key]["iteration"] == third[key]["iters"] == second[key]["iters"] + 2
        its = _loss_iterations(out / "gpu-3" / f"{key}.tar")  # one log across the calls, never restarted
        assert its == sorted(set(its)) and its[0] == 1 and its[-1] == third[key]["iters"]
        with tarfile.open(out / "gpu-3" / f"{key}.tar") as tar:
            plan = json.loads(tar.extractfile("plan.json").read())
        assert plan["extensions"] == [{"at": second[key]["iters"], "from": second[key]["iters"], "to": plan["iters"]}]

    # exported, self-describing files, benchmarked by path (no --steps)
    from rimcli.weights import file_metadata

    summary = json.loads((out / "summary.json").read_text())
    models = {m["name"]: m for m in summary["models"]}
    assert sorted(models) == sorted(NAMES.values())
    for m in models.values():
        file = Path(m["file"])
        assert hashlib.sha256(file.read_bytes()).hexdigest() == m["sha256"]
        assert file_metadata(file)["default_steps"] == 2
        assert m["benchmarks"] and all(
            figures and all(np.isfinite(v) for v in figures.values()) for figures in m["benchmarks"].values()), m
    assert set(models["rim-rgb-denoise"]["benchmarks"]["cbsd68"]) == {"sigma=15", "sigma=25", "sigma=50"}
    assert set(models["rim-sr"]["benchmarks"]["b100"]) == {"x2", "x3", "x4"}
    assert "sigma=25" in models["rim-3task"]["benchmarks"]["bsd68_quantized"]
    assert len(models["rim-3task"]["benchmarks"]["projections"]) == 9
    assert set(models["rim-rgb-deblur"]["benchmarks"]["cbsd68_deblur"]) == {"sigma=2 blur=1", "sigma=2 blur=1.6",
                                                                            "sigma=2 blur=2.5"}
    assert (out / "bench" / "gray" / "set12" / "results.json").is_file()
    assert {r["precision"] for r in summary["speed"]["rows"]} == {"fp32"}
    # each RIM is timed at the steps it ships with: those of the bundled file it started from
    from rimcli.weights import read_manifest

    bundled = read_manifest(ROOT / "weights")
    rims = [r for r in summary["speed"]["rows"] if r["model"] in bundled]
    assert summary["speed"]["rim_steps"] == "default" and len(rims) == len(NAMES)
    assert all(r["steps"] == bundled[r["model"]].default_steps != 2 for r in rims), rims


def test_fill_extends_only_a_plan_that_would_end_early() -> None:
    """--fill: a resumed plan that would end in under 3/4 of the call grows to end with the call."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import gpu_recipe

    # at 10 it/s, 100 s reach 900 more iterations (x0.9): 100 left of 900 -> extended, 800 left -> kept
    assert gpu_recipe.fill_iters(1000, 1100, rate=10.0, seconds=100.0) == 1900
    assert gpu_recipe.fill_iters(1000, 1800, rate=10.0, seconds=100.0) == 1800
    assert gpu_recipe.fill_iters(1000, 1000, rate=0.0, seconds=100.0) == 1000  # no rate measured: as planned
