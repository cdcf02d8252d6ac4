"""`rim benchmark`: published protocols, baselines on the same inputs, convergence curves.

Protocols (the variant string of every run states which one was used):

- Denoising (bsd68, cbsd68, set12): clean = uint8 / 255; image i (0-based, in file-name order)
  gets noise ``np.random.default_rng(seed + i).standard_normal(shape) * sigma/255`` added in
  float64 (the same draw, scaled, for every sigma); no clipping, unless ``quantize`` (then the
  noisy image is rounded to 8 bits and clipped to 0..255). Every method (RIM and baselines)
  receives the identical noisy image; its output is rounded to uint8 before PSNR (peak 255,
  whole image) and SSIM (Wang et al., valid region); means over images.
- Super-resolution (set5, set14, b100): the dataset's LR files (MATLAB bicubic, uint8) are the
  input; metrics by `metrics.sr_metrics` on uint8-rounded outputs: Y of MATLAB `rgb2ycbcr`
  rounded as Huang et al., `scale` pixels shaved per border; gray images compared directly.
- Random projections: seeded random 32x32 patches of BSD68 on [0,1]; y = A x + n with one
  matrix per patch (rows of unit norm, so sigma means the same for every ensemble and ratio);
  PSNR with peak 1 on the float estimate (no rounding), mean +- std over patches.

Times are wall-clock seconds per image (per patch for projections) after one untimed warm-up
call per method, so library loading and first-call set-up are not counted.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import baselines, datasets
from .errors import RimError
from .io import write_bytes
from .metrics import psnr, sr_metrics, sr_psnr, ssim, to_uint8_scale
from .tasks import CS_BLOCK, DENOISE_TEST_SIGMAS, cs_operator, denoise_operator, fit_channels, superres_operator

DENOISE_SETS = ("bsd68", "cbsd68", "set12")
SR_SETS = ("set5", "set14", "b100")
PROJECTIONS = "projections"
BENCHMARKS = DENOISE_SETS + SR_SETS + (PROJECTIONS,)

DEFAULT_SIGMAS = DENOISE_TEST_SIGMAS
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

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "model"}


def load_models(names: list[str], task: str, channels: int, steps: int | None, max_steps: int | None,
                curve_default: int | None = None) -> list[ModelSpec]:
    """Resolve models (bundled names or .safetensors paths) with their step counts.

    Headline steps: `steps`, else those the model records (`weights.recorded_steps`). Curve:
    `max_steps`, else `curve_default`, else twice the training horizon, else twice the steps."""
    from .weights import default_model, recorded_steps, resolve, sha256, training_horizon

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
        if any(s.label == label for s in specs):
            label = f"{label}#{len(specs) + 1}"
        specs.append(ModelSpec(label, name, digest, int(t), int(t_max), horizon, rim.config.channels,
                               rim.config.arch, rim))
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
    t0 = time.perf_counter()
    res = restore(y, operator, sigma01, spec.model, spec.steps, return_steps=curve and same, device=device)
    seconds = time.perf_counter() - t0
    every = None
    if curve:
        steps = res.steps if same else restore(y, operator, sigma01, spec.model, spec.max_steps, return_steps=True,
                                               device=device).steps
        every = [_from_batch(back(s)) for s in steps]
    return RimRun(_from_batch(back(res.image)), seconds, every)


# ---------------------------------------------------------------- protocol helpers


def add_noise(clean: np.ndarray, sigma: float, seed: int, quantize: bool = False) -> np.ndarray:
    """The benchmark's noisy image: clean in [0,1] plus N(0, sigma/255), seeded; optional 8-bit rounding."""
    noise = np.random.default_rng(seed).standard_normal(clean.shape)
    noisy = np.asarray(clean, dtype=np.float64) + (sigma / 255.0) * noise
    if quantize:
        noisy = np.clip(np.round(noisy * 255.0), 0, 255) / 255.0
    return noisy


def denoise_variant(sigma: float, seed: int, quantize: bool) -> str:
    q = "8-bit quantised (rounded, clipped)" if quantize else "float (not quantised)"
    return f"awgn sigma={sigma:g} seed={seed}+i {q}; PSNR peak 255 whole image, SSIM Wang valid region, outputs rounded to uint8"


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


def _warm_denoise(img_u8: np.ndarray, specs: list[ModelSpec], funcs: dict, device: str) -> None:
    crop = img_u8[:64, :64] / 255.0
    for spec in specs:
        run_rim(ModelSpec(**{**spec.to_dict(), "steps": 1, "max_steps": 1}, model=spec.model),
                crop, denoise_operator(), 0.1, device, curve=False)
    for f in funcs.values():
        f(crop, 25.0)


def _denoise_one(img_name: str, clean_u8: np.ndarray, sigma: float, seed: int, quantize: bool,
                 specs: list[ModelSpec], funcs: dict, device: str) -> dict:
    clean = clean_u8.astype(np.float64) / 255.0
    ref = clean_u8.astype(np.float64)
    noisy = add_noise(clean, sigma, seed, quantize)

    def score(est: np.ndarray) -> tuple[float, float]:
        out = to_uint8_scale(est)
        return psnr(out, ref), ssim(out, ref)

    methods: dict[str, dict] = {}
    p, s = score(noisy)
    methods["noisy"] = {"psnr": p, "ssim": s, "seconds": 0.0}
    for spec in specs:
        run = run_rim(spec, noisy, denoise_operator(), sigma / 255.0, device)
        p, s = score(run.final)
        methods[spec.label] = {"psnr": p, "ssim": s, "seconds": run.seconds,
                               "psnr_steps": [psnr(to_uint8_scale(e), ref) for e in run.every or []]}
    for b, f in funcs.items():
        t0 = time.perf_counter()
        est = f(noisy.copy(), sigma)
        seconds = time.perf_counter() - t0
        p, s = score(est)
        methods[b] = {"psnr": p, "ssim": s, "seconds": seconds}
    return {"name": img_name, "shape": list(clean_u8.shape), "seed": seed, "methods": methods}


def _summaries(per_image: list[dict], specs: list[ModelSpec], others: list[str]) -> list[dict]:
    """Mean rows: the noisy input first (a reference), then the RIMs, then the baselines."""
    rows = [_summary_row("noisy", "input", [im["methods"]["noisy"] for im in per_image])] if "noisy" in others else []
    rows += [_summary_row(s.label, "rim", [im["methods"][s.label] for im in per_image], s.steps) for s in specs]
    rows += [_summary_row(m, "baseline", [im["methods"][m] for im in per_image]) for m in others if m != "noisy"]
    return rows


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
    for spec in specs:
        run_rim(ModelSpec(**{**spec.to_dict(), "steps": 1, "max_steps": 1}, model=spec.model),
                crop / 255.0, superres_operator(scale), 0.0, device, curve=False)
    for f in funcs.values():
        f(crop, scale)


def _sr_one(img_name: str, hr: np.ndarray, lr: np.ndarray, scale: int, sigma: float,
            specs: list[ModelSpec], funcs: dict, device: str) -> dict:
    def score(est_255: np.ndarray) -> tuple[float, float]:
        return sr_metrics(np.clip(np.round(est_255), 0, 255), hr.astype(np.float64), scale)

    methods: dict[str, dict] = {}
    for spec in specs:
        run = run_rim(spec, lr / 255.0, superres_operator(scale), sigma / 255.0, device)
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
        out[k] = img[r:r + size, c:c + size] / 255.0
    return out


def _patch_psnr(est, ref):  # noqa: ANN001, ANN202 - torch tensors (B,1,P,P) -> (B,) PSNR, peak 1
    import torch

    mse = ((est.double() - ref.double()) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-20))


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
                    res = restore(yy, op, sigma01, spec.model, spec.max_steps, return_steps=True, device=device)
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


# ---------------------------------------------------------------- reports


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
        "baselines": {b: baselines.describe(b) for b in baseline_names} | (_PINV if task == "cs" else {}),
        "machine": machine_info(device),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "runs": runs,
    }


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{digits}f}"


def _method_name(row: dict) -> str:
    if row["kind"] == "rim":
        return f"RIM {row['method']} (T={row['steps']})"
    return {"noisy": "noisy input", "pinv": "pseudo-inverse"}.get(row["method"], row["method"])


def summary_table(run: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows of one run's summary (shared by markdown and the terminal table)."""
    cs = "patches" in run
    if cs:
        header = ["method", "PSNR (dB)", "± std", "s/patch"]
        rows = [[_method_name(r), _fmt(r["psnr"]), _fmt(r["psnr_std"]),
                 _fmt(r["seconds"], 5) + (f" ({r['timed_steps']} steps)" if r.get("timed_steps") else "")]
                for r in run["summary"]]
    else:
        header = ["method", "PSNR (dB)", "SSIM", "s/image"]
        rows = [[_method_name(r), _fmt(r["psnr"]), _fmt(r["ssim"], 4), _fmt(r["seconds"], 3)] for r in run["summary"]]
    return header, rows


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _steps_table(run: dict) -> str | None:
    rims = [r for r in run["summary"] if r.get("psnr_steps")]
    if not rims:
        return None
    n = max(len(r["psnr_steps"]) for r in rims)
    header = ["step"] + [r["method"] for r in rims]
    rows = []
    for t in range(n):
        cells = [str(t + 1)]
        for r in rims:
            if t >= len(r["psnr_steps"]):
                cells.append("")
            elif r.get("psnr_steps_std"):
                cells.append(f"{r['psnr_steps'][t]:.2f} ± {r['psnr_steps_std'][t]:.2f}")
            else:
                cells.append(f"{r['psnr_steps'][t]:.2f}")
        rows.append(cells)
    return _md_table(header, rows)


def render_markdown(report: dict, level: int = 2, steps: bool = True) -> str:
    """The report as markdown: provenance, one summary table per run, PSNR by step."""
    h = "#" * level
    m = report["machine"]
    models = ", ".join(f"`{s['label']}` (sha256 `{s['sha256'][:12]}`, T={s['steps']})" for s in report["models"])
    lines = [f"{h} {report['benchmark']}", "",
             f"- command: `{report['command']}`",
             f"- models: {models}",
             f"- machine: {m['cpu']} ({m['cpu_count']} logical CPUs, {m['torch_threads']} torch threads), "
             f"device {m['device']}{' ' + m['gpu'] if m.get('gpu') else ''}; torch {m['torch']}; {m['platform']}"
             + (f"; load average {m['load_avg_1min']} at start" if "load_avg_1min" in m else ""),
             f"- date: {report['date']}; rimcli {report['rimcli']}",
             f"- seed: {report['protocol']['seed']}", ""]
    for run in report["runs"]:
        lines += [f"{h}# {report['benchmark']} {run['label']}", "", f"Protocol: {run['variant']}.", ""]
        lines += [_md_table(*summary_table(run)), ""]
        table = _steps_table(run) if steps else None
        if table:
            lines += ["<details><summary>PSNR (dB) by RIM step</summary>", "", table, "", "</details>", ""]
    if report.get("baselines"):
        lines += ["Baseline settings:", ""] + [f"- {k}: {v}" for k, v in report["baselines"].items()] + [""]
    return "\n".join(lines)


def write_csv(report: dict, path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        if report["task"] == "cs":
            w.writerow(["ensemble", "ratio", "method", "step", "psnr_mean", "psnr_std", "patches"])
            for run in report["runs"]:
                s = run["setting"]
                for r in run["summary"]:
                    if r.get("psnr_steps"):
                        for t, (mu, sd) in enumerate(zip(r["psnr_steps"], r["psnr_steps_std"], strict=True), 1):
                            w.writerow([s["ensemble"], s["ratio"], r["method"], t, f"{mu:.4f}", f"{sd:.4f}", run["patches"]])
                    else:
                        w.writerow([s["ensemble"], s["ratio"], r["method"], 0, f"{r['psnr']:.4f}", f"{r['psnr_std']:.4f}",
                                    run["patches"]])
            return
        w.writerow(["benchmark", "setting", "image", "method", "psnr", "ssim", "seconds"])
        for run in report["runs"]:
            for im in run["images"]:
                for method, r in im["methods"].items():
                    w.writerow([report["benchmark"], run["label"], im["name"], method, f"{r['psnr']:.4f}",
                                f"{r['ssim']:.6f}", f"{r['seconds']:.4f}"])


def _finite(obj: Any) -> Any:
    """Strict JSON: a non-finite float (PSNR of a perfect match is inf) becomes null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def report_json(report: dict) -> str:
    return json.dumps(_finite(report), indent=1, allow_nan=False) + "\n"


def write_json(report: dict, path: Path) -> None:
    write_bytes(path, report_json(report))


def plot_convergence(report: dict, out: Path) -> list[Path]:
    """PSNR against RIM step, baselines as horizontal lines (the paper's Figure 2, routinely)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    if report["task"] == "cs":
        by_kind: dict[str, list[dict]] = {}
        for run in report["runs"]:
            by_kind.setdefault(run["setting"]["ensemble"], []).append(run)
        for kind, runs in by_kind.items():
            fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.6), squeeze=False)
            for ax, run in zip(axes[0], runs, strict=True):
                _draw_curves(ax, run, band=True)
                ax.set_title(run["label"])
            fig.tight_layout()
            paths.append(_save(fig, out / f"convergence_{kind}.png"))
        return paths
    for run in report["runs"]:
        fig, ax = plt.subplots(figsize=(6, 4))
        _draw_curves(ax, run, band=False)
        ax.set_title(f"{report['benchmark']} {run['label']}")
        fig.tight_layout()
        paths.append(_save(fig, out / f"convergence_{run['label'].replace('=', '')}.png"))
    return paths


def _draw_curves(ax, run: dict, band: bool) -> None:  # noqa: ANN001 - a matplotlib Axes
    colors = iter(["C0", "C1", "C2", "C4", "C5", "C6"])
    for r in run["summary"]:
        if r.get("psnr_steps"):
            t = np.arange(1, len(r["psnr_steps"]) + 1)
            mu = np.array(r["psnr_steps"])
            line = ax.plot(t, mu, marker=".", color=next(colors), label=f"RIM {r['method']}")[0]
            if band and r.get("psnr_steps_std"):
                sd = np.array(r["psnr_steps_std"])
                ax.fill_between(t, mu - sd, mu + sd, color=line.get_color(), alpha=0.12)
            ax.axvline(r["steps"], color=line.get_color(), linestyle=":", linewidth=0.8)
    styles = iter(zip(["C3", "C7", "C8", "C9", "C5", "0.3"], ["--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1)), "--"],
                      strict=True))
    for r in run["summary"]:
        if r["kind"] != "rim" and r["psnr"] is not None and math.isfinite(r["psnr"]):
            color, style = next(styles, ("0.3", "--"))
            ax.axhline(r["psnr"], color=color, linestyle=style, linewidth=1.2, label=_method_name(r))
    ax.set_xlabel("RIM step")
    ax.set_ylabel("PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _save(fig, path: Path) -> Path:  # noqa: ANN001 - a matplotlib Figure
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_outputs(report: dict, out: Path) -> list[Path]:
    """results.json, results.csv, results.md and the convergence plots in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(report, out / "results.json")
    write_csv(report, out / "results.csv")
    write_bytes(out / "results.md", render_markdown(report, level=1) + "\n")
    return [out / "results.json", out / "results.csv", out / "results.md"] + plot_convergence(report, out)
