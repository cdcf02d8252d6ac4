"""`rim train` and `rim export`."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import json
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from ..errors import os_reason
from ..train_config import TrainConfig
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
        return [kind(eval_ratio(v) if kind is float else v.strip()) for v in text.split(",") if v.strip()]
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
    except OSError as e:
        fail(f"config file {path} cannot be read ({os_reason(e)})")
    except ValueError as e:  # TOMLDecodeError, JSONDecodeError, UnicodeDecodeError
        fail(f"config file {path} is not valid {kind}: {e}")
    if not isinstance(settings, dict):
        fail(f"config file {path} must hold a table of settings, not a {type(settings).__name__}")
    return settings


#: `rim train` options that steer the run rather than set a TrainConfig field (every other option
#: is generated from the field it sets, and named after it; tests/test_train_settings.py checks both ways)
RUN_OPTIONS = ("out_alias", "config", "resume", "threads", "time_limit", "quiet")


def _bare(hint: Any) -> Any:
    """`X | None` -> X."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1 else hint


#: each TrainConfig field with its type (`X | None` as X)
_HINTS = {name: _bare(hint) for name, hint in typing.get_type_hints(TrainConfig).items()}
SETTINGS: tuple[dataclasses.Field, ...] = dataclasses.fields(TrainConfig)


def _flags(f: dataclasses.Field) -> tuple[str, ...]:
    return f.metadata["flags"] or ("--" + f.name.replace("_", "-"),)


def _option(f: dataclasses.Field) -> inspect.Parameter:
    """A setting's `rim train` option, from its field: a path, text for a list (a LO:HI range or a
    comma list), else the field's own type; None when not given. Named by Typer after the field
    (`--no-NAME` too for a switch) unless the field names its flags."""
    hint = _HINTS[f.name]
    kind = Path if f.metadata["path"] else str if typing.get_origin(hint) is list else hint
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=kind | None,
                             default=typer.Option(None, *f.metadata["flags"], help=f.metadata["help"]))


def _setting(f: dataclasses.Field, value: object) -> object:
    """A flag's value as TrainConfig holds it: lists parsed from their text, paths as strings."""
    hint = _HINTS[f.name]
    if f.metadata["lo_hi"]:
        return _range(value, _flags(f)[0])
    if typing.get_origin(hint) is list:
        return _list(value, typing.get_args(hint)[0])
    return str(value) if isinstance(value, Path) else value


def flag_settings(flags: dict) -> dict:
    """The TrainConfig settings given as flags (None: not given, so a --config file's value stands)."""
    return {f.name: _setting(f, flags[f.name]) for f in SETTINGS if flags.get(f.name) is not None}


def _setting_options(func: Callable[..., None]) -> Callable[..., None]:
    """Give a command one option per TrainConfig field, ahead of its own (Typer reads the signature
    built here); the command receives their values as `flags` (field name -> value or None)."""
    kw = inspect.Parameter.KEYWORD_ONLY
    own = [p.replace(kind=kw) for p in inspect.signature(func, eval_str=True).parameters.values() if p.name != "flags"]
    params = [*(_option(f) for f in SETTINGS), *own]

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> None:
        func(flags={f.name: kwargs.pop(f.name) for f in SETTINGS}, **kwargs)

    wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper


@app.command()
@handle_errors
@_setting_options
def train(
    out_alias: Path | None = typer.Option(None, "--out", hidden=True, help=OUT_ALIAS_HELP),
    config: Path | None = typer.Option(None, help="JSON or TOML file of these settings; flags override it."),
    resume: bool = typer.Option(False, help="Continue the run in --output from last.pt, bit for bit."),
    threads: int = typer.Option(0, help="CPU threads for torch (0: torch's default)."),
    time_limit: float = typer.Option(0, help="Stop cleanly (validate, checkpoint) after this many seconds; resume later."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    *,
    flags: dict[str, Any],
) -> None:
    """Train a RIM: random crops, corruption simulated on the fly, loss summed over all steps."""
    import torch

    from ..training import command_line
    from ..training import train as run_training

    out = output_alias(flags["out"], out_alias)
    settings = _read_config(config) if config else _run_settings(out) if resume else {}
    settings.update(flag_settings({**flags, "out": out}))
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
