"""Process-level tuning that the user should not have to know about.

glibc's malloc returns large freed blocks (above a dynamic mmap threshold) to the kernel and
trims the heap top eagerly; a RIM allocates and frees tensors of the same few sizes at every step,
so each step faulted its memory in again (measured: half of a CPU restore's time in page faults).
Raising both thresholds keeps that memory in the process and reuses it.

`native_bf16` says whether the CPU multiplies bfloat16 in hardware: there a bf16 restore was 1.2 to
1.8x faster than fp32 (BENCHMARKS.md); elsewhere bf16 is emulated, so fp32 stays the default.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import sys

import torch

# mallopt parameter numbers from glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: blocks up to this size come from the heap, and up to this much free heap is kept
_KEEP_BYTES = 1 << 30

_tuned: bool | None = None


def tune_allocator() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; True if it took effect.
    A no-op (False) off Linux/glibc (musl, macOS, Windows)."""
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):
            return False
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        # older glibc refuses a threshold above HEAP_MAX/2 (32 MiB on 64-bit): fall back to that
        ok = mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES) == 1 or mallopt(_M_MMAP_THRESHOLD, 32 << 20) == 1
        ok = mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES) == 1 and ok
        _tuned = ok
    return _tuned


def native_bf16() -> bool:
    """True if the CPU has bfloat16 dot-product instructions (AVX512-BF16 or AMX-BF16), which
    make oneDNN's bf16 convolutions faster than fp32 ones (the probes are private torch API,
    so a torch without them counts as no)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def cpu_compiler() -> bool:
    """True if torch.compile can build CPU kernels here: inductor compiles C++ with $CXX, else g++
    (clang++ on macOS). Windows is left out (its MSVC set-up is not one we can check)."""
    if sys.platform == "win32":
        return False
    names = [os.environ.get("CXX"), "clang++" if sys.platform == "darwin" else "g++"]
    return any(name and shutil.which(name) for name in names)
