"""`rim train` and `rim export`."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import typer

from . import app
from .common import OUT_ALIAS_HELP, console, fail, handle_errors, output_alias


def _range(text: str | None, name: str) -> list[float] | None:
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        fail(f"{name} must look like LO:HI, got {text!r}")
    return [lo, hi]


def _list(text: str | None, kind: type) -> list | None:
    if text is None:
        return None
    try:
        return [kind(eval_ratio(v) if kind is float else v) for v in text.split(",") if v.strip()]
    except (ValueError, ZeroDivisionError):
        fail(f"could not parse the list {text!r}")


def eval_ratio(v: str) -> float:
    """Accept 0.25 or 1/4."""
    v = v.strip()
    if "/" in v:
        num, den = v.split("/")
        return float(num) / float(den)
    return float(v)


def _run_settings(out: Path | None) -> dict:
    """A run's own settings (its config.json), so `--resume -o RUN` needs no other flag."""
    from ..training import TrainConfig

    path = (out or Path(TrainConfig.out)) / "config.json"
    if not path.is_file():
        return {}
    saved = _read_config(path)
    return saved.get("config", {}) if isinstance(saved.get("config"), dict) else {}


def _read_config(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser as the tomli package (a dependency there)
        import tomli as tomllib

    if not path.is_file():
        fail(f"config file {path} does not exist")
    kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
    try:
        text = path.read_text()
        settings = tomllib.loads(text) if kind == "TOML" else json.loads(text)
    except ValueError as e:  # TOMLDecodeError, JSONDecodeError, UnicodeDecodeError
        fail(f"config file {path} is not valid {kind}: {e}")
    if not isinstance(settings, dict):
        fail(f"config file {path} must hold a table of settings, not a {type(settings).__name__}")
    return settings


#: `rim train` options that steer the run rather than set a TrainConfig field (every other option
#: is named after the field it sets; tests/test_train_settings.py checks both ways)
RUN_OPTIONS = ("out_alias", "config", "resume", "threads", "time_limit", "quiet")
#: list-valued settings whose flags take text: LO:HI ranges, and comma lists of these types
_RANGES = ("sigma_range", "blur_range")
_LISTS = {"scales": int, "ensembles": str, "ratios": float}


def _setting(name: str, value: object) -> object:
    """A flag's value as TrainConfig holds it: lists parsed from their text, paths as strings."""
    if name in _RANGES:
        return _range(value, "--" + name.replace("_", "-"))
    if name in _LISTS:
        return _list(value, _LISTS[name])
    return str(value) if isinstance(value, Path) else value


def flag_settings(params: dict, fields: set[str]) -> dict:
    """The TrainConfig settings given as flags (None: not given, so a --config file's value stands)."""
    return {name: _setting(name, value) for name, value in params.items() if name in fields and value is not None}


@app.command()
@handle_errors
def train(
    ctx: typer.Context,
    task: str | None = typer.Option(None, help="denoise, superres, cs, 3task or deblur; a comma list trains one model."),
    channels: int | None = typer.Option(None, help="1 (gray) or 3 (RGB)."),
    data: Path | None = typer.Option(None, help="Folder of training images (decoded once, kept in memory)."),
    val: Path | None = typer.Option(None, help="Folder of validation images (default: hold out --val-split images of --data)."),
    val_split: int | None = typer.Option(None, help="Images of --data held out for validation."),
    out: Path | None = typer.Option(None, "--output", "-o", help="Run folder: log.jsonl, config.json, last.pt, best.pt."),
    out_alias: Path | None = typer.Option(None, "--out", hidden=True, help=OUT_ALIAS_HELP),
    patch: int | None = typer.Option(None, help="Training crop size in pixels."),
    batch: int | None = typer.Option(None, help="Patches per iteration (per process under torchrun)."),
    iters: int | None = typer.Option(None, help="Training iterations."),
    steps: int | None = typer.Option(None, help="Unrolled RIM steps T."),
    loss_weights: str | None = typer.Option(None, help="equal (the paper) or increasing weights over steps."),
    lr: float | None = typer.Option(None, help="Adam learning rate."),
    schedule: str | None = typer.Option(None, help="cosine or constant (after a linear warm-up)."),
    warmup: int | None = typer.Option(None, help="Iterations of the linear learning-rate warm-up."),
    grad_clip: float | None = typer.Option(None, help="Largest gradient norm; larger gradients are scaled down."),
    arch: str | None = typer.Option(None, help="rim (default), msrim (multi-scale), gdn or ffn (the paper's ablations), paper."),
    hidden: int | None = typer.Option(None, help="Feature width of the RIM cell."),
    sigma_input: bool | None = typer.Option(None, help="Give the cell the noise level as an input map."),
    low_sigma: float | None = typer.Option(None, help="Fraction of samples with noise std in 0..5 gray levels."),
    channels_last: bool | None = typer.Option(None, help="NHWC activations (faster on CPU, esp. with --amp bf16)."),
    init_from: Path | None = typer.Option(None, help="Start from these weights (.safetensors, run .pt); colour can start gray."),
    sigma_range: str | None = typer.Option(None, help="Noise std range LO:HI in gray levels (0..255), e.g. 0:75."),
    scales: str | None = typer.Option(None, help="Super-resolution scales, e.g. 2,3,4."),
    ensembles: str | None = typer.Option(None, help="Projection ensembles, e.g. gaussian,binary,fourier."),
    ratios: str | None = typer.Option(None, help="Projection ratios, e.g. 1/2,1/4,1/8."),
    blur_range: str | None = typer.Option(None, help="Gaussian blur std range LO:HI in pixels (deblur)."),
    device: str | None = typer.Option(None, help="auto, cpu, cuda or cuda:N."),
    amp: str | None = typer.Option(None, help="off, bf16 or fp16 autocast."),
    compile: bool | None = typer.Option(None, help="torch.compile the RIM cell (faster on GPU after a slow first step)."),
    seed: int | None = typer.Option(None, help="Seed of initial weights, data order, noise and operators."),
    val_every: int | None = typer.Option(None, help="Validate and checkpoint every N iterations."),
    log_every: int | None = typer.Option(None, help="Log the mean loss and patches/s every N iterations."),
    val_images: int | None = typer.Option(None, help="Validation images used (at most)."),
    val_crop: int | None = typer.Option(None, help="Side in pixels of the centre crop validated in each image."),
    grad_checkpoint: bool | None = typer.Option(None, help="Recompute each step in backward (less memory)."),
    config: Path | None = typer.Option(None, help="JSON or TOML file of these settings; flags override it."),
    resume: bool = typer.Option(False, help="Continue the run in --output from last.pt, bit for bit."),
    threads: int = typer.Option(0, help="CPU threads for torch (0: torch's default)."),
    time_limit: float = typer.Option(0, help="Stop cleanly (validate, checkpoint) after this many seconds; resume later."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Train a RIM: random crops, corruption simulated on the fly, loss summed over all steps."""
    import dataclasses

    import torch

    from ..training import TrainConfig, command_line
    from ..training import train as run_training

    out = output_alias(out, out_alias)
    settings = _read_config(config) if config else _run_settings(out) if resume else {}
    # the setting parameters above are read here, by name: each is named after its TrainConfig field
    settings.update(flag_settings({**ctx.params, "out": out}, {f.name for f in dataclasses.fields(TrainConfig)}))
    if not settings.get("data"):
        fail("--data is required (a folder of training images)")
    cfg = TrainConfig.from_dict(settings)
    if threads:
        torch.set_num_threads(threads)
    with _progress(cfg, quiet) as on_log:
        run_training(cfg, resume=resume, command=command_line(), on_log=on_log, time_limit=time_limit or None)


@contextlib.contextmanager
def _progress(cfg, quiet: bool):
    """A rich progress bar with loss, validation PSNR and patches/s; validation lines above it."""
    if quiet:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    cols = (TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
            TimeRemainingColumn())
    with Progress(*cols, console=console, transient=True) as bar:
        task = bar.add_task("train", total=cfg.iters, stats="")
        last = {"psnr": ""}

        def on_log(rec: dict) -> None:
            if "val" in rec:
                last["psnr"] = f"val {rec['val_psnr']:.2f} dB"
                per = "  ".join(f"{k} {v[cfg.steps - 1]:.2f}" for k, v in rec["val"].items())
                bar.console.print(f"iter {rec['iter']}: validation PSNR at step {cfg.steps}: {rec['val_psnr']:.2f} dB  ({per})")
                bar.update(task, completed=rec["iter"])
                return
            stats = f"loss {rec['loss']:.5f}  {last['psnr']}  {rec['patches_per_s']:.1f} patches/s"
            bar.update(task, completed=rec["iter"], stats=stats)

        yield on_log


@app.command("export")
@handle_errors
def export(
    run: Path = typer.Argument(..., help="A run folder written by `rim train`."),
    name: str = typer.Option(..., "--name", help="Model name in the manifest, e.g. rim-gray-denoise."),
    checkpoint: str = typer.Option("best", help="best or last."),
    weights_dir: Path | None = typer.Option(None, help="Weights folder (default: your models folder, listed by `rim models`; "
                                                      "the repo's weights/ to bundle a model)."),
    default_steps: int | None = typer.Option(None, help="Default inference steps (default: the training horizon)."),
    tasks: str | None = typer.Option(None, help="Tasks it serves (default: those it was trained on)."),
    description: str = typer.Option("", help="One line for `rim models`."),
) -> None:
    """Write a bundled-weights file (safetensors) and its manifest entry from a training run."""
    from ..export import export_run

    entry = export_run(run, name, checkpoint=checkpoint, weights_dir=weights_dir, default_steps=default_steps,
                       tasks=_list(tasks, str), description=description)
    from ..weights import user_models_dir

    folder = weights_dir or user_models_dir()
    console.print(f"wrote {folder / entry.file} (sha256 {entry.sha256[:12]}...) and its manifest entry; "
                  f"use it as -n {entry.name}", markup=False)
