"""Recurrent inference: the unrolled RIM loop, tiling for large images, devices and precision."""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .errors import InputError, RimError
from .io import GRAY_LEVELS
from .model import RIM
from .operators import DIHEDRAL, Denoise, LinearOperator, SigmaLike, _bcast, as_sigma, dihedral, dihedral_inverse
from .runtime import native_bf16, tune_allocator

#: denoising at or below this noise std (gray levels) is guarded by `sure_blend` (one more run in the
#: same batch): light noise is where a learned prior most often removes detail along with the noise
SURE_MAX_SIGMA = 5.0
#: self-ensemble sizes: the first 2 (a mirror), 4 (mirrors) or all 8 symmetries of the square
SELF_ENSEMBLES = (1, 2, 4, DIHEDRAL)
#: x_0 is clamped to [LINK_EPS, 1 - LINK_EPS] before the logit so eta_0 stays finite
LINK_EPS = 1e-3


class DeviceError(RimError, ValueError):
    """A device or precision this machine does not have, or an unknown one."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """`auto` picks CUDA when present, else CPU; asking for absent CUDA is an error."""
    if isinstance(device, torch.device):
        device = str(device)
    device = device.strip().lower()
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {device!r} requested but CUDA is not available on this machine")
        dev = torch.device(device)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
        return dev
    raise DeviceError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")


#: the autocast dtype of each precision name (fp32: none)
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for the network (`fp32` -> None). `auto` is bf16 on a GPU that has it and
    on a CPU that multiplies bf16 in hardware (`runtime.native_bf16`): 1.2 to 1.8x faster there,
    and within 0.01 dB of fp32 on the benchmark sets (BENCHMARKS.md). fp16 only on GPU."""
    if precision == "auto":
        native = torch.cuda.is_bf16_supported() if device.type == "cuda" else native_bf16()
        return torch.bfloat16 if native else None
    if precision not in AUTOCAST_DTYPES:
        raise DeviceError(f"unknown precision {precision!r}; use auto, fp32, bf16 or fp16")
    if precision == "fp16" and device.type != "cuda":
        raise DeviceError("fp16 inference needs a CUDA device")
    return AUTOCAST_DTYPES[precision]


def precision_name(amp: torch.dtype | None) -> str:
    """The precision name (`AUTOCAST_DTYPES`) of an autocast dtype, for reports and records."""
    return next(name for name, dtype in AUTOCAST_DTYPES.items() if dtype is amp)


def logit(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(LINK_EPS, 1 - LINK_EPS)
    return torch.log(x) - torch.log1p(-x)


def unroll(
    model: RIM,
    y: torch.Tensor,
    operator: LinearOperator,
    sigma: SigmaLike,
    steps: int,
    x0: torch.Tensor | None = None,
    autocast: torch.dtype | None = None,
    checkpoint: bool = False,
) -> list[torch.Tensor]:
    """Run `steps` RIM updates and return every estimate x_1..x_T (differentiable)."""
    if steps < 1:
        raise InputError("steps must be >= 1")
    s = as_sigma(sigma, y.shape[0], y)
    eta = logit(operator.init(y) if x0 is None else x0)
    x = torch.sigmoid(eta)
    state = model.init_state(x)
    amp = torch.autocast(y.device.type, dtype=autocast) if autocast is not None else contextlib.nullcontext()
    outs = []
    for _ in range(steps):
        grad = operator.grad(x, y, s, model.eps)
        with amp:
            if checkpoint and torch.is_grad_enabled():
                delta, state = torch.utils.checkpoint.checkpoint(model, x, grad, state, s, use_reentrant=False)
            else:
                delta, state = model(x, grad, state, s)
        eta = eta + delta.float()
        x = torch.sigmoid(eta)
        outs.append(x)
    return outs


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


@dataclass
class Restored:
    image: torch.Tensor  # (B, C, H, W), the final estimate
    steps: list[torch.Tensor] | None = None  # every estimate, when requested
    precision: str = "fp32"  # what the loop ran in (the low-noise guard runs fp32 whatever was asked)


def _tiles(n: int, core: int) -> list[tuple[int, int]]:
    return [(i, min(i + core, n)) for i in range(0, n, core)]


#: overlap (image pixels) when the operator cannot say how far it reaches
FALLBACK_OVERLAP = 64


def receptive_depth(model: RIM, operator: LinearOperator, steps: int) -> int | None:
    """How far (image pixels) from a tile's cut edge the result of `steps` iterations can differ
    from a whole-image run: the replicated border spreads `cell.reach` per step through the
    network and `grad_depth` through A^T A. A tile overlap at least this wide makes tiled and
    whole-image restoration equal up to float rounding, whatever the weights; None = unknown."""
    depth = operator.init_depth()
    for _ in range(steps):
        if depth is None:
            return None
        depth = operator.grad_depth(depth)
        depth = None if depth is None else depth + model.cell.reach
    return depth


@torch.no_grad()
def restore(
    y: torch.Tensor,
    operator: LinearOperator,
    sigma: SigmaLike,
    model: RIM,
    steps: int,
    *,
    return_steps: bool = False,
    tile: int | None = 0,
    tile_overlap: int | None = None,
    device: str | torch.device = "auto",
    precision: str = "fp32",
    on_tile: Callable[[int, int], None] | None = None,
    sure: bool = True,
    out_step: float = 0.0,
    self_ensemble: int = 1,
) -> Restored:
    """Reconstruct x from y = A x + n with `steps` RIM iterations.

    Denoising at noise levels up to `SURE_MAX_SIGMA` (with `sure`) is guarded by `sure_blend`:
    the result is never worse than the input in expectation, and sigma 0 returns the input. The
    guarded run is always fp32 (its divergence estimate needs the precision).
    `out_step` is the step the result will be rounded to (1/255 for an 8-bit file): rounding
    costs about step^2 / 12 per pixel, so a blend predicted to gain less is not made.

    `tile` (in image pixels; 0 = whole image) bounds memory: the measurement is cut into tiles,
    each run with `tile_overlap` image pixels of context on every side, and only each tile's core
    is kept. The default overlap (None) is `receptive_depth`: each kept pixel then sees all the
    context it would see in a whole-image run, so the tiled result equals the untiled one (no
    seams) for any weights; about 5 pixels per step for denoising (40 at 8 steps). A smaller
    overlap trades that exactness for speed. Results are returned on the CPU as float32 in [0, 1].

    `self_ensemble` n > 1 restores the measurement mirrored (n = 2, 4) or also transposed (n = 8)
    n ways (`SELF_ENSEMBLES`, the operator transformed alike) and averages the results mapped back,
    as EDSR's "+" models do: n times the time, and a result equivariant under those n symmetries
    (up to the guarded low-noise blend, whose random probe keeps the input's orientation)."""
    s = as_sigma(sigma, y.shape[0], y)
    operators = ensemble_operators(operator, self_ensemble)
    if not (sure and isinstance(operator, Denoise) and float(s.max()) <= SURE_MAX_SIGMA / GRAY_LEVELS):
        return _restore(y, operators, s, model, steps, return_steps, tile, tile_overlap, device, precision, on_tile)
    y = y.float().cpu()
    if float(s.max()) == 0:  # noise-free by the user's word: SURE's best blend is the input itself
        out = y.clamp(0.0, 1.0)
        return Restored(out, [out] * steps if return_steps else None)
    s = s.cpu()
    probe, eps = sure_probe(y, s)
    # SURE holds for Gaussian observations: pixels clipped to 0 or 1 (censored, see
    # `censored_residual`) stay out of the probe and of the estimate, and follow the blend
    gaussian = ((y > 0) & (y < 1)).to(y) if operator.censored else torch.ones_like(y)
    probe = probe * gaussian
    resolve_precision(precision, resolve_device(device))  # a bad choice still fails as it would unguarded
    # always fp32: the probe (a tenth of sigma, ~1e-4) is below bf16's resolution near 0.5 (~4e-3),
    # so half precision would blur the divergence estimate the blend rests on
    both = _restore(torch.cat([y, y + eps * probe]), operators, torch.cat([s, s]), model, steps, return_steps,
                    tile, tile_overlap, device, "fp32", on_tile)  # the probe run rides in the same batch

    def blend(x: torch.Tensor) -> torch.Tensor:
        return sure_blend(y, *x.chunk(2), probe, eps, s, min_gain=out_step**2 / 12, mask=gaussian)[0]

    return Restored(blend(both.image), [blend(x) for x in both.steps] if both.steps is not None else None,
                    both.precision)


def check_self_ensemble(n: object) -> int:
    """A self-ensemble size offered (`SELF_ENSEMBLES`), as an int, or an `InputError`."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or int(n) not in SELF_ENSEMBLES:
        raise InputError(f"self-ensemble must be one of {', '.join(map(str, SELF_ENSEMBLES))}, got {n!r}")
    return int(n)


def ensemble_operators(operator: LinearOperator, n: int) -> list[LinearOperator]:
    """The operator under each of the first n symmetries (`operators.dihedral`), or a clear error."""
    n = check_self_ensemble(n)
    ops = [operator] + [operator.dihedral(g) for g in range(1, n)]
    if None in ops:
        raise InputError(f"operator {operator.name!r} has no self-ensemble (its measurement is not symmetric)")
    return ops


def _restore(y: torch.Tensor, operators: list[LinearOperator], *args: Any) -> Restored:
    """`_restore_once(y, operator, *args)` under each of `operators` (`ensemble_operators`), the
    measurement transformed alike, the results mapped back and averaged. `args` end with
    `_restore_once`'s on_tile, which then counts the tiles of all the runs."""
    n = len(operators)
    if n == 1:
        return _restore_once(y, operators[0], *args)
    *rest, on_tile = args
    total: list[torch.Tensor] = []
    for g, op in enumerate(operators):
        tick = None if on_tile is None else (lambda done, of, g=g: on_tile(g * of + done, n * of))
        r = _restore_once(dihedral(y, g).contiguous(), op, *rest, tick)
        outs = [dihedral_inverse(x, g) for x in [r.image, *(r.steps or [])]]
        total = outs if not total else [a + b for a, b in zip(total, outs, strict=True)]
    image, *every = (x / n for x in total)
    return Restored(image, every or None)  # steps >= 1, so kept steps are never an empty list


def _restore_once(
    y: torch.Tensor,
    operator: LinearOperator,
    sigma: SigmaLike,
    model: RIM,
    steps: int,
    return_steps: bool,
    tile: int | None,
    tile_overlap: int | None,
    device: str | torch.device,
    precision: str,
    on_tile: Callable[[int, int], None] | None,
) -> Restored:
    tune_allocator()  # else glibc faults each step's large tensors in anew (half the CPU time)
    dev = resolve_device(device)
    amp = resolve_precision(precision, dev)
    model = model.to(dev).eval()
    if dev.type == "cpu":  # NHWC: oneDNN runs the GRUs' 1x1 convs 1.6x faster (a restore 5-8% faster)
        model = model.to(memory_format=torch.channels_last)
    operator = operator.to(dev)
    y = y.to(dev, torch.float32)
    s = as_sigma(sigma, y.shape[0], y)
    k = operator.scale
    hy, wy = y.shape[-2:]
    if tile_overlap is None:
        tile_overlap = receptive_depth(model, operator, steps)
        tile_overlap = FALLBACK_OVERLAP if tile_overlap is None else tile_overlap
    if tile and tile_overlap < 0:
        raise InputError(f"tile_overlap must be >= 0, got {tile_overlap}")
    # a strided cell (the paper's) needs tiles to start on its grid, or each tile computes another phase
    align = model.cell.stride // math.gcd(model.cell.stride, k)
    core = _round_up(max(1, tile // k), align) if tile else max(hy, wy)
    pad = _round_up(-(-tile_overlap // k), align) if tile else 0
    rows, cols = _tiles(hy, core), _tiles(wy, core)
    out_shape = operator.x_shape(y.shape)
    final = torch.empty(out_shape)
    every = [torch.empty(out_shape) for _ in range(steps)] if return_steps else None
    done, total = 0, len(rows) * len(cols)
    for r0, r1 in rows:
        for c0, c1 in cols:
            a0, a1 = max(0, r0 - pad), min(hy, r1 + pad)
            b0, b1 = max(0, c0 - pad), min(wy, c1 + pad)
            xs = unroll(model, y[..., a0:a1, b0:b1], operator, s, steps, autocast=amp)
            crop = (..., slice((r0 - a0) * k, (r1 - a0) * k), slice((c0 - b0) * k, (c1 - b0) * k))
            dst = (..., slice(r0 * k, r1 * k), slice(c0 * k, c1 * k))
            final[dst] = xs[-1][crop].float().cpu()
            if every is not None:
                for t, x in enumerate(xs):
                    every[t][dst] = x[crop].float().cpu()
            done += 1
            if on_tile is not None:
                on_tile(done, total)
    return Restored(final, every, precision_name(amp))


# ---------------------------------------------------------------- low-noise guard (denoising)


def sure_probe(y: torch.Tensor, sigma: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A Rademacher probe b (+-1, seeded) and per-image steps eps for a Monte-Carlo estimate of a
    denoiser's divergence at y (Ramani et al. 2008): eps is a tenth of the noise, so f stays near linear."""
    g = torch.Generator().manual_seed(seed)
    b = torch.randint(0, 2, y.shape, generator=g).to(y) * 2 - 1
    return b, _bcast(0.1 * sigma.to(y).clamp_min(1.0 / GRAY_LEVELS), y.ndim)


def sure_blend(
    y: torch.Tensor, f_y: torch.Tensor, f_probe: torch.Tensor, probe: torch.Tensor, eps: torch.Tensor,
    sigma: torch.Tensor,
    min_gain: float = 0.0,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend y + a (f(y) - y) per image with the a in [0, 1] that minimises Stein's unbiased risk
    estimate of the MSE, for y = x + n with n ~ N(0, sigma^2) (0..1 scale, one sigma per image).

    SURE(a) = a^2 |r|^2 - N sigma^2 + 2 sigma^2 (N + a (div f - N)), r = f(y) - y, is least at
    a = sigma^2 (N - div f) / |r|^2. a = 0 is the input itself and the risk is convex in a, so in
    expectation the result is never worse than the input, nor than f(y) when a = 1 is best: a
    denoiser that over-smooths a lightly noisy photo is pulled back towards it. An image whose
    predicted MSE drop, SURE(0) - SURE(a) per pixel, is not above `min_gain` keeps a = 0. Returns
    the blend, clipped to [0, 1] (which only brings it nearer any image in that range), and a.
    With a 0/1 `mask`, the risk is estimated on the pixels it marks (the probe must be 0 elsewhere)."""
    dims = tuple(range(1, y.ndim))
    m = torch.ones_like(y) if mask is None else mask
    n = m.sum(dims)
    div = (probe * (f_probe - f_y) / eps).sum(dims)
    r = f_y - y
    rr = (r * r * m).sum(dims)
    s2 = sigma.to(y) ** 2
    a = (s2 * (n - div) / rr.clamp_min(1e-30)).clamp(0.0, 1.0)
    gain = (2 * a * s2 * (n - div) - a * a * rr) / n.clamp_min(1)
    a = torch.where(gain > min_gain, a, torch.zeros_like(a))
    return (y + _bcast(a, y.ndim) * r).clamp(0.0, 1.0), a
