#!/usr/bin/env python
"""Time RIM inference (`restore`, denoising) on a 481x321 gray and RGB image.

For the closing note of issue 2: the default architecture's parameter count and its time for
10 steps. Random image content (the network's cost does not depend on it); warm-up once, then
the median of --repeats runs. Untiled, so the figure is the network's cost, not the tiling's.

    python scripts/bench_inference.py                      # RIMConfig defaults, CPU
    python scripts/bench_inference.py --hidden 32 48 64    # other widths
    python scripts/bench_inference.py --device cuda --precision bf16
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from rimcli.inference import resolve_device, resolve_precision, restore
from rimcli.model import ARCHS, RIM, RIMConfig
from rimcli.operators import Denoise


def time_restore(model: RIM, channels: int, args: argparse.Namespace, device: torch.device) -> float:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, channels, args.height, args.width, generator=g)
    y = Denoise().measure(x, args.sigma / 255, g)

    def run() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        restore(y, Denoise(), args.sigma / 255, model, args.steps, device=device, precision=args.precision)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    run()  # warm-up: allocator, kernels, lazy inits
    return statistics.median(run() for _ in range(args.repeats))


def main() -> None:
    default = RIMConfig()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, nargs="+", default=[default.hidden], help=f"widths (default {default.hidden})")
    ap.add_argument("--arch", choices=ARCHS, default=default.arch)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--width", type=int, default=481)
    ap.add_argument("--height", type=int, default=321)
    ap.add_argument("--sigma", type=float, default=25.0, help="noise std in gray levels")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16", "auto"])
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
        resolve_precision(args.precision, device)  # fail early on e.g. bf16 on CPU
    except ValueError as e:  # DeviceError is a ValueError
        raise SystemExit(f"error: {e}") from None
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or platform.machine()}"
    print(f"device: {device} ({where}), torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"precision {args.precision}, {args.steps} steps, {args.width}x{args.height}, median of {args.repeats}\n")

    rows = []
    for hidden in args.hidden:
        times, params = {}, {}
        for channels in (1, 3):
            model = RIM(RIMConfig(channels=channels, hidden=hidden, arch=args.arch)).eval()
            params[channels] = model.num_parameters()
            times[channels] = time_restore(model, channels, args, device)
        rows.append((hidden, params, times))

    print("| arch | hidden | params (gray / RGB) | gray s | RGB s | gray ms/step |")
    print("| --- | --- | --- | --- | --- | --- |")
    for hidden, params, times in rows:
        tag = " (default)" if hidden == default.hidden and args.arch == default.arch else ""
        print(f"| {args.arch} | {hidden}{tag} | {params[1]:,} / {params[3]:,} | {times[1]:.3f} | {times[3]:.3f} "
              f"| {1000 * times[1] / args.steps:.1f} |")


if __name__ == "__main__":
    main()
