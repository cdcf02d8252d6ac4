#!/usr/bin/env python
"""Change a bundled model's default inference steps (and its description) without retraining.

    python scripts/set_default_steps.py rim-gray-denoise 4 --description "..." [--weights-dir weights]

Rewrites the .safetensors metadata (the file describes itself) and the manifest entry: new
default_steps, description and sha256. Benchmark figures are dropped (they were measured at the
old steps, on a file with the old sha256): re-run `rim benchmark` and scripts/record_metrics.py.
The held-out validation curve (PSNR per step) stays: it does not depend on the default.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rimcli.weights import ModelEntry, file_metadata, load_file, read_manifest, save_model, weights_dir, write_manifest


def set_default_steps(folder: Path, name: str, steps: int, description: str | None = None) -> ModelEntry:
    entries = read_manifest(folder)
    if name not in entries:
        raise SystemExit(f"no model {name!r} in {folder}; known: {', '.join(entries)}")
    entry = entries[name]
    path = folder / entry.file
    model = load_file(path, entry.sha256)
    meta = {k: v for k, v in file_metadata(path).items() if k != "config"}  # save_model writes the config
    entry.default_steps = meta["default_steps"] = steps
    if description is not None:
        entry.description = meta["description"] = description
    entry.sha256 = save_model(model, path, meta)
    entry.metrics = {k: v for k, v in entry.metrics.items() if k not in ("benchmarks", "headline")}
    write_manifest(entries, folder)
    return entry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name")
    ap.add_argument("steps", type=int)
    ap.add_argument("--description", default=None, help="new description (default: keep)")
    ap.add_argument("--weights-dir", type=Path, default=None)
    a = ap.parse_args()
    if a.steps < 1:
        ap.error("steps must be >= 1")
    entry = set_default_steps(a.weights_dir or weights_dir(), a.name, a.steps, a.description)
    print(f"{a.name}: default_steps {a.steps}, sha256 {entry.sha256[:12]}; benchmark figures dropped, re-measure them")


if __name__ == "__main__":
    main()
