#!/usr/bin/env python
"""Compare training runs: validation PSNR against training time and against training FLOPs.

    python scripts/compare_runs.py runs/a runs/b --png runs/compare.png [--until 420]

Reads each run's config.json and log.jsonl (written by `rim train`). Training time is summed
from the logged throughput (validation excluded); training FLOPs count the cell's convolutions
(`TrainConfig.flops_per_iteration`: MACs x 2 x 3 for forward + backward x T steps x batch).
`--until S` compares every run at the same training time S (the last validation before it).
Prints a markdown table; `--png` also draws the two curves.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rimcli.model import RIM, count_macs
from rimcli.training import TrainConfig, read_log


def curve(run: Path) -> tuple[TrainConfig, int, list[tuple[int, float, float, float]]]:
    """(config, MACs per patch-step, [(iteration, seconds, TFLOPs, val PSNR)])."""
    cfg = TrainConfig.from_dict(json.loads((run / "config.json").read_text())["config"])
    macs = count_macs(RIM(cfg.model_config()), cfg.patch, cfg.patch)
    flops_per_iter = cfg.flops_per_iteration()
    seconds, last_iter, points = 0.0, 0, []
    for rec in read_log(run):
        if "patches_per_s" in rec:
            seconds += (rec["iter"] - last_iter) * cfg.batch / rec["patches_per_s"]
            last_iter = rec["iter"]
        elif "val_psnr" in rec:
            points.append((rec["iter"], seconds, rec["iter"] * flops_per_iter / 1e12, rec["val_psnr"]))
    return cfg, macs, points


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--png", type=Path)
    ap.add_argument("--until", type=float, help="compare at this many training seconds")
    a = ap.parse_args()
    print("| run | arch | hidden | T | MACs/px/step | iterations | train s | TFLOPs | patches/s | val PSNR at T |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    curves = {}
    for run in a.runs:
        cfg, macs, pts = curve(run)
        if a.until is not None:
            pts = [p for p in pts if p[1] <= a.until] or pts[:1]
        head = f"| {run.name} | {cfg.arch} | {cfg.hidden} | {cfg.steps} | {macs / cfg.patch**2:,.0f} |"
        if not pts:
            print(f"{head} no validation yet | | | | |")
            continue
        curves[run.name] = pts
        it, s, tf, v = pts[-1]
        print(f"{head} {it} | {s:.0f} | {tf:.1f} | {it * cfg.batch / max(s, 1e-9):.1f} | {v:.2f} |")
    if a.png:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(9, 3.4), dpi=100)
        FigureCanvasAgg(fig)
        ax1, ax2 = fig.subplots(1, 2, sharey=True)
        for name, pts in curves.items():
            ax1.plot([p[1] / 60 for p in pts], [p[3] for p in pts], marker="o", label=name)
            ax2.plot([p[2] for p in pts], [p[3] for p in pts], marker="o", label=name)
        ax1.set_xlabel("training minutes")
        ax2.set_xlabel("training TFLOPs")
        ax1.set_ylabel("validation PSNR at T (dB)")
        ax1.legend()
        fig.tight_layout()
        fig.savefig(a.png)


if __name__ == "__main__":
    main()
