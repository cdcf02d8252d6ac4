"""Train, validate, export and benchmark one production model, in time-boxed resumable chunks.

Runs from the repo root on a GPU machine with no network (nothing is downloaded). Each call
trains for at most --time-limit seconds, checkpoints, and copies the run's state to --out; call
it again (with the run folder carried back) until training completes, when it exports the
weights and runs the published benchmarks on the exported file.

    # on this machine, once: copy the data the recipe needs into the ignored folder local/
    mkdir -p local/data local/bench
    cp -r ../shared/data/train/bsds400 local/data/
    cp -r ../shared/data/bench/bsd68 ../shared/data/bench/set12 local/bench/     # gray / 3task
    cp -r ../shared/data/bench/cbsd68 local/bench/                                # rgb
    cp -r ../shared/data/bench/sr local/bench/                                    # sr
    # on the GPU machine (carry local/), repeatedly:
    PYTHONPATH=src python3 scripts/gpu_recipe.py gray --out "$OUT"

Models: gray, rgb, sr, 3task (add --arch gdn|ffn for the paper's ablations), deblur.
Benchmark images are used only after training, for the final measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from rimcli.training import TrainConfig, load_checkpoint, train  # noqa: E402

NAMES = {"gray": "rim-gray-denoise", "rgb": "rim-rgb-denoise", "sr": "rim-sr", "3task": "rim-3task",
         "deblur": "rim-rgb-deblur"}
BENCH = {
    "gray": [["bsd68", "--sigma", "15,25,50", "--baselines", "bm3d"], ["bsd68", "--sigma", "15,25,50", "--quantize"],
             ["set12", "--sigma", "15,25,50"]],
    "rgb": [["cbsd68", "--sigma", "15,25,50"], ["cbsd68", "--sigma", "25", "--quantize"]],
    "sr": [["b100", "--scale", "2,3,4"], ["set5", "--scale", "2,3,4"], ["set14", "--scale", "2,3,4"]],
    "3task": [["projections"], ["bsd68", "--sigma", "15,25,50"]],
    "deblur": [],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", choices=sorted(NAMES))
    ap.add_argument("--arch", default=None, help="override the architecture (gdn, ffn ablations)")
    ap.add_argument("--time-limit", type=float, default=480.0, help="training seconds in this call")
    ap.add_argument("--data", type=Path, default=ROOT / "local/data/bsds400")
    ap.add_argument("--bench", type=Path, default=ROOT / "local/bench")
    ap.add_argument("--runs", type=Path, default=ROOT / "local/runs")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ROOT / "local/out")))
    a = ap.parse_args()

    tag = a.model + (f"-{a.arch}" if a.arch else "")
    run = a.runs / tag
    settings = tomllib.loads((ROOT / "recipes" / f"{a.model}.toml").read_text())
    settings.update(data=str(a.data), out=str(run), device="auto")
    if a.arch:
        settings["arch"] = a.arch
    cfg = TrainConfig.from_dict(settings)
    resume = (run / "last.pt").is_file()
    command = f"python3 scripts/gpu_recipe.py {a.model}" + (f" --arch {a.arch}" if a.arch else "")
    train(cfg, resume=resume, command=command, time_limit=a.time_limit, on_log=_print)
    done = load_checkpoint(run / "last.pt")["iteration"] >= cfg.iters
    if done:
        _finish(a, cfg, run, tag)
    _collect(run, a.out / tag)
    print(json.dumps({"run": tag, "finished": done}))


def _print(rec: dict) -> None:
    keep = {k: v for k, v in rec.items() if k != "val"}
    print(json.dumps(keep), flush=True)


def _finish(a: argparse.Namespace, cfg: TrainConfig, run: Path, tag: str) -> None:
    from rimcli.export import export_run

    name = NAMES[a.model] + (f"-{a.arch}" if a.arch else "")
    entry = export_run(run, name, weights_dir=run / "export")
    model = run / "export" / entry.file
    for args in BENCH[a.model]:
        out = run / "bench" / "_".join(x.strip("-").replace(",", "-") for x in args)
        cmd = [sys.executable, "-m", "rimcli", "benchmark", *args, "--data", str(a.bench), "--model", str(model),
               "--out", str(out), "--device", "auto"]
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=False, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})


def _collect(run: Path, dest: Path) -> None:
    """Copy what the next call (and the bundling step) needs; $OUT allows 2 folder levels."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("last.pt", "best.pt", "log.jsonl", "config.json"):
        if (run / name).is_file():
            shutil.copy2(run / name, dest / name)
    for sub in ("export", "bench"):
        if (run / sub).is_dir():
            shutil.make_archive(str(dest / sub), "gztar", run / sub)


if __name__ == "__main__":
    main()
