"""Shared CLI plumbing: one-line errors with exit code 2, consoles, device/precision flags."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

from ..errors import RimError, os_reason

console = Console(stderr=True)  # progress, tables, messages: stderr, so stdout stays for results
out = Console()

F = TypeVar("F", bound=Callable[..., Any])

EXIT_USAGE = 2


class CLIError(RimError):
    """A usage error found by the CLI itself (flags that do not fit together, ...)."""


def fail(message: str) -> NoReturn:
    raise CLIError(message)


def output_alias(output: Path | None, out: Path | None) -> Path | None:
    """`--out`, the old spelling of `-o/--output`, kept (hidden) so existing scripts run."""
    if out is not None and output is not None and out != output:
        fail("--out is the old spelling of --output: give one of them")
    return output if output is not None else out


#: the hidden `--out` option that `output_alias` merges
OUT_ALIAS_HELP = "Old spelling of --output."


def is_stdout(path: Path | str | None) -> bool:
    """`-` for a file option means standard output."""
    return path is not None and str(path) == "-"


def write_text(path: Path, text: str) -> None:
    """Print `text` to stdout for `-`, else write the file atomically (`ImageError`, a RimError,
    on failure)."""
    from ..io import write_bytes

    if is_stdout(path):
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except OSError as e:  # a closed pipe (`| head`), a full disk behind a redirection
            fail(f"standard output: cannot write ({os_reason(e)})")
        return
    write_bytes(Path(path), text)


#: what a command reports as one line with exit 2: the user's input, files or settings, all
#: RimErrors (the OS refusing a file the user named, a missing or unreadable file, a full disk, is
#: wrapped into one where it happens: `io.read_image`, `io.write_bytes`, `weights`, `datasets`,
#: ...). Anything else, a bare OSError included, is a bug and shows its traceback.
USER_ERRORS = (RimError,)


def one_line(e: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none)."""
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def handle_errors(func: F) -> F:
    """Turn the user's errors (`USER_ERRORS`) into `error: ...` on stderr and exit 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            raise typer.Exit(130) from None
        except USER_ERRORS as e:
            print(f"error: {one_line(e)}", file=sys.stderr)
            raise typer.Exit(EXIT_USAGE) from None
        except BrokenPipeError:  # `rim models | head`: the reader left; say nothing more
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]
