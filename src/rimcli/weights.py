"""Bundled weights: a manifest plus one safetensors file per model (no pickle, sha256-checked).

Search order for the weights folder: `$RIM_WEIGHTS`, the copy installed inside the package
(`rimcli/weights`, put there by the wheel build), then the source checkout's `weights/`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .model import RIM, RIMConfig

MANIFEST = "manifest.json"


class WeightsError(RuntimeError):
    pass


def weights_dir() -> Path:
    env = os.environ.get("RIM_WEIGHTS")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    for cand in (here / "weights", here.parent.parent / "weights"):
        if (cand / MANIFEST).is_file():
            return cand
    return here / "weights"


@dataclass
class ModelEntry:
    name: str
    file: str
    sha256: str
    tasks: list[str]  # operators it was trained for: denoise, superres, cs, deblur
    channels: int
    config: dict
    default_steps: int
    description: str = ""
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> ModelEntry:
        return cls(**d)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def read_manifest(folder: Path | None = None) -> dict[str, ModelEntry]:
    folder = folder or weights_dir()
    path = folder / MANIFEST
    if not path.is_file():
        raise WeightsError(f"no weights manifest at {path} (set RIM_WEIGHTS to the weights folder)")
    try:
        data = json.loads(path.read_text())
        return {d["name"]: ModelEntry.from_dict(d) for d in data["models"]}
    except (ValueError, KeyError, TypeError) as e:
        raise WeightsError(f"corrupt weights manifest {path}: {e}") from e


def write_manifest(entries: dict[str, ModelEntry], folder: Path) -> None:
    path = folder / MANIFEST
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"models": [e.to_dict() for e in entries.values()]}, indent=2) + "\n")
    tmp.replace(path)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_model(model: RIM, path: Path, metadata: dict[str, Any] | None = None) -> str:
    """Write a safetensors file (config in its metadata); returns its sha256."""
    from safetensors.torch import save_file

    meta = {"config": json.dumps(model.config.to_dict())}
    meta.update({k: json.dumps(v) for k, v in (metadata or {}).items()})
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.chmod(0o644)  # safetensors writes 0600; bundled files must be readable by every user
    tmp.replace(path)
    return sha256(path)


def load_file(path: Path, expected_sha256: str | None = None) -> RIM:
    """Load a RIM from a safetensors file, checking its sha256 when given."""
    from safetensors import safe_open

    if not path.is_file():
        raise WeightsError(f"weights file {path} is missing")
    if expected_sha256 and sha256(path) != expected_sha256:
        raise WeightsError(f"weights file {path} is corrupt (sha256 mismatch)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
        model = RIM(RIMConfig.from_dict(json.loads(meta["config"])))
        model.load_state_dict(state)
    except Exception as e:  # safetensors raises several types on a damaged file
        raise WeightsError(f"weights file {path} could not be read: {e}") from e
    return model.eval()


def resolve(name_or_path: str) -> tuple[RIM, ModelEntry | None]:
    """A bundled model by manifest name, or any .safetensors file by path."""
    p = Path(name_or_path)
    if p.suffix == ".safetensors":  # a path: a missing file is reported by name, not as an unknown model
        return load_file(p), None
    entries = read_manifest()
    if name_or_path not in entries:
        raise WeightsError(f"unknown model {name_or_path!r}; bundled models: {', '.join(sorted(entries)) or 'none'}")
    entry = entries[name_or_path]
    return load_file(weights_dir() / entry.file, entry.sha256), entry


def default_model(task: str, channels: int) -> str:
    """The bundled model for a task: the first manifest entry that lists the task, preferring
    one with the image's channel count (a 1-channel model then runs per channel, a 3-channel
    model on a replicated gray image)."""
    entries = [e for e in read_manifest().values() if task in e.tasks]
    if not entries:
        raise WeightsError(f"no bundled model for task {task!r}")
    same = [e for e in entries if e.channels == channels]
    return (same or entries)[0].name
