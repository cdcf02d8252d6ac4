"""Shared CLI plumbing: one-line errors with exit code 2, consoles, device/precision flags."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

console = Console(stderr=True)  # progress, tables, messages: stderr, so stdout stays for results
out = Console()

F = TypeVar("F", bound=Callable[..., Any])

EXIT_USAGE = 2


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def fail(message: str) -> NoReturn:
    raise CLIError(message)


def handle_errors(func: F) -> F:
    """Turn expected failures into `error: ...` on stderr and exit 2, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ..inference import DeviceError
        from ..weights import WeightsError

        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            raise typer.Exit(130) from None
        except (CLIError, DeviceError, WeightsError, ValueError, OSError) as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            print(f"error: {msg}", file=sys.stderr)
            raise typer.Exit(EXIT_USAGE) from None

    return wrapper  # type: ignore[return-value]
