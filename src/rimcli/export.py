"""Turn a training run into a bundled model: safetensors file + manifest entry."""

from __future__ import annotations

from pathlib import Path

from . import weights
from .model import RIM, RIMConfig
from .training import TrainConfig, TrainError, load_checkpoint, read_log
from .weights import ModelEntry, WeightsError, read_manifest, save_model, write_manifest


def export_run(run: Path, name: str, *, checkpoint: str = "best", weights_dir: Path | None = None,
               default_steps: int | None = None, tasks: list[str] | None = None, description: str = "") -> ModelEntry:
    if checkpoint not in ("best", "last"):
        raise TrainError("checkpoint must be best or last")
    ck = load_checkpoint(run / f"{checkpoint}.pt")
    cfg = TrainConfig.from_dict(ck["config"])
    model = RIM(RIMConfig.from_dict(ck["model_config"]))
    model.load_state_dict(ck["model"])
    folder = weights_dir or weights.user_models_dir()  # never site-packages by default; created by the writes
    try:
        entries = read_manifest(folder)
    except WeightsError as e:
        if isinstance(e.__cause__, OSError):  # there but unreadable: never write over its entries
            raise
        entries = {}  # none yet (or a corrupt one, replaced)
    file = f"{name}.safetensors"
    val = _validation_at(run, ck["iteration"])
    meta = ck.get("meta", {})
    tasks = tasks or sorted(set(cfg.tasks()))
    default_steps = default_steps or cfg.steps
    training = {
        "command": meta.get("command"), "commit": meta.get("commit"), "data": Path(cfg.data).name,
        "train_images": meta.get("train_images"), "val_images": meta.get("val_images"),
        "iterations": ck["iteration"], "steps": cfg.steps, "patch": cfg.patch, "batch": cfg.batch,
        "world_size": meta.get("world_size", 1), "checkpoint": checkpoint, "config": cfg.to_dict(),
        "parameters": model.num_parameters(),
    }
    if meta.get("commands"):  # a resumed run: every command, the first one in full
        training["commands"] = meta["commands"]
    if meta.get("init_from_sha256"):
        training["init_from_sha256"] = meta["init_from_sha256"]
    training |= {k: meta[k] for k in ("precision", "channels_last", "compile") if k in meta}  # what `auto` became
    # the file describes itself (a copy given by path behaves like the bundled name)
    digest = save_model(model, folder / file, {"name": name, "tasks": tasks, "default_steps": default_steps,
                                               "description": description, "training": training})
    entry = ModelEntry(
        name=name, file=file, sha256=digest, tasks=tasks, channels=cfg.channels, config=model.config.to_dict(),
        default_steps=default_steps, description=description, training=training,
        metrics={"validation": val} if val else {},
    )
    entries[name] = entry  # replaces any older entry: its benchmark figures belonged to the old file
    write_manifest(entries, folder)
    return entry


def _validation_at(run: Path, iteration: int) -> dict | None:
    """The validation record logged at the exported checkpoint's iteration (PSNR per step, held-out crops)."""
    for rec in reversed(read_log(run)):
        if rec.get("iter") == iteration and "val" in rec:
            return {"iteration": iteration, "psnr_at_horizon": rec["val_psnr"],
                    "psnr_per_step": {k: [round(v, 3) for v in c] for k, c in rec["val"].items()},
                    "note": "PSNR (dB) on center crops of the held-out training-set images, 8-bit-rounded output"}
    return None


