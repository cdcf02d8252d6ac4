"""Bundled weights: a manifest plus one safetensors file per model (no pickle, sha256-checked).

Search order for the weights folder: `$RIM_WEIGHTS`, the copy installed inside the package
(`rimcli/weights`, put there by the wheel build), then the source checkout's `weights/`.
The user's own models (`rim export`'s default target) live in a second folder of the same form,
`user_models_dir()`; names are looked up in the bundled folder first, then there.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import RimError, os_reason
from .io import write_bytes
from .model import RIM, RIMConfig

MANIFEST = "manifest.json"


class WeightsError(RimError, RuntimeError):
    """A model that cannot be found or loaded: unknown name, missing or damaged file, bad manifest."""


def weights_dir() -> Path:
    env = os.environ.get("RIM_WEIGHTS")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    for cand in (here / "weights", here.parent.parent / "weights"):
        if (cand / MANIFEST).is_file():
            return cand
    return here / "weights"


def user_models_dir() -> Path:
    """`$RIM_USER_MODELS`, else `models/` in the user data folder (platformdirs): writable in
    any install, unlike the package's own folder (site-packages)."""
    env = os.environ.get("RIM_USER_MODELS")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("rimcli")) / "models"


def model_folders() -> list[Path]:
    """Where model names are looked up, in order: the bundled folder, then the user's."""
    folders = [weights_dir()]
    user = user_models_dir()
    return folders if user.resolve() == folders[0].resolve() else [*folders, user]


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
    except OSError as e:  # the cause tells export an unreadable manifest from a corrupt one
        raise WeightsError(f"weights manifest {path} cannot be read ({os_reason(e)})") from e
    except (ValueError, KeyError, TypeError) as e:
        raise WeightsError(f"corrupt weights manifest {path}: {e}") from e


def write_manifest(entries: dict[str, ModelEntry], folder: Path) -> None:
    write_bytes(folder / MANIFEST, json.dumps({"models": [e.to_dict() for e in entries.values()]}, indent=2) + "\n")


def sha256(path: str | Path) -> str:
    """The sha256 of a file (`WeightsError` if it cannot be read)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as e:
        raise WeightsError(f"{path}: cannot read ({os_reason(e)})") from None
    return h.hexdigest()


def save_model(model: RIM, path: str | Path, metadata: dict[str, Any] | None = None) -> str:
    """Write a safetensors file (config in its metadata) atomically with `io.write_bytes`;
    returns its sha256."""
    from safetensors.torch import save

    meta = {"config": json.dumps(model.config.to_dict())}
    meta.update({k: json.dumps(v) for k, v in (metadata or {}).items()})
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    data = save(state, metadata=meta)
    write_bytes(path, data)  # replaces an older file of the same name, as before
    return hashlib.sha256(data).hexdigest()


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


def file_metadata(path: Path) -> dict[str, Any]:
    """JSON metadata saved with a .safetensors file (config, default_steps, tasks, training, ...)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (OSError, SafetensorError) as e:
        raise WeightsError(f"weights file {path} could not be read: {e}") from None
    out: dict[str, Any] = {}
    for k, v in meta.items():
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def entry_from_file(path: Path, model: RIM) -> ModelEntry | None:
    """The entry a self-describing file (written by `rim export`) carries, so that a path behaves
    like the bundled name; None for a file that records no default steps and tasks."""
    meta = file_metadata(path)
    steps, tasks = meta.get("default_steps"), meta.get("tasks")
    if not isinstance(steps, int) or not isinstance(tasks, list):
        return None
    training = meta.get("training")
    return ModelEntry(name=str(meta.get("name") or path.stem), file=path.name, sha256=sha256(path), tasks=tasks,
                      channels=model.config.channels, config=model.config.to_dict(), default_steps=steps,
                      description=str(meta.get("description", "")), training=training if isinstance(training, dict) else {})


def training_horizon(name: str, entry: ModelEntry | None) -> int | None:
    """The unrolled steps T a model was trained with (`resolve`'s name and entry: the entry's
    training record, else the file's metadata); None if not recorded."""
    training = entry.training if entry is not None else file_metadata(Path(name)).get("training")
    t = training.get("steps") if isinstance(training, dict) else None
    return t if isinstance(t, int) and t > 0 else None


def recorded_steps(name: str, entry: ModelEntry | None) -> int | None:
    """The inference steps a model records: its default_steps (the entry's, else the file's
    metadata), else its training horizon; None if it records neither."""
    steps = entry.default_steps if entry is not None else file_metadata(Path(name)).get("default_steps")
    return steps if isinstance(steps, int) and steps > 0 else training_horizon(name, entry)


def resolve(name_or_path: str) -> tuple[RIM, ModelEntry | None]:
    """A bundled model by manifest name, or any .safetensors file by path."""
    path, entry = model_file(name_or_path)
    if entry is None:
        model = load_file(path)
        return model, entry_from_file(path, model)
    return load_file(path, entry.sha256), entry


def model_file(name_or_path: str) -> tuple[Path, ModelEntry | None]:
    """The file of a model given by manifest name (bundled first, then yours) with its entry, or a
    .safetensors path as given (entry None)."""
    p = Path(name_or_path)
    if p.suffix == ".safetensors":  # a path: a missing file is reported by name, not as an unknown model
        return p, None
    bundled, *others = model_folders()
    known: list[list[str]] = []
    for folder in (bundled, *others):
        if folder is not bundled and not (folder / MANIFEST).is_file():
            continue  # the user folder exists only once something was exported there
        entries = read_manifest(folder)
        if name_or_path in entries:
            return folder / entries[name_or_path].file, entries[name_or_path]
        known.append(sorted(entries))
    yours = f"; your models: {', '.join(known[1])}" if len(known) > 1 and known[1] else ""
    raise WeightsError(f"unknown model {name_or_path!r}; bundled models: {', '.join(known[0]) or 'none'}{yours}")


def default_model(task: str, channels: int) -> str:
    """The bundled model for a task: the first manifest entry that lists the task, preferring
    one with the image's channel count (a 1-channel model then runs per channel, a 3-channel
    model on a replicated gray image)."""
    entries = [e for e in read_manifest().values() if task in e.tasks]
    if not entries:
        raise WeightsError(f"no bundled model for task {task!r}")
    same = [e for e in entries if e.channels == channels]
    return (same or entries)[0].name
