"""Record measured benchmark figures in the weights manifest.

    python scripts/record_metrics.py runs/bench [--weights-dir weights]

Reads every results.json under the folder (written by `rim benchmark --out`) and stores, for
each bundled model whose sha256 the report names, its PSNR/SSIM per dataset and setting under
`metrics.benchmarks`, plus a one-line `metrics.headline` for `rim models`. Figures of a file
with another sha256 are never attached: they were measured on different weights.

A model the folder names gets exactly the figures found there (older ones may belong to weights
it replaced), so give it every section of that model at once: after re-running some sections,
point it at a folder holding those and the untouched ones (copies are fine).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rimcli.benchmark_report import headline
from rimcli.weights import read_manifest, weights_dir, write_manifest


def _key(report: dict) -> str:
    key = report["benchmark"] + ("_deblur" if report.get("task") == "deblur" else "")
    return key + ("_quantized" if report.get("protocol", {}).get("quantize") else "")


def collect(folder: Path) -> dict[str, dict[str, dict]]:
    """sha256 -> benchmark key -> setting label -> figures."""
    found: dict[str, dict[str, dict]] = {}
    for path in sorted(folder.rglob("results.json")):
        report = json.loads(path.read_text())
        # a self-ensemble's or a bf16 run's figure belongs to the option (BENCHMARKS.md has it), not to
        # the file alone: the file's figures are its plain fp32 runs
        shas = {m["label"]: m.get("sha256") for m in report.get("models", [])
                if m.get("self_ensemble", 1) == 1 and m.get("precision", "fp32") == "fp32"}
        for run in report["runs"]:
            for s in run["summary"]:
                sha = shas.get(s["method"])
                if s.get("kind") != "rim" or not sha:
                    continue
                fig = {"psnr": round(s["psnr"], 4), "steps": s.get("steps"), "seconds_per_image": round(s["seconds"], 3)}
                if s.get("ssim") is not None:
                    fig["ssim"] = round(s["ssim"], 4)
                if s.get("psnr_std") is not None:
                    fig["psnr_std"] = round(s["psnr_std"], 3)
                fig.update(images=len(run.get("images", [])) or None, variant=run.get("variant"),
                           command=report.get("command"), date=report.get("date"),
                           machine=f"{report['machine'].get('cpu')} x{report['machine'].get('cpu_count')}, "
                                   f"{report['machine'].get('device')}")
                found.setdefault(sha, {}).setdefault(_key(report), {})[run["label"]] = fig
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--weights-dir", type=Path, default=None)
    a = ap.parse_args()
    folder = a.weights_dir or weights_dir()
    entries = read_manifest(folder)
    found = collect(a.folder)
    for entry in entries.values():
        bench = found.get(entry.sha256)
        if not bench:
            continue
        entry.metrics["benchmarks"] = bench
        entry.metrics["headline"] = headline(bench)
        print(f"{entry.name}: {entry.metrics['headline']}")
    write_manifest(entries, folder)


if __name__ == "__main__":
    main()
