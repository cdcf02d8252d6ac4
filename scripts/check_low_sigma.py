#!/usr/bin/env python
"""Low-noise safety check: does a denoiser ever make a clean or lightly noisy photo worse?

For each held-out training-set image (the `val_split` images `rim train` keeps out; never the
benchmark sets) and each sigma, an 8-bit noisy copy is made as a user's file would be
(clean + seeded Gaussian noise, rounded and clipped to uint8), restored with `rimcli.denoise`
at that sigma, and scored against the clean image. Prints one row per sigma: mean PSNR of the
input and of the output, the worst per-image change, and how many images got worse.

    python scripts/check_low_sigma.py --data ../shared/data/train/bsds400 --channels 3
    python scripts/check_low_sigma.py --data D --model weights/rim-rgb-denoise.safetensors --json out.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import rimcli
from rimcli.metrics import psnr  # peak 255 on the uint8 images, inf for identical ones
from rimcli.training import TrainConfig, _split, load_images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="the training folder; its held-out images are used")
    ap.add_argument("--channels", type=int, default=3, choices=[1, 3])
    ap.add_argument("--model", default=None, help="bundled name or .safetensors file (default: the bundled one)")
    ap.add_argument("--sigmas", default="0,1,2,3,5")
    ap.add_argument("--val-split", type=int, default=TrainConfig.val_split)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    _, held_out = _split(TrainConfig(data=a.data, val_split=a.val_split))
    # decoded as training decodes them (gray: the same luma), HxW or HxWx3 uint8
    images = [t.numpy().transpose(1, 2, 0).squeeze(2) if a.channels == 1 else t.numpy().transpose(1, 2, 0)
              for t in load_images(held_out, a.channels)]
    rows = []
    print("| sigma | input PSNR | output PSNR | worst change | worse images |")
    print("| --- | --- | --- | --- | --- |")
    for sigma in (float(s) for s in a.sigmas.split(",")):
        rng = np.random.default_rng(0)
        pin, pout = [], []
        for clean in images:
            noisy = np.clip(np.round(clean + sigma * rng.standard_normal(clean.shape)), 0, 255).astype(np.uint8)
            out = rimcli.denoise(noisy, sigma=sigma, model=a.model)
            pin.append(psnr(noisy, clean))
            pout.append(psnr(out, clean))
        change = [o - i for i, o in zip(pin, pout, strict=True)] if sigma > 0 else [0.0] * len(pin)
        worse = int(sum(c < 0 for c in change))
        row = {"sigma": sigma, "input_psnr": float(np.mean(pin)), "output_psnr": float(np.mean(pout)),
               "worst_change": min(change), "worse": worse, "images": len(images), "per_image_output": pout}
        rows.append(row)
        print(f"| {sigma:g} | {row['input_psnr']:.2f} | {row['output_psnr']:.2f} | "
              f"{'-' if sigma == 0 else f'{min(change):+.2f}'} | {worse} of {len(images)} |")
    if a.json:
        a.json.write_text(json.dumps({"model": a.model, "images": [f.name for f in held_out], "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
