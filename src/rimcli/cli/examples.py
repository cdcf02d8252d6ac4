"""`rim example`: copy a public-domain test image shipped with scikit-image (no download)."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

from . import app
from .common import console, fail, handle_errors

EXAMPLES = ("astronaut", "camera", "coffee", "chelsea", "moon", "coins", "rocket")


def example_path(name: str) -> Path:
    import skimage

    data = Path(skimage.__file__).parent / "data"
    for ext in (".png", ".jpg"):
        if (data / f"{name}{ext}").is_file():
            return data / f"{name}{ext}"
    fail(f"unknown example {name!r}; choose from {', '.join(EXAMPLES)}")


@app.command("example")
@handle_errors
def example(
    name: str = typer.Argument("astronaut", help=f"One of {', '.join(EXAMPLES)}."),
    output: Path = typer.Option(None, "--output", "-o", help="Where to write it (default: NAME.png/.jpg here)."),
) -> None:
    """Write a bundled example image (from scikit-image's public-domain set) to try the tool on."""
    if name not in EXAMPLES:
        fail(f"unknown example {name!r}; choose from {', '.join(EXAMPLES)}")
    src = example_path(name)
    dst = output or Path(src.name)
    shutil.copyfile(src, dst)
    console.print(f"wrote {dst}")
