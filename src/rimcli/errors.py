"""The one error base class of rimcli.

`RimError` is a problem with the user's input, files or settings: the CLI prints its message as
one line (`error: ...`) and exits 2. Anything else that escapes a command is a bug and shows its
traceback. Each module's own error class (`ImageError`, `WeightsError`, `TrainError`, ...)
subclasses it; those that were a `ValueError` or `RuntimeError` before keep that as a second
base, so existing `except ValueError` code still catches them.
"""

from __future__ import annotations


class RimError(Exception):
    """A problem with the user's input, files or settings: the CLI prints one line and exits 2."""


class InputError(RimError, ValueError):
    """A bad argument or image given to the API or the operators (sigma, scale, kernel, dtype, ...)."""


class RestoreError(RimError, RuntimeError):
    """A restoration that ran but produced no usable result (inf/NaN output, out of memory)."""


def os_reason(e: BaseException) -> str:
    """The reason part of a one-line message about a failed file operation: an OSError's
    strerror ("Permission denied", without the errno and path that str(e) repeats), else the
    first line of the error's text, else its type name."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return (str(e).strip().splitlines() or [""])[0] or type(e).__name__
