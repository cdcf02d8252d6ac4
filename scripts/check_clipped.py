#!/usr/bin/env python
"""Clipped pixels: how much does the censored likelihood of 8-bit photos gain over the plain
Gaussian one, at the same model and steps?

A photo stores A x + n clipped to 0..255, so a pixel at 0 or 255 says only that A x + n was at or
beyond that bound. The censored (Tobit) likelihood (`operators.censored_residual`, on for operators
with `censored = True`) scores such pixels so; the Gaussian variant treats them as exact
observations, which pulls dark and bright regions towards the clip value. For each image set and
sigma, 8-bit noisy copies (seeded) of the clean image, or of its Gaussian blur with `--blur S`
(deblurring, default model the bundled deblurring one), are restored both ways and scored against
the clean image (PSNR of the 8-bit outputs).

Image sets, both from the training folder (never the benchmark sets):
  held-out   the `val_split` images that `rim train` keeps out
  saturated  the N training images with the most clean pixels at 0 or 255 (the bundled models
             were trained on them, with unclipped noise: this shows the effect, not a quality figure)

    python scripts/check_clipped.py --data ../shared/data/train/bsds400 --channels 1
    python scripts/check_clipped.py --data D --channels 3 --sets held-out --sigmas 25 --json out.json
    python scripts/check_clipped.py --data D --channels 3 --blur 2 --sigmas 2,5,15
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from rimcli.api import load_model
from rimcli.inference import restore
from rimcli.io import GRAY_LEVELS
from rimcli.metrics import psnr_batch
from rimcli.operators import Denoise, LinearOperator
from rimcli.tasks import as_8bit, deblur_operator
from rimcli.training import TrainConfig, _split, list_images, load_images


def operator(blur: float, censored: bool) -> LinearOperator:
    op = deblur_operator(blur) if blur > 0 else Denoise()
    op.censored = censored  # False: the plain Gaussian likelihood, clipped pixels count as exact
    return op


def image_set(name: str, data: str, channels: int, count: int, val_split: int) -> list[torch.Tensor]:
    if name == "held-out":
        files = _split(TrainConfig(data=data, val_split=val_split))[1]
    else:
        files = list_images(Path(data))
        luma = load_images(files, 1)
        saturated = [float(((g == 0) | (g == GRAY_LEVELS)).float().mean()) for g in luma]
        files = [files[i] for i in np.argsort(saturated, kind="stable")[::-1][:count]]
    return [t.float() / GRAY_LEVELS for t in load_images(files, channels)]


def psnr(out: torch.Tensor, clean: torch.Tensor) -> float:
    return float(psnr_batch(as_8bit(out), clean))  # as the saved file holds it


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="the training folder")
    ap.add_argument("--channels", type=int, default=3, choices=[1, 3])
    ap.add_argument("--model", default=None, help="bundled name or .safetensors file (default: the bundled one for the task)")
    ap.add_argument("--blur", type=float, default=0.0, help="Gaussian blur std (pixels): deblurring; 0: denoising")
    ap.add_argument("--sets", default="held-out,saturated")
    ap.add_argument("--count", type=int, default=8, help="images in the saturated set")
    ap.add_argument("--sigmas", default="15,25,50")
    ap.add_argument("--val-split", type=int, default=TrainConfig.val_split)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    lm = load_model(a.model, "deblur" if a.blur > 0 else "denoise", a.channels)
    steps = lm.default_steps
    rows = []
    task = f"deblurring (blur std {a.blur:g} px)" if a.blur > 0 else "denoising"
    print(f"{lm.name}, {steps} steps, {task}; mean PSNR (dB) of 8-bit outputs")
    print("| images | sigma | clipped pixels | Gaussian | censored | gain | worst image | best image |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    ops = {key: operator(a.blur, key == "censored") for key in ("gaussian", "censored")}
    for set_name in a.sets.split(","):
        images = image_set(set_name, a.data, a.channels, a.count, a.val_split)
        for sigma in (float(s) for s in a.sigmas.split(",")):
            g = torch.Generator().manual_seed(0)
            res: dict[str, list[float]] = {"gaussian": [], "censored": [], "clipped": []}
            for clean in images:
                x = clean.unsqueeze(0)
                y = as_8bit(ops["censored"].A(x) + (sigma / GRAY_LEVELS) * torch.randn(x.shape, generator=g))
                res["clipped"].append(float(((y == 0) | (y == 1)).float().mean()))
                for key, op in ops.items():
                    res[key].append(psnr(restore(y, op, sigma / GRAY_LEVELS, lm.net, steps).image, x))
            gain = np.subtract(res["censored"], res["gaussian"])
            row = {"images": set_name, "sigma": sigma, "clipped": float(np.mean(res["clipped"])),
                   "gaussian": float(np.mean(res["gaussian"])), "censored": float(np.mean(res["censored"])),
                   "per_image_gain": gain.tolist()}
            rows.append(row)
            print(f"| {set_name} ({len(images)}) | {sigma:g} | {100 * row['clipped']:.1f}% | {row['gaussian']:.2f} | "
                  f"{row['censored']:.2f} | {gain.mean():+.2f} | {gain.min():+.2f} | {gain.max():+.2f} |", flush=True)
    if a.json:
        a.json.write_text(json.dumps({"model": lm.name, "steps": steps, "blur": a.blur, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
