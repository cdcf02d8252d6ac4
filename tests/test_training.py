"""`rim train` / `rim export`: learning, exact resume, DDP, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import load_script
from rimcli.model import RIMConfig
from rimcli.runtime import cpu_compiler
from rimcli.training import (
    TrainConfig,
    TrainError,
    autocast_dtype,
    channels_last,
    compiles,
    read_log,
    train,
    val_score,
)

ROOT = Path(__file__).resolve().parents[1]


def _synthetic_images(folder: Path, n: int = 10, size: int = 64, seed: int = 0) -> Path:
    """Piecewise-smooth images (blobs and edges): easy to denoise, quick to learn."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        img = 0.3 + 0.2 * np.sin(2 * np.pi * (rng.uniform(0.5, 2) * xx + rng.uniform(0, 1)))
        for _ in range(3):
            cy, cx, r = rng.uniform(0.2, 0.8, 3)
            img = np.where((yy - cy) ** 2 + (xx - cx) ** 2 < (0.25 * r) ** 2, rng.uniform(0.1, 0.9), img)
        Image.fromarray(np.clip(img * 255, 0, 255).astype(np.uint8)).save(folder / f"img{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _synthetic_images(tmp_path_factory.mktemp("train") / "imgs")


needs_compiler = pytest.mark.skipif(not cpu_compiler(), reason="no C++ compiler for torch.compile")


def _cfg(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(task="denoise", channels=1, data=str(data), out=str(out), patch=24, batch=4, iters=20, steps=3,
                hidden=8, val_split=2, val_images=2, val_crop=32, val_every=10, log_every=5, warmup=5, lr=3e-3)
    base.update(kw)
    return TrainConfig.from_dict(base)


def test_validation_psnr_rises(data_dir: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    run = train(_cfg(data_dir, tmp_path / "run", iters=60, val_every=10, sigma_range=[25, 25]))
    vals = [r["val_psnr"] for r in read_log(run) if "val" in r]
    assert len(vals) == 6
    assert vals[-1] > vals[0] + 0.5, vals
    # the log holds PSNR at every step (2x the horizon) for each validation setting
    last = [r for r in read_log(run) if "val" in r][-1]
    assert set(last["val"]) == {"denoise_s15", "denoise_s25", "denoise_s50"}
    assert all(len(c) == 6 for c in last["val"].values())
    assert (run / "best.pt").is_file() and (run / "last.pt").is_file()


def test_a_run_on_8bit_inputs_is_validated_on_them_too(monkeypatch: pytest.MonkeyPatch) -> None:
    import rimcli.training as training
    from rimcli.model import RIM

    seen = {}

    def spy(model, y, op, sigma, steps, **kw):
        seen[round(sigma * 255)] = seen.get(round(sigma * 255), []) + [y.clone()]
        return [y] * steps

    monkeypatch.setattr(training, "unroll", spy)
    cfg = TrainConfig(task="denoise", channels=1, hidden=8, steps=2, clip_fraction=0.5)
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    curves = training.validate(RIM(cfg.model_config()), cfg, x, torch.device("cpu"))
    assert set(curves) == {f"denoise_s{s}{tag}" for s in (15, 25, 50) for tag in ("", "_8bit")}
    for sigma, (plain, stored) in seen.items():  # the same noise, then clipped and rounded as a file is
        assert plain.min() < 0 or plain.max() > 1, sigma
        torch.testing.assert_close(stored, (plain.clamp(0, 1) * 255).round() / 255, rtol=0, atol=0)
    assert curves["denoise_s50_8bit"] != curves["denoise_s50"]


class _Stop(Exception):
    pass


def test_resume_is_bit_for_bit(data_dir: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    cfg = dict(task="denoise,superres", channels=1, patch=24, scales=[2, 3], iters=20, val_every=10)
    full = train(_cfg(data_dir, tmp_path / "full", **cfg))

    def stop_at_10(rec: dict) -> None:
        if rec.get("iter") == 10 and "val" in rec:
            raise _Stop

    with pytest.raises(_Stop):
        train(_cfg(data_dir, tmp_path / "cut", **cfg), on_log=stop_at_10)
    resumed = train(_cfg(data_dir, tmp_path / "cut", **cfg), resume=True)
    a = torch.load(full / "last.pt", weights_only=True)
    b = torch.load(resumed / "last.pt", weights_only=True)
    assert a["iteration"] == b["iteration"] == 20
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert torch.equal(a["rng"][0], b["rng"][0])


def test_resume_refuses_a_changed_recipe(data_dir: Path, tmp_path: Path) -> None:
    train(_cfg(data_dir, tmp_path / "r", iters=10))
    with pytest.raises(TrainError, match="different"):
        train(_cfg(data_dir, tmp_path / "r", iters=20, lr=1e-2), resume=True)
    with pytest.raises(TrainError, match="already holds a run"):
        train(_cfg(data_dir, tmp_path / "r", iters=10))


def test_cs_and_deblur_tasks_train(data_dir: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    run = train(_cfg(data_dir, tmp_path / "cs", task="3task,deblur", patch=32, iters=4, val_every=4,
                     ratios=[0.25], val_crop=32, blur_kinds=["motion", "defocus", "gaussian"]))
    last = [r for r in read_log(run) if "val" in r][-1]
    assert {"cs_gaussian_r0.25", "cs_binary_r0.25", "cs_fourier_r0.25", "deblur_b1.0", "deblur_motion",
            "deblur_defocus"} <= set(last["val"])
    assert all(np.isfinite(c).all() for c in last["val"].values())


def test_unknown_config_key_is_an_error() -> None:
    with pytest.raises(TrainError, match="unknown config key"):
        TrainConfig.from_dict({"task": "denoise", "sigmas": [0, 50]})


def _rim(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rimcli", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "/nonexistent/folder"], "does not exist"),
        (["--data", "{data}", "--patch", "500"], "smaller than the 500px patch"),
        (["--data", "{data}", "--task", "inpaint"], "task must be"),
        (["--data", "{data}", "--config", "{bad_config}"], "unknown config key"),
        (["--data", "{data}", "--sigma-range", "abc"], "LO:HI"),
    ],
)
def test_cli_errors_are_one_line_exit_2(data_dir: Path, tmp_path: Path, args: list[str], message: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"learning_rate": 1}))
    args = [a.format(data=data_dir, bad_config=bad) for a in args]
    r = _rim("train", "--out", str(tmp_path / "run"), *args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_cli_train_then_export(data_dir: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('task = "denoise"\nchannels = 1\npatch = 24\nbatch = 2\nhidden = 8\nsteps = 2\n'
                   'val_split = 2\nval_images = 2\nval_crop = 32\nval_every = 4\n'
                   'compile = false\n')  # a subprocess: conftest's no-compile patch does not reach it
    r = _rim("train", "--config", str(cfg), "--data", str(data_dir), "--iters", "4", "--out", str(tmp_path / "run"), "-q")
    assert r.returncode == 0, r.stderr
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["config"]["iters"] == 4 and saved["config"]["hidden"] == 8  # flags override the file, file fills the rest
    # --resume reads the run's own settings: only what changes needs a flag
    r = _rim("train", "--resume", "-o", str(tmp_path / "run"), "--iters", "5", "-q")
    assert r.returncode == 0, r.stderr
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["iteration"] == 5
    wdir = tmp_path / "weights"
    r = _rim("export", str(tmp_path / "run"), "--name", "my-rim", "--weights-dir", str(wdir))
    assert r.returncode == 0, r.stderr
    manifest = json.loads((wdir / "manifest.json").read_text())["models"]
    (entry,) = manifest
    assert entry["name"] == "my-rim" and entry["tasks"] == ["denoise"] and entry["default_steps"] == 2
    assert entry["training"]["command"].startswith("rim train") and entry["training"]["iterations"] == 5
    first, then = entry["training"]["commands"]  # a resumed run keeps the command that set it up
    assert "--config" in first and "--resume" in then
    # what --amp auto and the layout became (NHWC on a CPU; bf16 only with native bf16, here unknown)
    assert entry["training"]["channels_last"] is True and entry["training"]["precision"] in ("fp32", "bf16")
    assert entry["training"]["compile"] is False
    assert len(entry["metrics"]["validation"]["psnr_per_step"]["denoise_s25"]) == 4  # T=2, curves to 2T
    # scripts/validate_model.py scores the exported file on the run's held-out crops as the run did
    vm = load_script("validate_model")
    best = [r for r in read_log(tmp_path / "run") if r.get("best")][-1]
    found = vm.curves(tmp_path / "run" / "config.json", str(wdir / entry["file"]))
    assert found.keys() == best["val"].keys()
    for label, c in found.items():
        assert c == pytest.approx(best["val"][label], abs=1e-3), label
    assert val_score(found, 2) == pytest.approx(best["val_psnr"], abs=1e-3)
    # other images than the run held out, or bad steps: one line, exit 2
    other = tmp_path / "other"
    other.mkdir()
    for f in data_dir.iterdir():
        (other / f"x{f.name}").write_bytes(f.read_bytes())
    for args, message in [(["--data", str(other)], "does not hold out"), (["--steps", "4,x"], "whole numbers"),
                          (["--steps", "5"], "1..4")]:
        r = subprocess.run([sys.executable, str(ROOT / "scripts" / "validate_model.py"), str(tmp_path / "run" / "config.json"),
                            str(wdir / entry["file"]), *args], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr

    from rimcli.weights import load_file

    model = load_file(wdir / entry["file"], entry["sha256"])
    ck = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, ck["model"][k])

    # the file describes itself: a copy given by path runs its own default steps, like the name
    import shutil

    from rimcli.api import load_model

    copy = tmp_path / "copy.safetensors"
    shutil.copy(wdir / entry["file"], copy)
    loaded = load_model(str(copy))
    assert loaded.default_steps == 2 and loaded.tasks == ["denoise"] and loaded.name == "my-rim"

    # by default export writes to the user's models folder (never the installed package), where
    # `rim models` lists it and a name finds it
    import os

    from rimcli.weights import resolve

    r = _rim("export", str(tmp_path / "run"), "--name", "mine")
    assert r.returncode == 0, r.stderr
    user = Path(os.environ["RIM_USER_MODELS"])
    assert (user / "mine.safetensors").is_file()
    assert resolve("mine")[1].default_steps == 2
    r = _rim("models", "--json", "-")
    listed = {m["name"]: m["source"] for m in json.loads(r.stdout)["models"]}
    assert listed["mine"] == "user" and listed["rim-gray-denoise"] == "bundled"


def test_ddp_two_gloo_ranks_stay_identical(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    # --standalone: torchrun picks a free local port itself (no race with a probed port)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "rimcli",
           "train", "--data", str(data_dir), "--out", str(out),
           "--task", "denoise", "--channels", "1", "--patch", "24", "--batch", "2", "--hidden", "8", "--steps", "2",
           "--iters", "6", "--val-every", "3", "--val-split", "2", "--device", "cpu", "--threads", "1", "--no-compile",
           "-q"]
    cfg = tmp_path / "val.json"
    cfg.write_text(json.dumps({"val_images": 2, "val_crop": 32}))
    r = subprocess.run([*cmd, "--config", str(cfg)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    recs = [x for x in read_log(out) if "val" in x]
    assert [x["iter"] for x in recs] == [3, 6]
    for x in recs:
        assert len(x["rank_digests"]) == 2 and x["rank_digests"][0] == x["rank_digests"][1]
    # the replicas really trained: weights moved between the two checkpoints
    assert recs[0]["rank_digests"][0] != recs[1]["rank_digests"][0]
    ck = torch.load(out / "last.pt", weights_only=True)
    assert len(ck["rng"]) == 2 and not torch.equal(ck["rng"][0], ck["rng"][1])  # each rank its own data stream


def test_time_limit_stops_cleanly_and_resumes(data_dir: Path, tmp_path: Path) -> None:
    run = train(_cfg(data_dir, tmp_path / "t", iters=1000, val_every=500), time_limit=0.0)
    ck = torch.load(run / "last.pt", weights_only=True)
    assert ck["iteration"] == 1  # stopped after the first iteration, with a checkpoint
    train(_cfg(data_dir, tmp_path / "t", iters=3, val_every=500), resume=True)
    assert torch.load(run / "last.pt", weights_only=True)["iteration"] == 3


def test_low_sigma_draws_that_fraction_of_noise_levels_from_0_to_5() -> None:
    from rimcli.training import LOW_SIGMA, corrupt

    x = torch.rand(4000, 1, 2, 2)
    for frac in (0.0, 0.25, 1.0):
        cfg = TrainConfig(sigma_range=[20.0, 75.0], low_sigma=frac)
        _, _, sigma = corrupt(cfg, "denoise", x, torch.Generator().manual_seed(0))
        low = sigma * 255 <= LOW_SIGMA
        assert low.float().mean().item() == pytest.approx(frac, abs=0.03)
        assert bool(((sigma * 255 >= 20) | low).all())
    with pytest.raises(TrainError, match="low_sigma"):
        TrainConfig.from_dict({"low_sigma": 1.5})


def test_clip_fraction_stores_that_fraction_of_denoising_inputs_as_8_bit_files() -> None:
    from rimcli.training import corrupt

    x = torch.rand(2000, 1, 4, 4)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    plain = corrupt(TrainConfig(sigma_range=[50.0, 50.0]), "denoise", x, g())[1]
    for frac in (0.25, 1.0):
        y = corrupt(TrainConfig(sigma_range=[50.0, 50.0], clip_fraction=frac), "denoise", x, g())[1]
        as_file = ((y * 255).round() == y * 255).flatten(1).all(1) & (y >= 0).flatten(1).all(1) & (y <= 1).flatten(1).all(1)
        assert as_file.float().mean().item() == pytest.approx(frac, abs=0.03)
        # the same noise, only clipped and rounded: a file never differs by more than half a level
        # from the float measurement clipped to [0, 1]
        assert (y[as_file] - plain[as_file].clamp(0, 1)).abs().max().item() <= 0.5 / 255 + 1e-6
        torch.testing.assert_close(y[~as_file], plain[~as_file])
    # a blurred photo is a stored file too; its 8-bit copy is of the same blurred, noised draw
    blur = {"task": "deblur", "sigma_range": [25.0, 25.0]}
    xb = (torch.rand(400, 1, 16, 16) < 0.5).float().expand(-1, 3, -1, -1)  # saturated: the noise leaves [0, 1]
    plain_b = corrupt(TrainConfig(**blur), "deblur", xb, g())[1]
    assert plain_b.min() < 0 and plain_b.max() > 1
    yb = corrupt(TrainConfig(**blur, clip_fraction=0.5), "deblur", xb, g())[1]
    as_file = ((yb * 255).round() == yb * 255).flatten(1).all(1)
    assert as_file.float().mean().item() == pytest.approx(0.5, abs=0.08)
    assert yb[as_file].min() >= 0 and yb[as_file].max() <= 1
    assert (yb[as_file] - plain_b[as_file].clamp(0, 1)).abs().max().item() <= 0.5 / 255 + 1e-6
    torch.testing.assert_close(yb[~as_file], plain_b[~as_file])
    # other tasks' measurements are not images a user stores: untouched
    xs = torch.rand(4, 1, 12, 12)
    sr = {"task": "superres", "sigma_range": [0.0, 0.0]}
    torch.testing.assert_close(corrupt(TrainConfig(**sr, clip_fraction=1.0), "superres", xs, g())[1],
                               corrupt(TrainConfig(**sr), "superres", xs, g())[1])
    with pytest.raises(TrainError, match="clip_fraction"):
        TrainConfig.from_dict({"clip_fraction": -0.1})


def test_channels_last_training_matches_the_plain_layout(data_dir: Path, tmp_path: Path) -> None:
    """NHWC is a layout, not a different computation: the same run in either layout ends with
    the same weights up to float rounding."""
    torch.set_num_threads(1)
    finals = []
    for cl in (False, True):
        run = train(_cfg(data_dir, tmp_path / f"cl{cl}", iters=6, val_every=6, arch="msrim", sigma_input=True,
                         channels_last=cl, low_sigma=0.2))
        finals.append(torch.load(run / "last.pt", weights_only=True)["model"])
    for k, v in finals[0].items():
        torch.testing.assert_close(finals[1][k], v, rtol=1e-3, atol=1e-4)


def test_auto_amp_and_layout_follow_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--amp auto` (the default) is bf16 where the hardware has it natively, as for inference;
    NHWC is on by default for a CPU only; explicit settings win."""
    import rimcli.inference as inference

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    for native in (True, False):
        monkeypatch.setattr(inference, "native_bf16", lambda native=native: native)
        assert autocast_dtype("auto", cpu) is (torch.bfloat16 if native else None)
        assert autocast_dtype("off", cpu) is None and autocast_dtype("bf16", cpu) is torch.bfloat16
    cfg = TrainConfig()
    assert cfg.amp == "auto" and channels_last(cfg, cpu) and not channels_last(cfg, gpu)
    assert not channels_last(TrainConfig(channels_last=False), cpu) and channels_last(TrainConfig(channels_last=True), gpu)
    with pytest.raises(TrainError, match="amp must be auto, off, bf16 or fp16"):
        TrainConfig(amp="fp8").validate()


def test_a_bf16_training_step_follows_the_fp32_one() -> None:
    """The loss and gradients of one unrolled step under bf16 autocast (NHWC, as on a CPU with
    native bf16) agree with fp32 NCHW to bf16's precision (measured: 8e-5 of the loss, gradient
    cosine 0.99999)."""
    from rimcli.model import RIM
    from rimcli.operators import Denoise
    from rimcli.training import Unrolled, step_weights, unrolled_loss

    torch.manual_seed(0)
    rim = RIM(RIMConfig(channels=1, hidden=16, sigma_input=True))
    x = torch.rand(4, 1, 1, 1) * 0.6 + 0.2 + 0.1 * torch.randn(4, 1, 32, 32).cumsum(-1).cumsum(-2) / 32
    x = x.clamp(0, 1)
    sigma = torch.full((4,), 25 / 255)
    y = x + sigma[:, None, None, None] * torch.randn_like(x)
    results = []
    for amp, layout in ((None, torch.contiguous_format), (torch.bfloat16, torch.channels_last)):
        rim.zero_grad()
        net = Unrolled(rim.to(memory_format=layout))
        loss = unrolled_loss(net(y.contiguous(memory_format=layout), Denoise(), sigma, 4, amp), x, step_weights("equal", 4))
        loss.backward()
        results.append((loss.item(), torch.cat([p.grad.flatten() for p in rim.parameters() if p.grad is not None])))
    (l32, g32), (l16, g16) = results
    assert abs(l16 - l32) < 1e-3 * l32
    assert torch.nn.functional.cosine_similarity(g16, g32, dim=0) > 0.999


def test_auto_compile_follows_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--compile` unset: on for a CPU that can build kernels, off on a GPU (recipes probe it);
    explicit settings win."""
    import rimcli.training as training

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    for found in (True, False):
        monkeypatch.setattr(training, "cpu_compiler", lambda found=found: found)
        assert compiles(TrainConfig(), cpu) is found and not compiles(TrainConfig(), gpu)
        assert compiles(TrainConfig(compile=True), gpu) and not compiles(TrainConfig(compile=False), cpu)


def test_cpu_compiler_is_looked_up(monkeypatch: pytest.MonkeyPatch) -> None:
    import rimcli.runtime as runtime

    monkeypatch.setattr(runtime.sys, "platform", "linux")
    monkeypatch.setenv("CXX", "my-c++")
    monkeypatch.setattr(runtime.shutil, "which", lambda name: "/opt/bin/my-c++" if name == "my-c++" else None)
    assert runtime.cpu_compiler()
    monkeypatch.delenv("CXX")
    assert not runtime.cpu_compiler()  # g++ is not there either
    monkeypatch.setattr(runtime.shutil, "which", lambda name: "/usr/bin/g++" if name == "g++" else None)
    assert runtime.cpu_compiler()
    monkeypatch.setattr(runtime.sys, "platform", "win32")
    assert not runtime.cpu_compiler()


@needs_compiler
def test_compiled_training_matches_eager(data_dir: Path, tmp_path: Path) -> None:
    """A compiled cell (its replicate padding traced as edge slices) trains as the eager one does:
    the same run ends with the same weights up to float rounding, validation included; the meta
    records it."""
    torch.set_num_threads(1)
    finals = []
    for comp in (False, True):
        run = train(_cfg(data_dir, tmp_path / f"c{comp}", iters=3, val_every=3, sigma_input=True, compile=comp))
        finals.append(torch.load(run / "last.pt", weights_only=True)["model"])
        assert json.loads((run / "config.json").read_text())["compile"] is comp
    for k, v in finals[0].items():
        torch.testing.assert_close(finals[1][k], v, rtol=1e-3, atol=1e-4)


@needs_compiler
def test_auto_compile_falls_back_to_eager(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under auto compile a kernel build that fails (here: a C++ compiler that is not there) runs
    eagerly rather than ending the run; an explicit --compile raises."""
    import torch._dynamo
    import torch._inductor.config

    import rimcli.training as training

    torch.set_num_threads(1)
    monkeypatch.setattr(training, "cpu_compiler", lambda: True)
    monkeypatch.setattr(torch._inductor.config.cpp, "cxx", (None, str(tmp_path / "no-such-c++")))
    torch._dynamo.reset()  # kernels cached by earlier tests would hide the missing compiler
    run = train(_cfg(data_dir, tmp_path / "auto", iters=2, val_every=2))
    assert torch.load(run / "last.pt", weights_only=True)["iteration"] == 2
    torch._dynamo.reset()
    with pytest.raises(Exception, match="no-such-c"):
        train(_cfg(data_dir, tmp_path / "explicit", iters=2, val_every=2, compile=True))
    torch._dynamo.reset()


def test_channels_last_trains_projections(data_dir: Path, tmp_path: Path) -> None:
    """Projections measure vectors, not images: --channels-last must not reshape them, and the
    run computes what the plain layout does."""
    torch.set_num_threads(1)
    finals = []
    for cl in (False, True):
        run = train(_cfg(data_dir, tmp_path / f"cl{cl}", task="3task", patch=32, iters=2, val_every=2,
                         sigma_input=True, channels_last=cl))
        finals.append(torch.load(run / "last.pt", weights_only=True)["model"])
    for k, v in finals[0].items():
        torch.testing.assert_close(finals[1][k], v, rtol=1e-3, atol=1e-4)


def test_super_resolution_validation_scores_like_the_benchmark() -> None:
    """SR validation is `metrics.sr_psnr` (Y, `scale` pixels shaved) of the 8-bit-rounded output:
    damage inside the shaved border costs nothing there, and other tasks score every pixel."""
    from rimcli.metrics import sr_psnr
    from rimcli.training import val_psnr

    g = torch.Generator().manual_seed(0)
    x = torch.round(torch.rand(2, 3, 24, 24, generator=g) * 255) / 255
    x_hat = (x + 0.02 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    expect = np.mean([sr_psnr(np.round(a.permute(1, 2, 0).numpy() * 255), b.permute(1, 2, 0).numpy() * 255, 3)
                      for a, b in zip(x_hat, x, strict=True)])
    sr = {"task": "superres", "scale": 3}
    assert val_psnr(sr, x_hat, x) == pytest.approx(expect, abs=1e-6)
    edged = x_hat.clone()
    edged[..., :3, :] = 1 - edged[..., :3, :]
    assert val_psnr(sr, edged, x) == pytest.approx(val_psnr(sr, x_hat, x), abs=1e-9)
    dn = {"task": "denoise", "sigma": 25}
    assert val_psnr(dn, edged, x) < val_psnr(dn, x_hat, x) - 3


def test_init_from_starts_a_run_from_other_weights(data_dir: Path, tmp_path: Path) -> None:
    """--init-from: a gray run's checkpoint starts a colour run (weights folded by transfer_weights);
    a narrower width is one clear error (a wider one starts widened: test_model)."""
    from rimcli.model import RIM, transfer_weights
    from rimcli.weights import sha256

    src = train(_cfg(data_dir, tmp_path / "src", iters=4, val_every=4))
    run = train(_cfg(data_dir, tmp_path / "ft", channels=3, iters=1, lr=1e-12, warmup=1, val_every=1,
                     init_from=str(src / "last.pt")))
    gray = RIM(RIMConfig(channels=1, hidden=8))
    gray.load_state_dict(torch.load(src / "last.pt", weights_only=True)["model"])
    expect = RIM(RIMConfig(channels=3, hidden=8))
    transfer_weights(gray, expect)
    ck = torch.load(run / "last.pt", weights_only=True)
    assert ck["meta"]["init_from_sha256"] == sha256(src / "last.pt")  # which weights, not just a path
    got = ck["model"]
    for k, v in expect.state_dict().items():
        torch.testing.assert_close(got[k], v, rtol=0, atol=1e-8)
    with pytest.raises(TrainError, match="init-from"):
        train(_cfg(data_dir, tmp_path / "bad", hidden=4, init_from=str(src / "last.pt")))


def test_init_from_takes_a_model_name(data_dir: Path, tmp_path: Path) -> None:
    """--init-from NAME starts from that model's file (`rim models`), as the GPU recipes name the
    bundled model they fine-tune; an unknown name is one clear error."""
    from rimcli.export import export_run
    from rimcli.weights import WeightsError, load_file, user_models_dir

    src = train(_cfg(data_dir, tmp_path / "src", iters=2, val_every=2))
    entry = export_run(src, "my-gray")  # into the user's models folder
    run = train(_cfg(data_dir, tmp_path / "ft", iters=1, lr=1e-12, warmup=1, val_every=1, init_from="my-gray"))
    ck = torch.load(run / "last.pt", weights_only=True)
    assert ck["meta"]["init_from_sha256"] == entry.sha256
    for k, v in load_file(user_models_dir() / entry.file).state_dict().items():
        torch.testing.assert_close(ck["model"][k], v, rtol=0, atol=1e-8)
    with pytest.raises(WeightsError, match="unknown model 'no-such-model'"):
        train(_cfg(data_dir, tmp_path / "bad", init_from="no-such-model"))
