"""The Python API: one call per restoration task, numpy in and numpy out.

    import rimcli
    clean = rimcli.denoise(noisy, sigma=25)           # HxW or HxWxC; uint8, uint16 or float in [0, 1]
    big, steps = rimcli.superres(img, scale=3, return_steps=True)

Images come back in the input's dtype and layout; an alpha channel (HxWx2 or HxWx4) is passed
through untouched. `sigma` is the noise std on the 0..255 scale whatever the bit depth.

The CLI is a thin layer over `run` (restore one array under a `Problem`) and `evaluate`
(PSNR/SSIM against the truth), so everything it does is one call here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from . import tasks
from .errors import InputError, RestoreError
from .io import GRAY_LEVELS, from_float, quantum, to_float
from .tasks import DEFAULT_SIGMA, ENSEMBLES, SR_SCALES, TASKS, fit_channels, pad_to_blocks, sr_crop, sr_crop_size

if TYPE_CHECKING:
    import torch

    from .model import RIM
    from .operators import LinearOperator
    from .weights import ModelEntry

#: TASKS, ENSEMBLES and DEFAULT_SIGMA (the noise std assumed when none is given) come from `tasks`
SCALES = SR_SCALES
DEFAULT_STEPS = 8
#: largest noise std accepted (0..255 scale): beyond the full gray range nothing is left to restore
MAX_SIGMA = 255.0
#: largest Gaussian blur std accepted, in pixels (the kernel spans +-3 std; 1e9 would exhaust memory)
MAX_BLUR_SIGMA = 100.0
AUTO_TILE = 512
#: peak memory of the default cell measured on CPU: ~47 bytes per pixel, batch item and hidden
#: channel (~3 KB/px at hidden 64); the auto tile keeps a run under AUTO_TILE_BUDGET
_BYTES_PER_PIXEL_HIDDEN = 48
AUTO_TILE_BUDGET = 4 << 30


# --------------------------------------------------------------------------- models


@dataclass
class LoadedModel:
    """A RIM with its manifest entry (None for a model loaded from a file path)."""

    net: RIM
    name: str
    entry: ModelEntry | None = None

    @property
    def channels(self) -> int:
        return self.net.config.channels

    @property
    def default_steps(self) -> int:
        """The steps the model records (as `rim benchmark` reads them), else DEFAULT_STEPS."""
        from .weights import recorded_steps

        if self.entry is None and not Path(self.name).is_file():  # a RIM object handed in
            return DEFAULT_STEPS
        return recorded_steps(self.name, self.entry) or DEFAULT_STEPS

    @property
    def tasks(self) -> list[str]:
        return list(self.entry.tasks) if self.entry else []


ModelLike = Union[str, os.PathLike, LoadedModel, "RIM", None]
_CACHE: dict[tuple[str, str], LoadedModel] = {}


def load_model(
    name_or_path: str | os.PathLike | None = None, task: str | None = None, channels: int | None = None
) -> LoadedModel:
    """A bundled model by name, a `.safetensors` file by path, or, with no name, the bundled
    default for `task` on images with `channels` channels. Loaded once per process."""
    from .weights import WeightsError, default_model, resolve, weights_dir

    if name_or_path is None:
        if task is None:
            raise InputError("load_model needs a model name or path, or a task")
        name_or_path = default_model(task, channels or 1)
    name = str(name_or_path)
    if name.endswith(".safetensors") and not Path(name).is_file():
        raise WeightsError(f"model file {name} not found")
    key = (str(weights_dir()), name)
    if key not in _CACHE:
        net, entry = resolve(name)
        _CACHE[key] = LoadedModel(_check_weights(net, name), entry.name if entry else name, entry)
    return _CACHE[key]


def _check_weights(net: RIM, name: str) -> RIM:
    """A single inf/NaN weight turns every output into NaN, which saves as a black image."""
    import torch

    from .weights import WeightsError

    bad = [k for k, v in net.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise WeightsError(f"model {name} has inf or NaN weights (in {bad[0]}); the file is damaged or its training diverged")
    return net


def _get_model(model: ModelLike, task: str, channels: int) -> LoadedModel:
    from .model import RIM

    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, RIM):
        return LoadedModel(_check_weights(model, "custom"), "custom")
    return load_model(model, task, channels)


# --------------------------------------------------------------------------- problem and options


def _or_list(values: tuple) -> str:
    """(2, 3, 4) -> '2, 3 or 4'."""
    *head, last = (str(v) for v in values)
    return f"{', '.join(head)} or {last}" if head else last


@dataclass
class Problem:
    """What to reconstruct. `sigma` is the measurement-noise std on the 0..255 scale (None: the
    task's default; 'auto': estimated from the image, denoise only). `simulate` treats the
    image as clean and corrupts it with the operator first (seeded); cs always simulates."""

    task: str
    sigma: float | str | None = None
    scale: int = 3
    blur_sigma: float | None = None
    kernel: np.ndarray | str | os.PathLike | None = None
    ensemble: str = "gaussian"
    ratio: float = 0.25
    seed: int = 0
    simulate: bool = False

    def check(self) -> None:
        """Raise `InputError` (a ValueError) on a bad parameter, before any work is done."""
        if self.task not in TASKS:
            raise InputError(f"unknown task {self.task!r}; choose from {', '.join(TASKS)}")
        self._check_sigma()
        if self.task == "superres" and self.scale not in SCALES:
            raise InputError(f"unsupported scale {self.scale}; choose {_or_list(SCALES)}")
        if self.task == "deblur":
            if (self.kernel is None) == (self.blur_sigma is None):
                raise InputError("deblur needs exactly one of a kernel (--kernel) or a Gaussian blur sigma (--blur-sigma)")
            if self.blur_sigma is not None and not 0 < self.blur_sigma <= MAX_BLUR_SIGMA:
                raise InputError(f"blur sigma must be > 0 and <= {MAX_BLUR_SIGMA:g} pixels, got {self.blur_sigma}")
        if self.task == "cs":
            if self.ensemble not in ENSEMBLES:
                raise InputError(f"unknown ensemble {self.ensemble!r}; choose from {', '.join(ENSEMBLES)}")
            if not 0 < self.ratio <= 1:
                raise InputError(f"ratio must be in (0, 1], got {self.ratio}")

    def _check_sigma(self) -> None:
        if isinstance(self.sigma, str):
            if self.sigma != "auto":
                raise InputError(f"sigma must be a number >= 0 or 'auto', got {self.sigma!r}")
            if self.task != "denoise":
                raise InputError("sigma 'auto' is only available for denoising")
            if self.simulate:
                raise InputError("sigma 'auto' cannot be combined with a simulation (give the sigma to simulate)")
        elif self.sigma is not None and not 0 <= float(self.sigma) <= MAX_SIGMA:  # also refuses inf and NaN
            raise InputError(f"sigma must be >= 0 and <= {MAX_SIGMA:g} (a std in 8-bit gray levels), got {self.sigma}")

    @property
    def simulated(self) -> bool:
        return self.simulate or self.task == "cs"

    def operator(self) -> LinearOperator:
        if self.task == "denoise":
            return tasks.denoise_operator()
        if self.task == "superres":
            return tasks.superres_operator(self.scale)
        if self.task == "deblur":
            if self.blur_sigma is not None:
                return tasks.deblur_operator(self.blur_sigma)
            return tasks.kernel_operator(self.kernel)
        return tasks.cs_operator(self.ensemble, self.ratio, self.seed)

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"task": self.task, "sigma": self.sigma, "seed": self.seed, "simulate": self.simulated}
        if self.task == "superres":
            d["scale"] = self.scale
        if self.task == "deblur":
            d["blur_sigma"] = self.blur_sigma
            d["kernel"] = None if self.kernel is None or isinstance(self.kernel, np.ndarray) else str(self.kernel)
        if self.task == "cs":
            d.update(ensemble=self.ensemble, ratio=self.ratio)
        return d


@dataclass
class Options:
    """How to run: steps (None: the model's default), device, precision, tiling (None: auto,
    0: whole image), the self-ensemble (1, 2, 4 or 8 orientations averaged: `inference.restore`;
    checked with the operator, by `inference.ensemble_operators`), whether to keep every step, and
    a per-tile progress callback."""

    steps: int | None = None
    device: str = "auto"
    precision: str = "fp32"
    tile: int | None = None
    tile_overlap: int | None = None  # None: the model's exact reach over the steps (no seams)
    return_steps: bool = False
    on_tile: Callable[[int, int], None] | None = None
    self_ensemble: int = 1

    def check(self) -> None:
        if self.steps is not None and self.steps < 1:
            raise InputError(f"steps must be >= 1, got {self.steps}")
        if self.tile is not None and self.tile < 0:
            raise InputError(f"tile must be >= 0 (0 = whole image), got {self.tile}")
        if self.tile_overlap is not None and self.tile_overlap < 0:
            raise InputError(f"tile overlap must be >= 0, got {self.tile_overlap}")


@dataclass
class Outcome:
    """Everything one restoration produced."""

    image: np.ndarray  # the result in the input's dtype and layout, alpha included
    restored: np.ndarray  # float32 HxWxC (C = 1 or 3) in [0, 1]
    start: np.ndarray  # the degraded input at the output's size (bicubic / pseudo-inverse where needed)
    truth: np.ndarray | None  # the clean image of a simulation
    steps: list[np.ndarray] | None  # float estimates x_1..x_T, when asked for
    problem: Problem
    sigma: float
    sigma_estimated: bool
    model: str
    n_steps: int
    tile: int
    dtype: np.dtype
    precision: str = "fp32"  # what the RIM ran in: fp32, bf16 or fp16 (the low-noise guard is always fp32)

    @property
    def degraded(self) -> np.ndarray:
        """`start` (the corrupted input at the output's size) as an image like `image`: same
        dtype and layout, with the result's alpha; for comparing by eye with the result."""
        img = self.image
        alpha = img[..., -1] if img.ndim == 3 and img.shape[2] in (2, 4) else None
        return _assemble(self.start, alpha, img)


# --------------------------------------------------------------------------- the pipeline


def run(img: np.ndarray, problem: Problem, model: ModelLike = None, options: Options | None = None) -> Outcome:
    """Restore one image array under `problem` (the shared core of the API and the CLI)."""
    options = options or Options()
    problem.check()
    options.check()
    from .inference import ensemble_operators

    op = problem.operator()
    ensemble_operators(op, options.self_ensemble)  # cs has none: said before any work
    arr = _as_array(img)
    colour, alpha = _split_channels(arr)
    x = to_float(colour)
    sigma, estimated = _resolve_sigma(problem, x)
    loaded = _get_model(model, problem.task, x.shape[2])
    n_steps = options.steps or loaded.default_steps
    y, truth = _measure(problem, op, x, sigma)
    out_h, out_w = truth.shape[:2] if truth is not None else op.x_shape(y.shape)[-2:]
    start = _numpy(y if problem.task == "deblur" else op.init(y))  # before restore moves op to the device
    final, every, tile, precision = _reconstruct(y, op, sigma, loaded, n_steps, options, quantum(arr.dtype))
    if not all(np.isfinite(a).all() for a in (final, *(every or []))):  # would save as black, silently
        raise RestoreError("the restoration produced inf or NaN values (try full precision, or another model)")
    crop = (slice(0, out_h), slice(0, out_w))  # undoes the cs padding; a no-op otherwise
    restored = final[crop]
    alpha = _alpha_out(problem, alpha, (out_h, out_w))
    return Outcome(
        image=_assemble(restored, alpha, arr),
        restored=restored,
        start=np.clip(start[crop], 0, 1),
        truth=truth,
        steps=[s[crop] for s in every] if every is not None else None,
        problem=problem,
        sigma=sigma,
        sigma_estimated=estimated,
        model=loaded.name,
        n_steps=n_steps,
        tile=tile,
        dtype=arr.dtype,
        precision=precision,
    )


def _as_array(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype not in (np.uint8, np.uint16) and a.dtype.kind != "f":
        raise InputError(f"unsupported image dtype {a.dtype}; use uint8, uint16 or float in [0, 1]")
    if not (a.ndim == 2 or (a.ndim == 3 and 1 <= a.shape[2] <= 4)):
        raise InputError(f"expected an HxW or HxWxC image with C = 1..4, got shape {a.shape}")
    if a.size == 0:
        raise InputError("empty image")
    if a.dtype.kind == "f":  # floats are taken as [0, 1]: 0..255 data would restore to garbage
        if not np.isfinite(a).all():
            raise InputError("float image has inf or NaN pixels")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0 or hi > 1:
            raise InputError(f"float images must be in [0, 1], got values in [{lo:g}, {hi:g}] (scale 0..255 data by 1/255)")
    return a


def _split_channels(a: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """HxWxC colour (C = 1 or 3) and the alpha plane, both in the input's dtype."""
    if a.ndim == 2:
        return a[..., None], None
    c = a.shape[2]
    if c in (2, 4):
        return a[..., : c - 1], a[..., c - 1]
    return a, None


def _resolve_sigma(problem: Problem, x: np.ndarray) -> tuple[float, bool]:
    if problem.sigma == "auto":
        return _estimate(x), True
    if problem.sigma is None:
        return DEFAULT_SIGMA[problem.task], False
    return float(problem.sigma), False


def _tensor(x: np.ndarray) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32).transpose(2, 0, 1)).unsqueeze(0)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t[0].permute(1, 2, 0).float().cpu().numpy()


def _measure(problem: Problem, op: LinearOperator, x: np.ndarray, sigma: float) -> tuple[torch.Tensor, np.ndarray | None]:
    """The measurement y, and the clean image when it is simulated."""
    if not problem.simulated:
        return _tensor(x), None
    truth, source = x, x
    if problem.task == "superres":
        truth = source = sr_crop(x, problem.scale)
    if problem.task == "cs":  # run() crops the result back to the image
        source = pad_to_blocks(x, op.patch)
    import torch

    generator = torch.Generator().manual_seed(int(problem.seed))
    return op.measure(_tensor(source), sigma / GRAY_LEVELS, generator), truth


def auto_tile(batch: int, height: int, width: int, hidden: int) -> int:
    """The tile size `tile=None` picks: whole image unless that would need more than the budget."""
    need = batch * height * width * hidden * _BYTES_PER_PIXEL_HIDDEN
    return AUTO_TILE if need > AUTO_TILE_BUDGET else 0


def _reconstruct(
    y: torch.Tensor, op: LinearOperator, sigma: float, loaded: LoadedModel, steps: int, options: Options,
    out_step: float = 0.0,
) -> tuple[np.ndarray, list[np.ndarray] | None, int, str]:
    import torch

    from .inference import restore

    batch, merge = fit_channels(y, loaded.channels)
    tile = options.tile
    if tile is None:
        h, w = op.x_shape(batch.shape)[-2:]
        tile = auto_tile(batch.shape[0], h, w, loaded.net.config.hidden)
    try:
        res = restore(
            batch,
            op,
            sigma / GRAY_LEVELS,
            loaded.net,
            steps,
            return_steps=options.return_steps,
            tile=tile,
            tile_overlap=options.tile_overlap,
            device=options.device,
            precision=options.precision,
            on_tile=options.on_tile,
            out_step=out_step,
            self_ensemble=options.self_ensemble,
        )
    except (torch.cuda.OutOfMemoryError, MemoryError):  # too big an image or tile for this machine
        where = f"tiles of {tile} px" if tile else "the whole image at once"
        raise RestoreError(f"out of memory restoring {where}; use a smaller --tile (tile=)") from None
    every = [_numpy(merge(s)) for s in res.steps] if res.steps is not None else None
    return _numpy(merge(res.image)), every, tile, res.precision


def _alpha_out(problem: Problem, alpha: np.ndarray | None, hw: tuple[int, int]) -> np.ndarray | None:
    """The alpha plane for the result: untouched, except resized (MATLAB bicubic) when
    super-resolving a real image, or cropped along with a simulation's image."""
    if alpha is None:
        return None
    if problem.task == "superres" and not problem.simulated:
        from .resize import imresize_np

        big = np.clip(imresize_np(to_float(alpha), float(problem.scale)), 0, 1)
        return from_float(big, alpha.dtype)
    return alpha[: hw[0], : hw[1]]


def _assemble(x: np.ndarray, alpha: np.ndarray | None, like: np.ndarray) -> np.ndarray:
    """Float colour (+ alpha) back to the dtype and layout of the input `like`."""
    out = from_float(x, like.dtype)
    if alpha is not None:
        return np.concatenate([out, alpha[..., None]], axis=2)
    return out[..., 0] if like.ndim == 2 else out


# --------------------------------------------------------------------------- evaluation


def _as_saved(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """What the file will hold, back on [0, 1]: clipped and quantised to the output's bit depth."""
    return to_float(from_float(np.clip(x, 0, 1), dtype)) if np.dtype(dtype).kind != "f" else np.clip(x, 0, 1)


def _score(a: np.ndarray, truth: np.ndarray, problem: Problem, with_ssim: bool = True) -> dict[str, float | None]:
    """PSNR/SSIM on 0..255: on MATLAB's Y with `scale` pixels shaved for super-resolution (the
    published protocol), on all channels of the whole image otherwise."""
    from .metrics import psnr, sr_y, ssim

    a, b = a.astype(np.float64) * GRAY_LEVELS, truth.astype(np.float64) * GRAY_LEVELS
    if problem.task == "superres":
        a, b = sr_y(a, problem.scale), sr_y(b, problem.scale)
    elif a.shape[2] == 1:
        a, b = a[..., 0], b[..., 0]
    result: dict[str, float | None] = {"psnr": psnr(a, b)}
    if with_ssim:
        try:
            result["ssim"] = ssim(a, b)
        except ValueError:  # smaller than the 11x11 window
            result["ssim"] = None
    return result


def output_shape(img: np.ndarray, problem: Problem) -> tuple[int, int, int]:
    """(H, W, C) of the restored colour channels (`Outcome.restored`), known before any work."""
    h, w, c = _split_channels(_as_array(img))[0].shape
    if problem.task != "superres":
        return h, w, c
    s = problem.scale
    return (*sr_crop_size(h, w, s), c) if problem.simulated else (h * s, w * s, c)


def check_reference(reference: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The reference's colour channels as float HxWxC, or `InputError` unless they have `shape`
    (call it with `output_shape` before restoring, so a mismatch costs no work)."""
    truth = to_float(_split_channels(_as_array(reference))[0])
    if truth.shape != tuple(shape):
        (h, w, c), (rh, rw, rc) = shape, truth.shape
        raise InputError(f"reference is {rw}x{rh} with {rc} channel(s); the result is {w}x{h} with {c}")
    return truth


def protocol(problem: Problem) -> str:
    if problem.task == "superres":
        return f"Y of MATLAB rgb2ycbcr, {problem.scale} px shaved per border, 0..255, as saved"
    return "all channels, whole image, 0..255, as saved"


def evaluate(outcome: Outcome, reference: np.ndarray | None = None) -> dict[str, Any] | None:
    """PSNR/SSIM of the degraded input and of the result against the truth (the clean image
    of a simulation, else `reference`), plus PSNR at every step when the steps were kept.
    None when there is no truth to compare with."""
    truth = outcome.truth if reference is None else check_reference(reference, outcome.restored.shape)
    if truth is None:
        return None
    p, dt = outcome.problem, outcome.dtype
    report: dict[str, Any] = {
        "protocol": protocol(p),
        "input": _score(_as_saved(outcome.start, dt), truth, p),
        "output": _score(_as_saved(outcome.restored, dt), truth, p),
    }
    if outcome.steps is not None:
        frames = [outcome.start, *outcome.steps]
        report["psnr_per_step"] = [_score(_as_saved(f, dt), truth, p, with_ssim=False)["psnr"] for f in frames]
    return report


# --------------------------------------------------------------------------- public one-call API


#: smallest side (pixels) on which the noise is estimated: below it the wavelet estimate is noise itself
MIN_ESTIMATE_SIDE = 16


def _estimate(x: np.ndarray) -> float:
    import warnings

    from skimage.restoration import estimate_sigma as wavelet_sigma

    h, w = x.shape[:2]
    if min(h, w) < MIN_ESTIMATE_SIDE:
        raise InputError(f"image is {w}x{h}, too small to estimate its noise (needs at least "
                         f"{MIN_ESTIMATE_SIDE}x{MIN_ESTIMATE_SIDE}); give the sigma as a number")
    with warnings.catch_warnings():  # scikit-image warns on narrow images; the check above covers them
        warnings.simplefilter("ignore")
        if x.shape[2] == 1:
            return float(wavelet_sigma(x[..., 0], channel_axis=None)) * GRAY_LEVELS
        return float(wavelet_sigma(x, channel_axis=-1, average_sigmas=True)) * GRAY_LEVELS


def estimate_sigma(img: np.ndarray) -> float:
    """Blind estimate of white Gaussian noise std on the 0..255 scale (wavelet MAD, Donoho),
    averaged over the colour channels; alpha ignored."""
    return _estimate(to_float(_split_channels(_as_array(img))[0]))


Result = np.ndarray | tuple[np.ndarray, list[np.ndarray]]


def _call(img: np.ndarray, problem: Problem, model: ModelLike, return_steps: bool, **opts: Any) -> Result:
    out = run(img, problem, model, Options(return_steps=return_steps, **opts))
    if not return_steps:
        return out.image
    arr = _as_array(img)
    alpha = _alpha_out(problem, _split_channels(arr)[1], out.restored.shape[:2])
    return out.image, [_assemble(s, alpha, arr) for s in out.steps or []]


def denoise(
    img: np.ndarray,
    sigma: float | str = DEFAULT_SIGMA["denoise"],
    *,
    model: ModelLike = None,
    steps: int | None = None,
    device: str = "auto",
    precision: str = "fp32",
    tile: int | None = None,
    tile_overlap: int | None = None,
    simulate: bool = False,
    seed: int = 0,
    return_steps: bool = False,
    self_ensemble: int = 1,
) -> Result:
    """Remove white Gaussian noise of std `sigma` (0..255 scale; 'auto' estimates it).
    With `simulate`, `img` is clean: noise is added (seeded) and then removed.
    Returns the image, or (image, [estimate at each step]) with `return_steps`.
    `self_ensemble` 2, 4 or 8 averages that many mirrored or turned runs (as many times slower)."""
    problem = Problem("denoise", sigma=sigma, simulate=simulate, seed=seed)
    opts = dict(steps=steps, device=device, precision=precision, tile=tile, tile_overlap=tile_overlap,
                self_ensemble=self_ensemble)
    return _call(img, problem, model, return_steps, **opts)


def superres(
    img: np.ndarray,
    scale: int = 3,
    *,
    sigma: float = DEFAULT_SIGMA["superres"],
    model: ModelLike = None,
    steps: int | None = None,
    device: str = "auto",
    precision: str = "fp32",
    tile: int | None = None,
    tile_overlap: int | None = None,
    simulate: bool = False,
    seed: int = 0,
    return_steps: bool = False,
    self_ensemble: int = 1,
) -> Result:
    """Super-resolve `img` by `scale` (2, 3 or 4), modelling it as MATLAB-bicubic downsampling.
    With `simulate`, `img` is the high-resolution truth: it is downsampled and restored.
    `self_ensemble`: as for `denoise`."""
    problem = Problem("superres", sigma=sigma, scale=scale, simulate=simulate, seed=seed)
    opts = dict(steps=steps, device=device, precision=precision, tile=tile, tile_overlap=tile_overlap,
                self_ensemble=self_ensemble)
    return _call(img, problem, model, return_steps, **opts)


def deblur(
    img: np.ndarray,
    blur_sigma: float | None = None,
    kernel: np.ndarray | str | os.PathLike | None = None,
    sigma: float = DEFAULT_SIGMA["deblur"],
    *,
    model: ModelLike = None,
    steps: int | None = None,
    device: str = "auto",
    precision: str = "fp32",
    tile: int | None = None,
    tile_overlap: int | None = None,
    simulate: bool = False,
    seed: int = 0,
    return_steps: bool = False,
    self_ensemble: int = 1,
) -> Result:
    """Remove a known blur: a Gaussian of std `blur_sigma` pixels or a `kernel` (array or image
    file), with measurement noise `sigma` (0..255). With `simulate`, `img` is blurred first.
    `self_ensemble`: as for `denoise` (the kernel is mirrored and turned with the image)."""
    problem = Problem("deblur", sigma=sigma, blur_sigma=blur_sigma, kernel=kernel, simulate=simulate, seed=seed)
    opts = dict(steps=steps, device=device, precision=precision, tile=tile, tile_overlap=tile_overlap,
                self_ensemble=self_ensemble)
    return _call(img, problem, model, return_steps, **opts)


def cs(
    img: np.ndarray,
    ensemble: str = "gaussian",
    ratio: float = 0.25,
    sigma: float = DEFAULT_SIGMA["cs"],
    seed: int = 0,
    *,
    model: ModelLike = None,
    steps: int | None = None,
    device: str = "auto",
    precision: str = "fp32",
    tile: int | None = None,
    tile_overlap: int | None = None,
    return_steps: bool = False,
) -> Result:
    """Compressed sensing, simulated as in the paper: random projections (`ensemble`, `ratio`
    measurements per pixel, `seed`) of every 32x32 block of `img`, plus noise `sigma`, then
    reconstructed. The image is reflect-padded to whole blocks and cropped back."""
    problem = Problem("cs", sigma=sigma, ensemble=ensemble, ratio=ratio, seed=seed)
    opts = dict(steps=steps, device=device, precision=precision, tile=tile, tile_overlap=tile_overlap)
    return _call(img, problem, model, return_steps, **opts)
