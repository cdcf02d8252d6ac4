#!/usr/bin/env python
"""Write the blur kernels of the deblurring benchmark rows in BENCHMARKS.md (`--kernel`).

    python scripts/make_kernels.py runs/kernels
    rim benchmark cbsd68 --kernel runs/kernels/line9.npy,runs/kernels/disc3.npy,runs/kernels/shake13.npy --quantize

line9: a 9-px horizontal motion blur (straight: no path the deblurrer trains on is);
disc3: a defocus disc of radius 3 px; shake13: a 13-px camera-shake path (seed 2026, drawn by
the generator the deblurrer trains on, so that row favours it). The benchmark report gives the
sha256 of each normalised kernel, so a copy made here can be checked against it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from rimcli.operators import defocus_kernel, motion_kernel


def kernels() -> dict[str, np.ndarray]:
    return {
        "line9": np.pad(np.full((1, 9), 1 / 9), ((4, 4), (0, 0))),
        "disc3": defocus_kernel(3.0, 9).double().numpy(),
        "shake13": motion_kernel(13.0, 19, torch.Generator().manual_seed(2026)).double().numpy(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    out = ap.parse_args().folder
    out.mkdir(parents=True, exist_ok=True)
    for name, k in kernels().items():
        np.save(out / f"{name}.npy", k)
        print(out / f"{name}.npy")


if __name__ == "__main__":
    main()
