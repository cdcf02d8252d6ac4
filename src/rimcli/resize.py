"""MATLAB-compatible bicubic resizing (`imresize(x, s, 'bicubic')`).

MATLAB resizes each axis with a Keys cubic kernel (a = -0.5), widens the kernel by 1/s when
shrinking (antialiasing) and replicates the border: its `contributions` clamps out-of-range
indices (`min(max(1, indices), in_length)`). Python ports that mirror the border (symmetric
padding) differ from MATLAB on the outermost output pixels; clamping reproduces the shared SR
benchmark's LR files bit for bit (tests/test_resize.py). Each axis is a linear map,
so we build it as a dense matrix: resizing is then two matrix products and its adjoint is the
transpose, exactly. PyTorch/OpenCV bicubic (a = -0.75, no antialias) do not match MATLAB.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


@lru_cache(maxsize=64)
def resize_matrix(in_len: int, out_len: int, scale: float) -> np.ndarray:
    """The (out_len, in_len) float64 matrix MATLAB's imresize applies along one axis."""
    kernel_width = 4.0
    if scale < 1:  # antialiasing: stretch the kernel when shrinking
        width = kernel_width / scale

        def kernel(x: np.ndarray) -> np.ndarray:
            return scale * _cubic(scale * x)
    else:
        width = kernel_width
        kernel = _cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # output pixel centre in input coordinates (1-based)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]  # 1-based input indices
    w = kernel(u[:, None] - idx)
    w /= w.sum(axis=1, keepdims=True)
    # MATLAB clamps out-of-range indices (replicated border), it does not mirror them
    cols = np.clip(idx.astype(np.int64) - 1, 0, in_len - 1)
    mat = np.zeros((out_len, in_len), dtype=np.float64)
    np.add.at(mat, (np.repeat(np.arange(out_len), taps), cols.ravel()), w.ravel())
    return mat


def out_size(in_len: int, scale: float) -> int:
    return int(math.ceil(in_len * scale))


def _matrix(in_len: int, scale: float, like: torch.Tensor) -> torch.Tensor:
    mat = resize_matrix(in_len, out_size(in_len, scale), float(scale))
    return torch.from_numpy(mat).to(device=like.device, dtype=like.dtype)


def imresize(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Resize the last two dims of `x` by `scale` exactly as MATLAB's bicubic imresize (no rounding)."""
    mh = _matrix(x.shape[-2], scale, x)
    mw = _matrix(x.shape[-1], scale, x)
    return mh @ x @ mw.T


def imresize_adjoint(y: torch.Tensor, scale: float, in_hw: tuple[int, int]) -> torch.Tensor:
    """Adjoint of `imresize(., scale)` for inputs of spatial size `in_hw`."""
    mh = _matrix(in_hw[0], scale, y)
    mw = _matrix(in_hw[1], scale, y)
    return mh.T @ y @ mw


def imresize_np(img: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB imresize for an HxW or HxWxC float array; float64 out, not rounded."""
    t = torch.from_numpy(np.asarray(img, dtype=np.float64))
    if t.ndim == 3:
        out = imresize(t.permute(2, 0, 1), scale).permute(1, 2, 0)
    else:
        out = imresize(t, scale)
    return out.numpy()


def _round_uint8(x: np.ndarray) -> np.ndarray:
    # MATLAB's uint8 conversion rounds halves away from zero; np.round rounds them to even. At
    # scales 2 and 4 the kernel weights are dyadic fractions, so exact .5 sums are common.
    return np.clip(np.floor(x + 0.5), 0, 255)


def imresize_uint8(img: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB `imresize` on a uint8 HxW(xC) image: MATLAB rounds to uint8 after each axis (rows first)."""
    x = np.asarray(img, dtype=np.float64)
    mh = resize_matrix(x.shape[0], out_size(x.shape[0], scale), float(scale))
    mw = resize_matrix(x.shape[1], out_size(x.shape[1], scale), float(scale))
    rows = _round_uint8(np.tensordot(mh, x, axes=(1, 0)))
    out = np.moveaxis(np.tensordot(mw, rows, axes=(1, 1)), 0, 1)
    return _round_uint8(out).astype(np.uint8)
