"""`rim models`: the bundled models, then the user's own, with their recorded figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from . import app
from .common import console, handle_errors, is_stdout, out, write_text


@app.command()
@handle_errors
def models(
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="Also write the list as JSON to PATH ('-': stdout only).", show_default=False)] = None,
) -> None:
    """List the bundled models, then your own (from `rim export`), with their measured metrics."""
    from ..weights import MANIFEST, model_folders, read_manifest, user_models_dir

    folder, *user_folders = model_folders()  # the lookup order: a bundled name wins
    rows = [{**_model_info(entry, folder), "source": "bundled"} for entry in read_manifest(folder).values()]
    for extra in (f for f in user_folders if (f / MANIFEST).is_file()):
        rows += [{**_model_info(e, extra), "source": "user"} for e in read_manifest(extra).values()
                 if e.name not in {r["name"] for r in rows}]
    if json_path is not None:
        text = json.dumps({"weights_dir": str(folder), "user_models_dir": str(user_models_dir()), "models": rows},
                          indent=2) + "\n"
        write_text(json_path, text)
        if is_stdout(json_path):
            return
    _models_table(rows, folder)


def _model_info(entry: Any, folder: Path) -> dict[str, Any]:
    from ..model import RIM, RIMConfig

    try:
        params: int | None = RIM(RIMConfig.from_dict(entry.config)).num_parameters()
    except (ValueError, TypeError):
        params = None
    path = folder / entry.file
    info = entry.to_dict()
    info.update(params=params, file_size=path.stat().st_size if path.is_file() else None)
    return info


def _flatten(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if not isinstance(d, dict):
        return [(prefix, d)]
    items: list[tuple[str, Any]] = []
    for k, v in d.items():
        items += _flatten(v, f"{prefix}/{k}" if prefix else str(k))
    return items


def _metrics_text(metrics: dict, limit: int = 4) -> str:
    if metrics.get("headline"):  # benchmark figures recorded by scripts/record_metrics.py
        return str(metrics["headline"])
    val = metrics.get("validation", {})
    if "psnr_at_horizon" in val:
        return f"validation {val['psnr_at_horizon']:.2f} dB (held-out crops)"
    items = [(k, v) for k, v in _flatten(metrics) if isinstance(v, (int, float))]
    text = ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in items[:limit])
    return text + (f" (+{len(items) - limit})" if len(items) > limit else "")


#: terminal width from which `rim models` shows the figures as a table column
_WIDE_MODELS_TABLE = 140


def _models_table(rows: list[dict], folder: Path) -> None:
    from rich.table import Table

    if not rows:
        console.print(f"no bundled models in {folder} (set RIM_WEIGHTS to a weights folder)", markup=False)
        return
    title = f"models in {folder}"
    if any(r.get("source") == "user" for r in rows):
        from ..weights import user_models_dir

        title += f" and (yours, marked *) {user_models_dir()}"
    # a narrow terminal gets the figures as lines under the table, not a column folded mid-word
    wide = out.width >= _WIDE_MODELS_TABLE
    table = Table(title=title, title_justify="left")
    for name in ("name", "tasks", "ch", "params", "steps", "size", *(["metrics"] if wide else [])):
        numeric = name in ("ch", "params", "steps", "size")
        table.add_column(name, justify="right" if numeric else "left", no_wrap=name != "metrics", overflow="fold")
    figures = []
    for r in rows:
        size = f"{r['file_size'] / 1e6:.2f} MB" if r["file_size"] is not None else "[red]missing[/red]"
        params = f"{r['params']:,}" if r["params"] is not None else "?"
        name = r["name"] + (" *" if r.get("source") == "user" else "")
        cells = [name, ",".join(r["tasks"]), str(r["channels"]), params, str(r["default_steps"]), size]
        table.add_row(*cells, *([_metrics_text(r["metrics"])] if wide else []))
        figures.append(f"{name}: {_metrics_text(r['metrics'])}")
    out.print(table)
    if not wide:
        from rich.text import Text

        for line in figures:
            out.print(Text(line))
