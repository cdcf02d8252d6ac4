"""Training throughput: patches/s and seconds per iteration for the RIM, and the data path alone.

    python scripts/bench_train.py                       # CPU, default model
    python scripts/bench_train.py --device cuda --amp bf16,off --compile both
    python scripts/bench_train.py --amp off,bf16 --channels-last both --compile both --first-cell bdf1c0c
                                                        # every CPU mode against the first cell

Prints a markdown table with achieved GFLOP/s (`TrainConfig.flops_per_iteration`: the cell's
convolutions, forward + backward) and each mode's speed-up over the plain fp32 NCHW eager path of
the same model, timed in the same process. The data row times crop sampling + corruption alone,
to show whether the input pipeline could bottleneck the GPU. `--first-cell REV` also times the
cell as first landed (`src/rimcli/model.py` at git revision REV, read with `git show`: run it in a
checkout) on the same batches in plain fp32 NCHW, and prints the best mode's ratio to it.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from rimcli.inference import logit, resolve_device
from rimcli.model import RIM, RIMConfig
from rimcli.operators import as_sigma
from rimcli.runtime import tune_allocator
from rimcli.training import (
    PatchSampler,
    TrainConfig,
    Unrolled,
    autocast_dtype,
    compile_cell,
    corrupt,
    step_weights,
    unrolled_loss,
)


def _images(n: int, channels: int, size: int = 321) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (channels, size, size * 3 // 2), generator=g, dtype=torch.uint8) for _ in range(n)]


def time_data(cfg: TrainConfig, iters: int) -> float:
    g = torch.Generator().manual_seed(0)
    sampler = PatchSampler(_images(16, cfg.channels), cfg.patch, g)
    t = time.perf_counter()
    for _ in range(iters):
        corrupt(cfg, cfg.tasks()[0], sampler.batch(cfg.batch), g)
    return (time.perf_counter() - t) / iters


def time_train(cfg: TrainConfig, device: torch.device, amp: str, compile_: bool, iters: int, warmup: int,
               channels_last: bool = False) -> list[float]:
    torch.manual_seed(0)
    rim = RIM(cfg.model_config()).to(device)
    if channels_last:
        rim = rim.to(memory_format=torch.channels_last)
    if compile_:
        compile_cell(rim)
    net = Unrolled(rim)
    opt = torch.optim.Adam(rim.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    sampler = PatchSampler(_images(16, cfg.channels), cfg.patch, g)
    dtype = autocast_dtype(amp, device)
    w = step_weights(cfg.loss_weights, cfg.steps)
    times = []
    for i in range(warmup + iters):
        x = sampler.batch(cfg.batch)
        op, y, sigma = corrupt(cfg, cfg.tasks()[0], x, g)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        y = y.to(device)
        if channels_last:
            y = y.contiguous(memory_format=torch.channels_last)
        xs = net(y, op.to(device), sigma.to(device), cfg.steps, dtype)
        loss = unrolled_loss(xs, x.to(device), w)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return times


def load_first_cell(rev: str):  # noqa: ANN201 - the loaded module
    """`rimcli.model` as it was at git revision `rev` (self-contained then: torch only)."""
    root = Path(__file__).resolve().parents[1]
    try:
        text = subprocess.run(["git", "-C", str(root), "show", f"{rev}:src/rimcli/model.py"], check=True,
                              capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit(f"--first-cell {rev}: cannot read src/rimcli/model.py at that revision ({e})")
    path = Path(tempfile.mkdtemp()) / "first_model.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("first_model", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def time_first_cell(module, cfg: TrainConfig, iters: int, warmup: int) -> list[float]:  # noqa: ANN001
    """The first cell's training step, fp32 NCHW on the CPU: its loop (x, likelihood gradient,
    state; no noise-level input), the same batches and the same loss as `time_train`."""
    torch.manual_seed(0)
    rim = module.RIM(module.RIMConfig(channels=cfg.channels, hidden=cfg.hidden))
    opt = torch.optim.Adam(rim.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    sampler = PatchSampler(_images(16, cfg.channels), cfg.patch, g)
    w = step_weights(cfg.loss_weights, cfg.steps)
    times = []
    for i in range(warmup + iters):
        x = sampler.batch(cfg.batch)
        op, y, sigma = corrupt(cfg, cfg.tasks()[0], x, g)
        t = time.perf_counter()
        s = as_sigma(sigma, y.shape[0], y)
        eta = logit(op.init(y))
        xt = torch.sigmoid(eta)
        state, xs = rim.init_state(xt), []
        for _ in range(cfg.steps):
            delta, state = rim(xt, op.grad(xt, y, s, rim.eps), state)
            eta = eta + delta
            xt = torch.sigmoid(eta)
            xs.append(xt)
        loss = unrolled_loss(torch.stack(xs), x, w)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--task", default="denoise")
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--hidden", type=int, default=RIMConfig.hidden)
    ap.add_argument("--patch", type=int, default=48)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--amp", default="off", help="comma list of off,bf16,fp16")
    ap.add_argument("--compile", default="off", choices=["off", "on", "both"])
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--arch", default=RIMConfig.arch)
    ap.add_argument("--sigma-input", action="store_true")
    ap.add_argument("--channels-last", default="off", choices=["off", "on", "both"])
    ap.add_argument("--no-malloc-tuning", action="store_true", help="leave glibc's allocator thresholds as they are")
    ap.add_argument("--first-cell", metavar="REV", help="also time the cell of git revision REV (CPU, fp32 NCHW)")
    a = ap.parse_args()
    first = load_first_cell(a.first_cell) if a.first_cell else None
    if not a.no_malloc_tuning:
        tune_allocator()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    if first is not None and device.type != "cpu":
        ap.error("--first-cell times the first cell on the CPU: add --device cpu")
    cfg = TrainConfig(task=a.task, channels=a.channels, hidden=a.hidden, patch=a.patch, batch=a.batch, steps=a.steps,
                      arch=a.arch, sigma_input=a.sigma_input)
    cfg.validate()
    compiles = {"off": [False], "on": [True], "both": [False, True]}[a.compile]
    layouts = {"off": [False], "on": [True], "both": [False, True]}[a.channels_last]
    print(f"device {device}, task {a.task}, arch {a.arch}, {a.channels} ch, hidden {a.hidden}, patch {a.patch}, "
          f"batch {a.batch}, T={a.steps}, malloc tuning {'off' if a.no_malloc_tuning else 'on'}")
    gflop = cfg.flops_per_iteration() / 1e9
    print(f"{gflop:.1f} GFLOP per iteration")
    print("| what | amp | compile | channels-last | s/iter (median) | patches/s | GFLOP/s | x plain fp32 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    d = time_data(cfg, max(3, a.iters))
    print(f"| data path only | - | - | - | {d:.4f} | {a.batch / d:.0f} | - | - |")
    plain = statistics.median(time_train(cfg, device, "off", False, a.iters, a.warmup, False))
    print(f"| train step (reference) | off | off | off | {plain:.4f} | {a.batch / plain:.1f} | {gflop / plain:.1f} | 1.00 |")
    best = plain
    for amp in a.amp.split(","):
        for c in compiles:
            for cl in layouts:
                if (amp, c, cl) == ("off", False, False):
                    continue  # that is the reference row
                t = statistics.median(time_train(cfg, device, amp, c, a.iters, a.warmup, cl))
                best = min(best, t)
                print(f"| train step | {amp} | {'on' if c else 'off'} | {'on' if cl else 'off'} | {t:.4f} | "
                      f"{a.batch / t:.1f} | {gflop / t:.1f} | {plain / t:.2f} |")
    if first is not None:
        t = statistics.median(time_first_cell(first, cfg, a.iters, a.warmup))
        print(f"| first cell ({a.first_cell}) | off | off | off | {t:.4f} | {a.batch / t:.1f} | - | {plain / t:.2f} |")
        print(f"\nfastest mode: {t / best:.2f}x the patches/s of the first cell's plain fp32 NCHW step")


if __name__ == "__main__":
    main()
