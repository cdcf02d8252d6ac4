"""The `rim` command. Thin: each subcommand module parses flags and calls the library."""

from __future__ import annotations

from typing import Any

import typer


def _click_style_types() -> None:
    """Typer 0.2x labels values with Python types (`<bool>`, `<list[Path]>`): show click's
    names instead (PATH, TEXT, INTEGER, FLOAT), and none for flags and arguments (their name
    says it). Older Typers show click's names already; an explicit metavar always wins."""
    from typing import get_args

    from typer import core

    param = getattr(core, "_TyperParameter", None)
    original = getattr(param, "display_type", None)
    if original is None or getattr(original, "_rim", False):
        return

    def display_type(self: Any, ctx: Any) -> str | None:
        if self.param_type_name == "argument" or getattr(self, "is_flag", False):
            return None
        desc = self.type_descriptor
        if desc.is_choice:
            return str(original(self, ctx)).strip("<>")
        kind = get_args(desc.annotation)[0] if desc.is_list else desc.annotation
        if desc.is_path:
            return "PATH"
        return {int: "INTEGER", float: "FLOAT", bool: None}.get(kind, "TEXT")

    display_type._rim = True  # type: ignore[attr-defined]
    param.display_type = display_type


_click_style_types()

app = typer.Typer(
    name="rim",
    help="Image restoration with Recurrent Inference Machines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"rimcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Image restoration with Recurrent Inference Machines."""


#: modules that add their commands to `app`, in the order `rim --help` lists them
COMMAND_MODULES = ("restore", "models", "train", "bench", "examples")


def _register() -> None:
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(f".{name}", __name__)


def main() -> None:
    _register()
    app()
