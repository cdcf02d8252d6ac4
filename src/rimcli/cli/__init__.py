"""The `rim` command. Thin: each subcommand module parses flags and calls the library."""

from __future__ import annotations

import typer

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
COMMAND_MODULES = ("restore", "train", "bench", "examples")


def _register() -> None:
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(f".{name}", __name__)


def main() -> None:
    _register()
    app()
