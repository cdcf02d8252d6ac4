"""`rim example`: copy a public-domain test image shipped with scikit-image (no download)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import os_reason
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


def write_example(src: Path, dst: Path, overwrite: bool) -> Path:
    """Copy `src` to `dst` atomically, re-encoded when `dst` asks for another format; a folder
    `dst` gets the example's own name. Refuses to replace a file unless `overwrite`."""
    from ..io import format_of, read_image, write_bytes, write_image

    if dst.is_dir():
        dst = dst / src.name
    if dst.exists() and not overwrite:
        fail(f"{dst} exists (use --overwrite to replace it)")
    if format_of(dst) == format_of(src):
        try:
            data = src.read_bytes()
        except OSError as e:
            fail(f"{src}: cannot read the example ({os_reason(e)})")
        write_bytes(dst, data, overwrite=overwrite)
    else:
        pic = read_image(src)
        write_image(dst, pic.array, icc=pic.icc, overwrite=overwrite)  # an unsupported extension fails here
    return dst


@app.command("example")
@handle_errors
def example(
    name: str = typer.Argument("astronaut", help=f"One of {', '.join(EXAMPLES)}."),
    output: Path = typer.Option(None, "--output", "-o", help="File or folder to write it to (default: NAME.png/.jpg here)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing file."),
) -> None:
    """Write a bundled example image (from scikit-image's public-domain set) to try the tool on."""
    if name not in EXAMPLES:
        fail(f"unknown example {name!r}; choose from {', '.join(EXAMPLES)}")
    src = example_path(name)
    dst = write_example(src, output or Path(src.name), overwrite)
    console.print(f"wrote {dst}", markup=False)
