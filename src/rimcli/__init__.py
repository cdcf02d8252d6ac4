"""rimcli: image restoration with Recurrent Inference Machines (Putzky & Welling).

`import rimcli` is cheap: torch and friends load on first use of a name below.

    import rimcli
    clean = rimcli.denoise(img, sigma=25)          # numpy HxW or HxWxC, uint8/uint16/float
    big = rimcli.superres(img, scale=3)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    # high-level, numpy in / numpy out
    "denoise": "api",
    "superres": "api",
    "deblur": "api",
    "cs": "api",
    "load_model": "api",
    "estimate_sigma": "api",
    # operators
    "LinearOperator": "operators",
    "Denoise": "operators",
    "Downsample": "operators",
    "Blur": "operators",
    "RandomProjection": "operators",
    # model and inference
    "RIM": "model",
    "RIMConfig": "model",
    "restore": "inference",
    "unroll": "inference",
    # metrics
    "psnr": "metrics",
    "ssim": "metrics",
    # errors: the base of every error about the caller's input, files or settings
    "RimError": "errors",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'rimcli' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
