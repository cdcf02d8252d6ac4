"""`rim benchmark`: published protocols, baselines on the same inputs, convergence curves.

Protocols (the variant string of every run states which one was used):

- Denoising (bsd68, cbsd68, set12): clean = uint8 / 255; image i (0-based, in file-name order)
  gets noise ``np.random.default_rng(seed + i).standard_normal(shape) * sigma/255`` added in
  float64 (the same draw, scaled, for every sigma); no clipping, unless ``quantize`` (then the
  noisy image is rounded to 8 bits and clipped to 0..255). Every method (RIM and baselines)
  receives the identical noisy image; its output is rounded to uint8 before PSNR (peak 255,
  whole image) and SSIM (Wang et al., valid region); means over images.
- Deblurring (``--blur`` or ``--kernel`` on bsd68, cbsd68, set12): the clean image blurred by a
  Gaussian of that std (kernel +-3 std) or by a kernel file (normalised to sum 1), with reflected
  borders: exactly the operator the RIM is given; then noised and scored as in denoising (the
  same seeded draw; default sigma 2).
- Super-resolution (set5, set14, b100): the dataset's LR files (MATLAB bicubic, uint8) are the
  input; metrics by `metrics.sr_metrics` on uint8-rounded outputs: Y of MATLAB `rgb2ycbcr`
  rounded as Huang et al., `scale` pixels shaved per border; gray images compared directly.
- Random projections: seeded random 32x32 patches of BSD68 on [0,1]; y = A x + n with one
  matrix per patch (rows of unit norm, so sigma means the same for every ensemble and ratio);
  PSNR with peak 1 on the float estimate (no rounding), mean +- std over patches.

Times are wall-clock seconds per image (per patch for projections) after one untimed warm-up
call per method, so library loading and first-call set-up are not counted.

This module resolves the models (`load_models`), runs the protocols and assembles the report
(`make_report`); `benchmark_report` renders it (markdown, CSV, JSON, plots). The rendering
functions are re-exported here, so `from rimcli.benchmark import render_markdown` still works.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from . import baselines, datasets
from .benchmark_report import (  # noqa: F401 - re-exported: the rendering's old home
    plot_convergence,
    render_markdown,
    report_json,
    summary_table,
    write_csv,
    write_json,
    write_outputs,
)
from .errors import RimError
from .io import GRAY_LEVELS, quantum
from .metrics import psnr, psnr_batch, sr_metrics, sr_psnr, ssim, to_uint8_scale
from .tasks import (
    CS_BLOCK,
    DENOISE_TEST_SIGMAS,
    cs_operator,
    deblur_operator,
    denoise_operator,
    fit_channels,
    kernel_operator,
    superres_operator,
)

DENOISE_SETS = ("bsd68", "cbsd68", "set12")
SR_SETS = ("set5", "set14", "b100")
PROJECTIONS = "projections"
BENCHMARKS = DENOISE_SETS + SR_SETS + (PROJECTIONS,)

DEFAULT_SIGMAS = DENOISE_TEST_SIGMAS
#: deblurring (`--blur` on a denoising set): the noise std (0..255) when none is given
DEFAULT_DEBLUR_SIGMA = 2.0
#: summary rows that score the degraded input itself, not a method
INPUT_ROWS = ("noisy", "blurred")
#: measurement noise std for projections, on the [0,1] scale (2.55 on the 0..255 scale)
DEFAULT_CS_SIGMA = 0.01
DEFAULT_PATCHES = 5000
CS_MAX_STEPS = 50
PATCH = CS_BLOCK

Progress = Callable[[str, int, int], None]


class BenchmarkError(RimError, ValueError):
    """A model that does not fit the benchmark asked for."""


# ---------------------------------------------------------------- models


@dataclass
class ModelSpec:
    label: str
    name: str  # manifest name or file path, as given
    sha256: str
    steps: int  # the headline figure is at this step
    max_steps: int  # the convergence curve runs to here
    training_steps: int | None
    channels: int
    arch: str
    model: Any = field(repr=False, default=None)  # the RIM
    self_ensemble: int = 1  # orientations averaged (`inference.restore`); the label says "+seN"
    precision: str = "fp32"  # the network's (`inference.resolve_precision`); other than fp32, the label says so

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "model"}


def load_models(names: list[str], task: str, channels: int, steps: int | None, max_steps: int | None,
                curve_default: int | None = None, self_ensemble: int = 1,
                precisions: tuple[str, ...] = ("fp32",)) -> list[ModelSpec]:
    """Resolve models (bundled names or .safetensors paths) with their step counts.

    Headline steps: `steps`, else those the model records (`weights.recorded_steps`). Curve:
    `max_steps`, else `curve_default`, else twice the training horizon, else twice the steps.
    `self_ensemble` > 1 runs each model so (labelled NAME+seN); projections have none.
    Each model runs at each of `precisions`: bf16 (or fp16, GPU only) is labelled NAME+bf16, so
    one report compares it with fp32 (the precision of the published figures)."""
    from .inference import AUTOCAST_DTYPES, check_self_ensemble
    from .tasks import SELF_ENSEMBLE_TASKS
    from .weights import default_model, recorded_steps, resolve, sha256, training_horizon

    if check_self_ensemble(self_ensemble) > 1 and task not in SELF_ENSEMBLE_TASKS:
        # refused before any data loads; `inference.ensemble_operators` would refuse it per image
        raise BenchmarkError(f"the {task} task has no self-ensemble (a flipped measurement is not what was measured)")
    bad = [p for p in precisions if p not in AUTOCAST_DTYPES]  # the names `inference.resolve_precision` takes
    if bad or not precisions:
        raise BenchmarkError(f"precision must be one or more of {', '.join(AUTOCAST_DTYPES)}, got {','.join(precisions)!r}")

    names = list(names) or [default_model(task, channels)]
    specs: list[ModelSpec] = []
    for name in names:
        rim, entry = resolve(name)
        label = entry.name if entry is not None else Path(name).stem
        digest = entry.sha256 if entry is not None else sha256(Path(name))
        if task not in (entry.tasks if entry else [task]):
            raise BenchmarkError(f"model {label} is not trained for {task} (it serves: {', '.join(entry.tasks)})")
        horizon = training_horizon(name, entry)
        t = steps or recorded_steps(name, entry)
        if not t:
            raise BenchmarkError(f"model {label} records no default steps; pass --steps")
        t_max = max_steps or curve_default or 2 * (horizon or t)
        label += f"+se{self_ensemble}" if self_ensemble > 1 else ""
        for precision in dict.fromkeys(precisions):
            tagged = label + (f"+{precision}" if precision != "fp32" else "")
            if any(s.label == tagged for s in specs):
                tagged = f"{tagged}#{len(specs) + 1}"
            specs.append(ModelSpec(tagged, name, digest, int(t), int(t_max), horizon, rim.config.channels,
                                   rim.config.arch, rim, self_ensemble, precision))
    return specs


# ---------------------------------------------------------------- running a RIM on an image


def _to_batch(img: np.ndarray, model_channels: int):  # noqa: ANN202 - (tensor, inverse)
    """HxW(xC) array -> (B, C, H, W) tensor fitting the model, and the map back (as `rim
    restore` fits them: `tasks.fit_channels`)."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))
    t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    return fit_channels(t, model_channels)


def _from_batch(t) -> np.ndarray:  # noqa: ANN001 - a torch tensor
    a = t[0].permute(1, 2, 0).double().numpy()
    return a[..., 0] if a.shape[2] == 1 else a


@dataclass
class RimRun:
    final: np.ndarray  # the estimate at spec.steps
    seconds: float  # wall time of the spec.steps run
    every: list[np.ndarray] | None  # estimates at steps 1..max_steps


def run_rim(spec: ModelSpec, y_img: np.ndarray, operator, sigma01: float, device: str, curve: bool = True) -> RimRun:  # noqa: ANN001
    """Time a run at the headline steps (what `rim restore` does), then, when the curve runs
    longer, a separate untimed run to max_steps for the per-step estimates."""
    from .inference import restore

    y, back = _to_batch(y_img, spec.channels)
    same = spec.max_steps == spec.steps
    step = quantum(np.uint8)  # results are scored as 8-bit images, as `rim` saves them for 8-bit inputs
    t0 = time.perf_counter()
    opts = dict(device=device, precision=spec.precision, out_step=step, self_ensemble=spec.self_ensemble)
    res = restore(y, operator, sigma01, spec.model, spec.steps, return_steps=curve and same, **opts)
    seconds = time.perf_counter() - t0
    every = None
    if curve:
        steps = res.steps if same else restore(y, operator, sigma01, spec.model, spec.max_steps, return_steps=True,
                                               **opts).steps
        every = [_from_batch(back(s)) for s in steps]
    return RimRun(_from_batch(back(res.image)), seconds, every)


# ---------------------------------------------------------------- protocol helpers


def add_noise(clean: np.ndarray, sigma: float, seed: int, quantize: bool = False) -> np.ndarray:
    """The benchmark's noisy image: clean in [0,1] plus N(0, sigma/255), seeded; optional 8-bit rounding."""
    noise = np.random.default_rng(seed).standard_normal(clean.shape)
    noisy = np.asarray(clean, dtype=np.float64) + (sigma / GRAY_LEVELS) * noise
    if quantize:
        noisy = np.clip(np.round(noisy * GRAY_LEVELS), 0, GRAY_LEVELS) / GRAY_LEVELS
    return noisy


def denoise_variant(sigma: float, seed: int, quantize: bool) -> str:
    q = "8-bit quantised (rounded, clipped)" if quantize else "float (not quantised)"
    return f"awgn sigma={sigma:g} seed={seed}+i {q}; PSNR peak 255 whole image, SSIM Wang valid region, outputs rounded to uint8"


def deblur_variant(blur: str, kernel: str, sigma: float, seed: int, quantize: bool) -> str:
    q = "8-bit quantised (rounded, clipped)" if quantize else "float (not quantised)"
    return (f"{blur} ({kernel}, reflected borders) then awgn sigma={sigma:g} seed={seed}+i "
            f"{q}; PSNR peak 255 whole image, SSIM Wang valid region, outputs rounded to uint8")


def sr_variant(scale: int, sigma: float) -> str:
    noise = f", RIM sigma={sigma:g}" if sigma else ""
    return (f"x{scale} dataset LR files (MATLAB bicubic){noise}; Y of MATLAB rgb2ycbcr rounded (Huang et al.), "
            f"shave {scale}, PSNR peak 255, SSIM Wang; outputs rounded to uint8")


def cs_variant(kind: str, ratio: float, sigma01: float, seed: int, n: int) -> str:
    return (f"{kind} ratio={ratio:g} sigma={sigma01:g} ([0,1] scale) seed={seed}; {n} random {PATCH}x{PATCH} BSD68 patches; "
            "PSNR peak 1 on the float estimate")


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _summary_row(method: str, kind: str, rows: list[dict], steps: int | None = None) -> dict:
    out: dict[str, Any] = {"method": method, "kind": kind,
                           "psnr": _mean([r["psnr"] for r in rows]),
                           "ssim": _mean([r["ssim"] for r in rows]),
                           "seconds": _mean([r["seconds"] for r in rows])}
    if steps is not None:
        out["steps"] = steps
    curves = [r["psnr_steps"] for r in rows if r.get("psnr_steps")]
    if curves:
        out["psnr_steps"] = [float(v) for v in np.mean(np.array(curves), axis=0)]
    return out


# ---------------------------------------------------------------- denoising


def run_denoise(
    name: str,
    folder: Path,
    sigmas: list[float],
    specs: list[ModelSpec],
    baseline_names: list[str],
    *,
    seed: int = 0,
    quantize: bool = False,
    limit: int | None = None,
    device: str = "auto",
    progress: Progress | None = None,
) -> list[dict]:
    ds = datasets.info(name)
    images = datasets.denoise_images(folder, ds.channels, limit)
    funcs = {b: baselines.denoiser(b) for b in baseline_names}
    _warm_denoise(images[0][1], specs, funcs, device)
    runs = []
    for sigma in sigmas:
        label = f"sigma={sigma:g}"
        per_image = []
        for i, (img_name, clean_u8) in enumerate(images):
            if progress:
                progress(f"{name} {label}", i, len(images))
            per_image.append(_denoise_one(img_name, clean_u8, sigma, seed + i, quantize, specs, funcs, device))
        if progress:
            progress(f"{name} {label}", len(images), len(images))
        runs.append({"setting": {"sigma": sigma}, "label": label, "variant": denoise_variant(sigma, seed, quantize),
                     "summary": _summaries(per_image, specs, ["noisy"] + list(funcs)), "images": per_image})
    return runs


def _warm_rims(crop: np.ndarray, specs: list[ModelSpec], operator, sigma01: float, device: str) -> None:  # noqa: ANN001
    """One untimed step of each RIM on a small crop, so first-call set-up is not timed."""
    for spec in specs:
        run_rim(ModelSpec(**{**spec.to_dict(), "steps": 1, "max_steps": 1}, model=spec.model),
                crop, operator, sigma01, device, curve=False)


def _warm_denoise(img_u8: np.ndarray, specs: list[ModelSpec], funcs: dict, device: str) -> None:
    crop = img_u8[:64, :64] / GRAY_LEVELS
    _warm_rims(crop, specs, denoise_operator(), 0.1, device)
    for f in funcs.values():
        f(crop, 25.0)


def _denoise_one(img_name: str, clean_u8: np.ndarray, sigma: float, seed: int, quantize: bool,
                 specs: list[ModelSpec], funcs: dict, device: str) -> dict:
    noisy = add_noise(clean_u8.astype(np.float64) / GRAY_LEVELS, sigma, seed, quantize)
    calls = {b: (lambda y, f=f: f(y, sigma)) for b, f in funcs.items()}
    return _restore_one(img_name, clean_u8, seed, noisy, "noisy", denoise_operator(), sigma, specs, calls, device)


def _restore_one(img_name: str, clean_u8: np.ndarray, seed: int, y: np.ndarray, input_label: str, operator,  # noqa: ANN001
                 sigma: float, specs: list[ModelSpec], calls: dict[str, Callable[[np.ndarray], np.ndarray]],
                 device: str) -> dict:
    """Score the measurement itself, each RIM and each baseline (given y only) against the clean image."""
    ref = clean_u8.astype(np.float64)

    def score(est: np.ndarray) -> tuple[float, float]:
        out = to_uint8_scale(est)
        return psnr(out, ref), ssim(out, ref)

    methods: dict[str, dict] = {}
    p, s = score(y)
    methods[input_label] = {"psnr": p, "ssim": s, "seconds": 0.0}
    for spec in specs:
        run = run_rim(spec, y, operator, sigma / GRAY_LEVELS, device)
        p, s = score(run.final)
        methods[spec.label] = {"psnr": p, "ssim": s, "seconds": run.seconds,
                               "psnr_steps": [psnr(to_uint8_scale(e), ref) for e in run.every or []]}
    for b, call in calls.items():
        t0 = time.perf_counter()
        est = call(y.copy())
        seconds = time.perf_counter() - t0
        p, s = score(est)
        methods[b] = {"psnr": p, "ssim": s, "seconds": seconds}
    return {"name": img_name, "shape": list(clean_u8.shape), "seed": seed, "methods": methods}


def _summaries(per_image: list[dict], specs: list[ModelSpec], others: list[str]) -> list[dict]:
    """Mean rows: the degraded input first (a reference), then the RIMs, then the baselines."""
    inputs = [m for m in others if m in INPUT_ROWS]
    rows = [_summary_row(m, "input", [im["methods"][m] for im in per_image]) for m in inputs]
    rows += [_summary_row(s.label, "rim", [im["methods"][s.label] for im in per_image], s.steps) for s in specs]
    rows += [_summary_row(m, "baseline", [im["methods"][m] for im in per_image]) for m in others if m not in INPUT_ROWS]
    return rows


# ---------------------------------------------------------------- deblurring


def blur_image(clean: np.ndarray, operator) -> np.ndarray:  # noqa: ANN001 - a tasks.deblur_operator
    """HxW(xC) image on [0,1] blurred by the operator the RIM is given (float64, reflected borders)."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(clean, dtype=np.float64))
    t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    return _from_batch(operator.A(t))


class _DeblurCase(NamedTuple):
    setting: dict  # {"blur": std} or {"kernel": file name}
    label: str  # "blur=1.6", "kernel=shake.npy"
    blur: str  # what blurred the image, and its kernel, for the variant string
    kernel: str
    op: Any  # operators.Blur


def _deblur_cases(blurs: list[float], kernels: list[Path]) -> list[_DeblurCase]:
    """One case per Gaussian std, then per kernel file (each file read here, once)."""
    cases = []
    for b in blurs:
        op = deblur_operator(b)
        cases.append(_DeblurCase({"blur": b}, f"blur={b:g}", f"gaussian blur std={b:g} px",
                                 "{}x{} kernel".format(*op.kernel.shape), op))
    for path in map(Path, kernels):
        op = kernel_operator(path)
        digest = hashlib.sha256(op.kernel.numpy().tobytes()).hexdigest()[:12]
        cases.append(_DeblurCase({"kernel": path.name}, f"kernel={path.name}", f"kernel file {path.name}",
                                 "{}x{}, normalised float32 sha256 {}".format(*op.kernel.shape, digest), op))
    return cases


def run_deblur(
    name: str,
    folder: Path,
    blurs: list[float],
    sigmas: list[float],
    specs: list[ModelSpec],
    baseline_names: list[str],
    *,
    kernels: list[Path] = (),
    seed: int = 0,
    quantize: bool = False,
    limit: int | None = None,
    device: str = "auto",
    progress: Progress | None = None,
) -> list[dict]:
    """A denoising set blurred by a Gaussian of each std in `blurs` (pixels) and by each kernel
    file in `kernels` (motion, defocus: any blur), then noised as the denoising protocol does (the
    same seeded draw per image); scored as denoising is."""
    cases = _deblur_cases(blurs, list(kernels))  # a bad kernel file fails before the images load
    ds = datasets.info(name)
    images = datasets.denoise_images(folder, ds.channels, limit)
    side = min(min(im.shape[:2]) for _, im in images)
    for case in cases:  # the baselines need the kernel inside the image; a photo that small is no test
        if max(case.op.kernel.shape) > side:
            raise BenchmarkError(f"the {case.blur} has a kernel ({case.kernel}) larger than the smallest image ({side} px)")
    funcs = {b: baselines.deblurrer(b) for b in baseline_names}
    _warm_deblur(images[0][1], specs, funcs, device)
    runs = []
    for case in cases:
        op, kernel = case.op, case.op.kernel.double().numpy()
        for sigma in sigmas:
            label = f"sigma={sigma:g} {case.label}"
            calls = {b: (lambda y, f=f, s=sigma, k=kernel: f(y, s, k)) for b, f in funcs.items()}
            per_image = []
            for i, (img_name, clean_u8) in enumerate(images):
                if progress:
                    progress(f"{name} {label}", i, len(images))
                y = add_noise(blur_image(clean_u8 / GRAY_LEVELS, op), sigma, seed + i, quantize)
                per_image.append(_restore_one(img_name, clean_u8, seed + i, y, "blurred", op, sigma, specs, calls, device))
            if progress:
                progress(f"{name} {label}", len(images), len(images))
            runs.append({"setting": {**case.setting, "sigma": sigma}, "label": label,
                         "variant": deblur_variant(case.blur, case.kernel, sigma, seed, quantize),
                         "summary": _summaries(per_image, specs, ["blurred", *funcs]), "images": per_image})
    return runs


def _warm_deblur(img_u8: np.ndarray, specs: list[ModelSpec], funcs: dict, device: str) -> None:
    crop = img_u8[:64, :64] / GRAY_LEVELS
    op = deblur_operator(1.0)
    _warm_rims(crop, specs, op, 0.01, device)
    for f in funcs.values():
        f(crop, 2.0, op.kernel.double().numpy())


# ---------------------------------------------------------------- super-resolution


def run_sr(
    name: str,
    folder: Path,
    scales: list[int],
    specs: list[ModelSpec],
    baseline_names: list[str],
    *,
    sigma: float = 0.0,
    limit: int | None = None,
    device: str = "auto",
    progress: Progress | None = None,
) -> list[dict]:
    funcs = {b: baselines.upscaler(b) for b in baseline_names}
    runs = []
    for scale in scales:
        label = f"x{scale}"
        pairs = datasets.sr_pairs(folder, scale, limit)
        _warm_sr(pairs[0][2], scale, specs, funcs, device)
        per_image = []
        for i, (img_name, hr, lr) in enumerate(pairs):
            if progress:
                progress(f"{name} {label}", i, len(pairs))
            per_image.append(_sr_one(img_name, hr, lr, scale, sigma, specs, funcs, device))
        if progress:
            progress(f"{name} {label}", len(pairs), len(pairs))
        runs.append({"setting": {"scale": scale}, "label": label, "variant": sr_variant(scale, sigma),
                     "summary": _summaries(per_image, specs, list(funcs)), "images": per_image})
    return runs


def _warm_sr(lr_u8: np.ndarray, scale: int, specs: list[ModelSpec], funcs: dict, device: str) -> None:
    crop = lr_u8[:32, :32]
    _warm_rims(crop / GRAY_LEVELS, specs, superres_operator(scale), 0.0, device)
    for f in funcs.values():
        f(crop, scale)


def _sr_one(img_name: str, hr: np.ndarray, lr: np.ndarray, scale: int, sigma: float,
            specs: list[ModelSpec], funcs: dict, device: str) -> dict:
    def score(est_255: np.ndarray) -> tuple[float, float]:
        return sr_metrics(np.clip(np.round(est_255), 0, 255), hr.astype(np.float64), scale)

    methods: dict[str, dict] = {}
    for spec in specs:
        run = run_rim(spec, lr / GRAY_LEVELS, superres_operator(scale), sigma / GRAY_LEVELS, device)
        p, s = score(to_uint8_scale(run.final))
        curve = [sr_psnr(to_uint8_scale(e), hr, scale) for e in run.every or []]
        methods[spec.label] = {"psnr": p, "ssim": s, "seconds": run.seconds, "psnr_steps": curve}
    for b, f in funcs.items():
        t0 = time.perf_counter()
        est = f(lr, scale)
        seconds = time.perf_counter() - t0
        p, s = score(est)
        methods[b] = {"psnr": p, "ssim": s, "seconds": seconds}
    return {"name": img_name, "shape": list(hr.shape), "methods": methods}


# ---------------------------------------------------------------- random projections


def sample_patches(images: list[np.ndarray], n: int, seed: int, size: int = PATCH) -> np.ndarray:
    """n random size x size patches (N, size, size) on [0,1], positions drawn from `seed`."""
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(images), size=n)
    out = np.empty((n, size, size), dtype=np.float32)
    for k, i in enumerate(which):
        img = images[i]
        r = rng.integers(0, img.shape[0] - size + 1)
        c = rng.integers(0, img.shape[1] - size + 1)
        out[k] = img[r:r + size, c:c + size] / GRAY_LEVELS
    return out


def _patch_psnr(est, ref):  # noqa: ANN001, ANN202 - torch tensors (B,1,P,P) -> (B,) PSNR, peak 1
    """Per-patch PSNR, peak 1, on the float estimate in float64 (no rounding: the CS protocol)."""
    return psnr_batch(est.double(), ref.double(), peak=1.0, min_mse=1e-20)


def run_projections(
    folder: Path,
    specs: list[ModelSpec],
    *,
    ensembles: list[str],
    ratios: list[float],
    patches: int = DEFAULT_PATCHES,
    sigma01: float = DEFAULT_CS_SIGMA,
    seed: int = 0,
    batch: int = 250,
    limit: int | None = None,
    device: str = "auto",
    progress: Progress | None = None,
) -> list[dict]:
    import torch

    from .inference import restore

    imgs = [img for _, img in datasets.denoise_images(folder, 1, limit)]
    x_all = torch.from_numpy(sample_patches(imgs, patches, seed))[:, None]
    nb = -(-patches // batch)
    runs = []
    for kind in ensembles:
        for ratio in ratios:
            label = f"{kind} 1/{round(1 / ratio):d}" if abs(1 / ratio - round(1 / ratio)) < 1e-9 else f"{kind} {ratio:g}"
            pinv: list = []
            curves: dict[str, list] = {s.label: [] for s in specs}
            seconds: dict[str, float] = {s.label: 0.0 for s in specs}
            for b in range(nb):
                if progress:
                    progress(f"projections {label}", b, nb)
                xb = x_all[b * batch:(b + 1) * batch]
                # distinct matrices and noise per batch, reproducible from the base seed
                op = cs_operator(kind, ratio, seed * 1_000_003 + b, batch=xb.shape[0])
                gen = torch.Generator().manual_seed(seed * 1_000_003 + b)
                y = op.measure(xb, sigma01, gen)
                pinv.append(_patch_psnr(op.init(y).clamp(0, 1), xb))
                for spec in specs:
                    yy, back = fit_channels(y, spec.channels)  # gray patches: an RGB model sees them replicated
                    t0 = time.perf_counter()
                    res = restore(yy, op, sigma01, spec.model, spec.max_steps, return_steps=True, device=device,
                                  precision=spec.precision)
                    seconds[spec.label] += time.perf_counter() - t0
                    curves[spec.label].append(torch.stack([_patch_psnr(back(s), xb) for s in res.steps], 1))
            if progress:
                progress(f"projections {label}", nb, nb)
            runs.append(_cs_run(kind, ratio, label, sigma01, seed, patches, pinv, curves, seconds, specs))
    return runs


def _cs_run(kind: str, ratio: float, label: str, sigma01: float, seed: int, n: int, pinv: list, curves: dict,
            seconds: dict, specs: list[ModelSpec]) -> dict:
    import torch

    p = torch.cat(pinv).numpy()
    summary = []
    for spec in specs:
        c = torch.cat(curves[spec.label]).numpy()  # (N, max_steps)
        t = min(spec.steps, c.shape[1]) - 1
        summary.append({"method": spec.label, "kind": "rim", "steps": spec.steps,
                        "psnr": float(c[:, t].mean()), "psnr_std": float(c[:, t].std()), "ssim": None,
                        # the one (timed) run goes to max_steps, so that is what the time is for
                        "seconds": seconds[spec.label] / n, "timed_steps": spec.max_steps,
                        "psnr_steps": [float(v) for v in c.mean(0)], "psnr_steps_std": [float(v) for v in c.std(0)]})
    summary.append({"method": "pinv", "kind": "baseline", "psnr": float(p.mean()), "psnr_std": float(p.std()),
                    "ssim": None, "seconds": None})
    return {"setting": {"ensemble": kind, "ratio": ratio}, "label": label, "variant": cs_variant(kind, ratio, sigma01, seed, n),
            "summary": summary, "patches": n}


# ---------------------------------------------------------------- the report (rendered by benchmark_report)


def machine_info(device: str = "auto") -> dict:
    """What the timings were measured on."""
    import torch

    from .inference import resolve_device

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    dev = resolve_device(device)
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
            "cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "numpy": np.__version__, "device": str(dev)}
    if hasattr(os, "getloadavg"):  # a busy shared machine slows every timing: say how busy it was
        info["load_avg_1min"] = round(os.getloadavg()[0], 2)
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    for mod in ("skimage", "bm3d"):
        try:
            import importlib.metadata as md

            info[mod] = md.version("scikit-image" if mod == "skimage" else mod)
        except Exception:  # noqa: BLE001 - optional packages may be absent
            pass
    return info


_PINV = {"pinv": "pseudo-inverse start pinv(A) y, clipped to [0,1]"}


def make_report(benchmark: str, task: str, runs: list[dict], specs: list[ModelSpec], baseline_names: list[str],
                *, folder: Path | None, seed: int, command: str, device: str, extra: dict | None = None) -> dict:
    from . import __version__

    protocol = {"seed": seed, "variants": [r["variant"] for r in runs]}
    protocol.update(extra or {})
    return {
        "rimcli": __version__,
        "benchmark": benchmark,
        "task": task,
        "dataset": {"name": benchmark if benchmark != PROJECTIONS else "bsd68", "folder": str(folder) if folder else None},
        "protocol": protocol,
        "models": [s.to_dict() for s in specs],
        "baselines": {b: baselines.describe(b, task) for b in baseline_names} | (_PINV if task == "cs" else {}),
        "machine": machine_info(device),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "runs": runs,
    }
