#!/usr/bin/env python
"""Speed of the bundled RIMs against BM3D and NL-means, measured in one run.

Seconds per 481x321 image (gray and RGB, sigma 25) for the RIM at its default steps and at the
precision `rim` uses on this CPU (bf16 where the CPU has native bf16, then also --fp32), BM3D
(CBM3D for RGB) and scikit-image NL-means with the benchmark's settings, plus a DnCNN-sized
plain conv net (17 conv layers, 64 channels, one forward pass) as a yardstick. Each method runs
once untimed (warm-up), then the median of --repeats runs is reported. On CUDA it also measures
throughput in megapixels/s (fp32 and bf16) for the RIM and the yardstick on batches of images.

    python scripts/bench_speed.py                         # CPU table, markdown on stdout
    python scripts/bench_speed.py --json runs/bench/speed.json
    python scripts/bench_speed.py --device cuda --batch 8 # adds the GPU throughput table

The image is generated (seeded, smooth plus texture, noisy at sigma 25): the networks' cost does
not depend on content, and BM3D's and NL-means' only weakly; pass --image to time a real one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from rimcli import baselines
from rimcli.api import DEFAULT_STEPS
from rimcli.benchmark import add_noise, machine_info
from rimcli.inference import precision_name, resolve_device, resolve_precision, restore
from rimcli.model import unroll_macs
from rimcli.operators import Denoise
from rimcli.weights import default_model, recorded_steps, resolve

SIGMA = 25.0


def make_image(h: int, w: int, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = 0.5 + 0.25 * np.sin(9 * xx) * np.cos(7 * yy) + 0.1 * rng.standard_normal((h, w))
    img = np.clip(base, 0, 1)
    return np.stack([np.roll(img, 5 * c, axis=1) for c in range(channels)], axis=2) if channels == 3 else img


def load_image(path: Path, channels: int) -> np.ndarray:
    from rimcli.datasets import read_uint8

    img = read_uint8(path).astype(np.float64) / 255.0
    if channels == 1 and img.ndim == 3:
        img = img.mean(axis=2)
    if channels == 3 and img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return img


def dncnn(channels: int, depth: int = 17, width: int = 64) -> nn.Module:
    """DnCNN's shape (Zhang et al. 2017) without batch norm, which folds into the convs at inference."""
    layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
    for _ in range(depth - 2):
        layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True)]
    layers.append(nn.Conv2d(width, channels, 3, padding=1))
    return nn.Sequential(*layers).eval()


def median_seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    once()  # warm-up: library loading, allocator, kernel selection
    return statistics.median(once() for _ in range(repeats))


def _batch(img: np.ndarray, n: int = 1) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))
    t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    return t.expand(n, -1, -1, -1).contiguous()


def cpu_table(args: argparse.Namespace) -> list[dict]:
    """Rows of (image kind, method key, detail, seconds); gray and RGB share method keys."""
    rows = []
    dev = torch.device("cpu")
    names = {"bm3d": ("BM3D", "bm3d.bm3d / bm3d_rgb (CBM3D)"), "nlm": ("NL-means", "skimage, benchmark settings")}
    for channels, kind in ((1, "gray"), (3, "RGB")):
        clean = load_image(args.image, channels) if args.image else make_image(args.height, args.width, channels)
        noisy = add_noise(clean, SIGMA, seed=0)
        y = _batch(noisy)
        name = (args.model_gray if channels == 1 else args.model_rgb) or default_model("denoise", channels)
        model, entry = resolve(name)
        steps = args.steps or recorded_steps(name, entry) or DEFAULT_STEPS
        gflop = 2 * unroll_macs(model, *clean.shape[:2], steps) / 1e9
        method = f"RIM, --steps {args.steps}" if args.steps else "RIM, default steps"  # say what was timed
        # `rim`'s own precision first (bf16 where the CPU has it natively), then --fp32 if that differs
        auto = precision_name(resolve_precision("auto", dev))
        for precision in dict.fromkeys((auto, "fp32")):
            sec = median_seconds(lambda m=model, y=y, s=steps, p=precision: restore(y, Denoise(), SIGMA / 255, m, s,
                                                                                    device="cpu", precision=p),
                                 args.repeats, dev)
            rows.append({"image": kind, "method": method + (", fp32" if precision != auto else ""),
                         "seconds": sec, "gflop": gflop, "precision": precision,
                         "detail": f"{name}: T={steps}, {model.num_parameters():,} params, {precision}"})
        for b in args.baselines:
            f = baselines.denoiser(b)
            sec = median_seconds(lambda f=f, n=noisy: f(n.copy(), SIGMA), args.repeats, dev)
            method, detail = names.get(b, (b, baselines.describe(b)))
            rows.append({"image": kind, "method": method, "seconds": sec, "detail": detail})
        net = dncnn(channels)
        gflop = 2 * clean.shape[0] * clean.shape[1] * sum(
            m.in_channels * m.out_channels * m.kernel_size[0] * m.kernel_size[1] for m in net.modules()
            if isinstance(m, nn.Conv2d)) / 1e9
        params = sum(p.numel() for p in net.parameters())
        for precision in dict.fromkeys((auto, "fp32")):  # at the RIM's precisions, for a like-for-like yardstick

            def fwd(n: nn.Module = net, y: torch.Tensor = y, p: str = precision) -> torch.Tensor:
                with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=p == "bf16"):
                    return n(y)

            rows.append({"image": kind, "method": "DnCNN-sized conv net (yardstick)" + (", fp32" if precision != auto else ""),
                         "seconds": median_seconds(fwd, args.repeats, dev), "gflop": gflop, "precision": precision,
                         "detail": f"17 conv layers x 64 ch, one pass, {params:,} params, {precision}"})
        for r in rows:
            r.setdefault("shape", list(clean.shape))
    return rows


def gpu_table(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Megapixels per second on batches of `args.batch` images, fp32 and bf16 autocast."""
    rows = []
    mp = args.batch * args.height * args.width / 1e6
    for channels, kind in ((1, "gray"), (3, "RGB")):
        y = _batch(make_image(args.height, args.width, channels), args.batch).to(device)
        name = (args.model_gray if channels == 1 else args.model_rgb) or default_model("denoise", channels)
        model, entry = resolve(name)
        steps = args.steps or recorded_steps(name, entry) or DEFAULT_STEPS
        net = dncnn(channels).to(device)
        for precision, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            sec = median_seconds(lambda m=model, y=y, s=steps, p=precision: restore(y, Denoise(), SIGMA / 255, m, s,
                                                                                    device=device, precision=p),
                                 args.repeats, device)
            rows.append({"image": kind, "precision": precision, "method": f"RIM {name} (T={steps})", "mp_per_s": mp / sec})

            def fwd(n: nn.Module = net, y: torch.Tensor = y, d: torch.dtype | None = dtype) -> torch.Tensor:
                with torch.no_grad(), torch.autocast("cuda", dtype=d, enabled=d is not None):
                    return n(y)

            sec = median_seconds(fwd, args.repeats, device)
            rows.append({"image": kind, "precision": precision, "method": "DnCNN-sized conv net (yardstick)",
                         "mp_per_s": mp / sec})
    return rows


def markdown(cpu: list[dict], gpu: list[dict], info: dict, args: argparse.Namespace) -> str:
    shape = cpu[0]["shape"] if cpu else [args.height, args.width]
    load = f", load average {info['load_avg_1min']} at start" if "load_avg_1min" in info else ""
    lines = [f"Seconds per {shape[1]}x{shape[0]} image (sigma {SIGMA:g}), median of {args.repeats} after a warm-up; "
             f"{info['cpu']}, {info['cpu_count']} logical CPUs, {info['torch_threads']} torch threads, "
             f"torch {info['torch']}{load}; {info['date']}.",
             "GFLOP/s counts the networks' convolutions (2 FLOPs per MAC) over the measured time.",
             "", "| method | gray s/image | RGB s/image | GFLOP/s gray / RGB | details |", "| --- | --- | --- | --- | --- |"]
    secs = {(r["image"], r["method"]): r["seconds"] for r in cpu}
    rate = {(r["image"], r["method"]): r["gflop"] / r["seconds"] for r in cpu if "gflop" in r}
    details: dict[str, list[str]] = {}
    for r in cpu:
        details.setdefault(r["method"], [])
        if r["detail"] not in details[r["method"]]:
            details[r["method"]].append(r["detail"])
    for m, d in details.items():
        flops = " / ".join(_cell(rate.get((im, m))) for im in ("gray", "RGB")) if (("gray", m) in rate) else "-"
        lines.append(f"| {m} | {_cell(secs.get(('gray', m)))} | {_cell(secs.get(('RGB', m)))} | {flops} | {'; '.join(d)} |")
    if gpu:
        lines += ["", f"GPU throughput ({info.get('gpu', 'CUDA')}), megapixels/s on batches of {args.batch} "
                  f"{args.width}x{args.height} images:", "",
                  "| method | image | fp32 MP/s | bf16 MP/s |", "| --- | --- | --- | --- |"]
        keys = list(dict.fromkeys((r["method"], r["image"]) for r in gpu))
        val = {(r["method"], r["image"], r["precision"]): r["mp_per_s"] for r in gpu}
        for m, im in keys:
            lines.append(f"| {m} | {im} | {val[(m, im, 'fp32')]:.1f} | {val[(m, im, 'bf16')]:.1f} |")
    return "\n".join(lines)


def _cell(v: float | None) -> str:
    return "-" if v is None else (f"{v:.3f}" if v < 10 else f"{v:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-gray", help="gray model (default: the bundled gray denoiser)")
    ap.add_argument("--model-rgb", help="RGB model (default: the bundled RGB denoiser)")
    ap.add_argument("--steps", type=int, help="RIM steps (default: each model's default_steps)")
    ap.add_argument("--baselines", default="bm3d,nlm", help="comma list of denoising baselines to time")
    ap.add_argument("--image", type=Path, help="time this image instead of a generated one")
    ap.add_argument("--width", type=int, default=481)
    ap.add_argument("--height", type=int, default=321)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto", help="auto or cuda[:N] adds the GPU table; cpu skips it")
    ap.add_argument("--batch", type=int, default=8, help="images per batch for GPU throughput")
    ap.add_argument("--json", type=Path, help="also write the figures and the machine as JSON (make_benchmarks_md reads it)")
    args = ap.parse_args()
    args.baselines = [b.strip() for b in args.baselines.split(",") if b.strip() and b.strip() != "none"]
    for b in args.baselines:
        baselines.denoiser(b)  # fail now on a missing bm3d
    device = resolve_device(args.device)
    info = machine_info("cpu") | {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    cpu = cpu_table(args)
    gpu = []
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        gpu = gpu_table(args, device)
    md = markdown(cpu, gpu, info, args)
    print(md)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        command = " ".join(["python", "scripts/bench_speed.py", *sys.argv[1:]])
        report = {"machine": info, "cpu": cpu, "gpu": gpu, "markdown": md, "command": command}
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
