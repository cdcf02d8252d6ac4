#!/usr/bin/env python
"""Score any model on a training run's own held-out crops and settings (never the benchmark sets).

    python scripts/validate_model.py runs/gpu5/gray/config.json rim-gray-denoise --steps 4,5,6
    python scripts/validate_model.py runs/gpu5/gray/config.json cand.safetensors --data D --json v.json

A run's log.jsonl holds its own checkpoints' validation curves (PSNR at every step to 2T). Before
its file replaces a bundled one, the bundled file needs the same figures: this runs the same
`training.validate` on the same crops, noise seeds and settings, in fp32 on the CPU. A run made
on the CPU logged exactly these figures; a GPU's convolutions (TF32 in cuDNN) differ slightly
(the H100 runs of 2026-11-24 logged means within 0.001 dB of their files scored here), so score
both files here before a close call. Prints each setting's curve and the mean over settings at
each of --steps (default: the run's T).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from rimcli import training
from rimcli.runtime import tune_allocator
from rimcli.train_config import TrainConfig
from rimcli.weights import WeightsError, resolve


def curves(config: Path, model: str, data: Path | None = None) -> dict[str, list[float]]:
    """Setting label -> PSNR at steps 1..2T of `model` (a name or a file) on the run's held-out
    crops; `data` replaces the run's image folder (moved since). Raises ValueError when these are
    not the images the run held out, or the model does not fit the run."""
    run = json.loads(config.read_text())
    cfg = TrainConfig.from_dict(run["config"])
    if data is not None:
        cfg.data = str(data)
    files = training.held_out(cfg)
    if run.get("val_images") and [f.name for f in files] != run["val_images"]:
        raise ValueError(f"{cfg.data} does not hold out the images the run held out ({', '.join(run['val_images'][:3])}, ...); "
                         "give the run's image folder with --data")
    rim, _ = resolve(model)
    if rim.config.channels != cfg.channels:
        raise ValueError(f"{model} has {rim.config.channels} channel(s), the run {cfg.channels}")
    return training.validate(rim, cfg, training.validation_crops(cfg, files), torch.device("cpu"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", type=Path, help="a run's config.json (written by rim train)")
    ap.add_argument("model", help="a model name (rim models) or a .safetensors file")
    ap.add_argument("--steps", default="", help="comma list of T to average at (default: the run's T)")
    ap.add_argument("--data", type=Path, help="the run's training image folder, if it has moved")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    ap.add_argument("--json", type=Path, help="also write {model, curves, mean: {T: dB}} here")
    a = ap.parse_args()
    run_steps = TrainConfig.from_dict(json.loads(a.config.read_text())["config"]).steps
    try:
        steps = [int(s) for s in a.steps.split(",") if s.strip()] or [run_steps]
    except ValueError:
        ap.error(f"--steps takes whole numbers separated by commas, not {a.steps!r}")
    if not all(1 <= t <= 2 * run_steps for t in steps):
        ap.error(f"--steps must lie in 1..{2 * run_steps} (validation curves run to twice the run's T)")
    tune_allocator()  # the same steps' tensors again and again: keep their memory (rimcli.runtime)
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        found = curves(a.config, a.model, a.data)
    except (ValueError, WeightsError) as e:
        ap.error(str(e))
    for label, c in found.items():
        print(f"{label:22s} " + " ".join(f"{v:.3f}" for v in c))
    means = {t: training.val_score(found, t) for t in steps}
    for t, m in means.items():
        print(f"mean at T={t}: {m:.4f}")
    if a.json:
        a.json.write_text(json.dumps({"model": a.model, "curves": found, "mean": means}, indent=1))


if __name__ == "__main__":
    main()
