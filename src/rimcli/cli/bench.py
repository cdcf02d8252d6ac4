"""`rim benchmark` and `rim data` (fetch / path / list). Heavy imports happen inside the commands."""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from ..io import GRAY_LEVELS
from ..tasks import ENSEMBLES, SR_SCALES
from . import app
from .common import OUT_ALIAS_HELP, console, fail, handle_errors, is_stdout, out, output_alias, write_text

data_app = typer.Typer(name="data", help="Benchmark datasets: fetch, register, list.", no_args_is_help=True)
app.add_typer(data_app, name="data")

_RATIO_HELP = "compression ratios m/n, e.g. 1/2,1/4,1/8 (projections)"


def _floats(text: str, what: str) -> list[float]:
    out_ = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "/" in part:
                a, b = part.split("/", 1)
                out_.append(float(a) / float(b))
            else:
                out_.append(float(part))
        except (ValueError, ZeroDivisionError):
            fail(f"bad {what} {part!r}: expected numbers separated by commas")
    if not out_:
        fail(f"no {what} given")
    return out_


def _names(text: str | None, allowed: tuple[str, ...], what: str) -> list[str] | None:
    if text is None:
        return None
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    if names == ["none"]:
        return []
    bad = [n for n in names if n not in allowed]
    if bad:
        fail(f"unknown {what} {bad[0]!r}; choose from {', '.join(allowed)} (or none)")
    return names


def _baseline_names(text: str | None, allowed: tuple[str, ...], what: str, lookup: Callable[[str], Any]) -> list[str]:
    """The baselines asked for, else all of them (bm3d only when installed); each looked up now,
    so a missing bm3d fails before any work."""
    from .. import baselines

    names = _names(text, allowed, what)
    if names is None:
        names = [b for b in allowed if b != "bm3d" or baselines.bm3d_available()]
    for b in names:
        lookup(b)
    return names


def _progress_bar() -> tuple[Any, Callable[[str, int, int], None]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    prog = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console)
    tasks: dict[str, Any] = {}

    def update(desc: str, done: int, total: int) -> None:
        if desc not in tasks:
            tasks[desc] = prog.add_task(desc, total=total)
        prog.update(tasks[desc], completed=done, total=total)

    return prog, update


def _print_summary(report: dict, where: Any) -> None:
    from rich.table import Table

    from ..benchmark_report import summary_table

    for run in report["runs"]:
        header, rows = summary_table(run)
        table = Table(title=f"{report['benchmark']} {run['label']}", title_justify="left")
        for i, h in enumerate(header):
            table.add_column(h, justify="left" if i == 0 else "right")
        for r in rows:
            table.add_row(*r)
        where.print(table)


def _command_line(name: str, opts: dict[str, Any]) -> str:
    """The run as a canonical command (defaults resolved), so the report says how to repeat it."""
    parts = ["rim", "benchmark", name]
    for flag, value in opts.items():
        if value is None or value is False:
            continue
        if value is True:
            parts.append(flag)
        elif isinstance(value, list):
            for v in value:
                parts += [flag, str(v)]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


@app.command("benchmark")
@handle_errors
def benchmark_cmd(
    name: str = typer.Argument(..., help="bsd68, cbsd68, set12 (denoising; deblurring with --blur); set5, set14, b100 "
                               "(super-resolution); projections"),
    sigma: str | None = typer.Option(None, "--sigma", help="noise std(s) on the 0..255 scale, comma list (denoising "
                                     "default 15,25,50; deblurring 2; SR 0; projections 2.55 = 0.01 on [0,1])"),
    scale: str = typer.Option(",".join(map(str, SR_SCALES)), "--scale", help="SR scale factors, comma list"),
    blur: str | None = typer.Option(None, "--blur", help="Gaussian blur std(s) in pixels, comma list: deblurring on a "
                                    "denoising set (bsd68, cbsd68, set12); noise default sigma 2"),
    kernel: str | None = typer.Option(None, "--kernel", help="blur kernel file(s) (image or .npy, odd sides), comma "
                                      "list: deblurring by any blur (motion, defocus); with or without --blur"),
    quantize: bool = typer.Option(False, "--quantize", help="round the noisy input to 8 bits (denoising, deblurring)"),
    data: Path | None = typer.Option(None, "--data", help="dataset folder or a root holding it (else $RIM_DATA, "
                                     "a registered folder, the user data folder)"),
    model: list[str] | None = typer.Option(None, "--model", "-n",
                                           help="bundled model name or .safetensors path; repeat to compare"),
    steps: int | None = typer.Option(None, "--steps", min=1, help="RIM steps for the headline figure (default: the model's)"),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1,
                                         help="convergence curve length (default 2x the training horizon; 50 for projections)"),
    self_ensemble: int = typer.Option(1, "--self-ensemble", help="run each RIM on 2 or 4 mirrored, or 8 mirrored and "
                                      "transposed copies of each input and average (labelled NAME+seN; not for "
                                      "projections)"),
    device: str = typer.Option("auto", "--device", "-g", help="auto, cpu, cuda or cuda:N"),
    precision: str = typer.Option("fp32", "--precision", help="the RIMs' arithmetic, comma list to compare: fp32 "
                                  "(the published figures), bf16 (`rim`'s default on a GPU or a CPU with native "
                                  "bf16; labelled NAME+bf16), fp16 (GPU)"),
    limit: int | None = typer.Option(None, "--limit", min=1, help="first N images only (quick runs)"),
    baselines_opt: str | None = typer.Option(None, "--baselines", help="comma list: bm3d,nlm,tv,wavelet (denoising; "
                                             "default all, bm3d when installed), bm3d,wiener (deblurring), "
                                             "bicubic,pil (SR), or none"),
    out_dir: Path | None = typer.Option(None, "--output", "-o", help="write results.json/.csv/.md and plots here"),
    out_alias: Path | None = typer.Option(None, "--out", hidden=True, help=OUT_ALIAS_HELP),
    json_path: Path | None = typer.Option(None, "--json", help="also write the full JSON report here ('-': stdout)"),
    seed: int = typer.Option(0, "--seed", help="base seed (image i uses seed+i; projections: patches and matrices)"),
    patches: int = typer.Option(5000, "--patches", min=1, help="number of random 32x32 patches (projections)"),
    ensembles: str = typer.Option(",".join(ENSEMBLES), "--ensembles", help="projection ensembles (projections)"),
    ratios: str = typer.Option("1/2,1/4,1/8", "--ratios", help=_RATIO_HELP),
    batch: int = typer.Option(250, "--batch", min=1, help="patches per batch (projections)"),
) -> None:
    """Score RIMs and classical baselines on a standard test set under its published protocol."""
    from .. import benchmark as bm
    from .. import benchmark_report, datasets

    out_dir = output_alias(out_dir, out_alias)
    name = datasets.ALIASES.get(name, name.lower())
    if name not in bm.BENCHMARKS:
        fail(f"unknown benchmark {name!r}; choose from {', '.join(bm.BENCHMARKS)}")
    common = {"--data": data, "--device": device, "--limit": limit, "--seed": seed}
    if (blur is not None or kernel is not None) and name not in bm.DENOISE_SETS:
        fail(f"--blur and --kernel deblur a denoising set ({', '.join(bm.DENOISE_SETS)}), not {name}")
    models = _Models(model or [], steps, max_steps, self_ensemble, tuple(p.strip().lower() for p in precision.split(",")))
    if blur is not None or kernel is not None:
        report = _deblur(name, blur, kernel, sigma, quantize, data, models, device, limit, baselines_opt, seed, common)
    elif name in bm.DENOISE_SETS:
        report = _denoise(name, sigma, quantize, data, models, device, limit, baselines_opt, seed, common)
    elif name in bm.SR_SETS:
        report = _superres(name, sigma, scale, data, models, device, limit, baselines_opt, seed, common)
    else:
        report = _projections(sigma, data, models, device, limit, baselines_opt, seed, patches, ensembles, ratios,
                              batch, common)
    _print_summary(report, console if is_stdout(json_path) else out)  # stdout holds the JSON then
    written = benchmark_report.write_outputs(report, out_dir) if out_dir else []
    if is_stdout(json_path):
        write_text(json_path, benchmark_report.report_json(report))
    elif json_path:
        benchmark_report.write_json(report, json_path)
        written.append(json_path)
    for p in written:
        console.print(f"wrote {p}")


@dataclass
class _Models:
    """The RIMs to score and how: the model flags of `rim benchmark`."""

    names: list[str]
    steps: int | None
    max_steps: int | None
    self_ensemble: int = 1
    precisions: tuple[str, ...] = ("fp32",)

    def load(self, task: str, channels: int, curve_default: int | None = None) -> list:
        from .. import benchmark as bm

        return bm.load_models(self.names, task, channels, self.steps, self.max_steps, curve_default, self.self_ensemble,
                              self.precisions)

    def opts(self, specs: list) -> dict[str, Any]:
        """The flags as the report's command line gives them (names resolved to the models run)."""
        names = [s.name for s in specs if s.precision == self.precisions[0]]  # one per model, not per precision
        return {"--model": names, "--steps": self.steps, "--max-steps": self.max_steps,
                "--self-ensemble": self.self_ensemble if self.self_ensemble > 1 else None,
                "--precision": ",".join(self.precisions) if self.precisions != ("fp32",) else None}


def _run_with_progress(fn: Callable[[Callable[[str, int, int], None]], list[dict]]) -> list[dict]:
    prog, update = _progress_bar()
    with prog:
        return fn(update)


def _denoise(name: str, sigma: str | None, quantize: bool, data: Path | None, models: _Models, device: str,
             limit: int | None, baselines_opt: str | None, seed: int, common: dict) -> dict:
    from .. import baselines, datasets
    from .. import benchmark as bm

    ds = datasets.info(name)
    sigmas = _floats(sigma, "sigma") if sigma else list(bm.DEFAULT_SIGMAS)
    if any(s <= 0 for s in sigmas):
        fail("denoising needs sigma > 0")
    names = _baseline_names(baselines_opt, baselines.DENOISERS, "denoising baseline", baselines.denoiser)
    folder = datasets.locate(name, data)
    specs = models.load("denoise", ds.channels)
    runs = _run_with_progress(lambda cb: bm.run_denoise(name, folder, sigmas, specs, names, seed=seed, quantize=quantize,
                                                        limit=limit, device=device, progress=cb))
    opts = {"--sigma": ",".join(f"{s:g}" for s in sigmas), "--quantize": quantize, **models.opts(specs),
            "--baselines": ",".join(names) or "none", **common}
    return bm.make_report(name, "denoise", runs, specs, names, folder=folder, seed=seed,
                          command=_command_line(name, opts), device=device, extra={"quantize": quantize})


def _deblur(name: str, blur: str | None, kernel: str | None, sigma: str | None, quantize: bool, data: Path | None,
            models: _Models, device: str, limit: int | None, baselines_opt: str | None, seed: int, common: dict) -> dict:
    from .. import baselines, datasets
    from .. import benchmark as bm
    from ..api import MAX_BLUR_SIGMA

    ds = datasets.info(name)
    blurs = _floats(blur, "blur") if blur is not None else []
    if not all(0 < b <= MAX_BLUR_SIGMA for b in blurs):
        fail(f"--blur needs stds > 0 and <= {MAX_BLUR_SIGMA:g} pixels")
    kernels = [Path(k.strip()) for k in (kernel or "").split(",") if k.strip()]
    if kernel is not None and not kernels:
        fail("--kernel needs at least one kernel file")
    if len({k.name for k in kernels}) < len(kernels):
        fail("--kernel files need distinct names: the name labels each result")
    sigmas = _floats(sigma, "sigma") if sigma else [bm.DEFAULT_DEBLUR_SIGMA]
    if not all(0 < s < math.inf for s in sigmas):
        fail("deblurring needs a finite sigma > 0")
    names = _baseline_names(baselines_opt, baselines.DEBLURRERS, "deblurring baseline", baselines.deblurrer)
    folder = datasets.locate(name, data)
    specs = models.load("deblur", ds.channels)
    runs = _run_with_progress(lambda cb: bm.run_deblur(name, folder, blurs, sigmas, specs, names, kernels=kernels,
                                                       seed=seed, quantize=quantize, limit=limit, device=device,
                                                       progress=cb))
    opts = {"--blur": ",".join(f"{b:g}" for b in blurs) or None, "--kernel": ",".join(map(str, kernels)) or None,
            "--sigma": ",".join(f"{s:g}" for s in sigmas),
            "--quantize": quantize, **models.opts(specs), "--baselines": ",".join(names) or "none",
            **common}
    return bm.make_report(name, "deblur", runs, specs, names, folder=folder, seed=seed,
                          command=_command_line(name, opts), device=device,
                          extra={"quantize": quantize, "blur": blurs, "kernel": list(map(str, kernels))})


def _superres(name: str, sigma: str | None, scale: str, data: Path | None, models: _Models, device: str,
              limit: int | None, baselines_opt: str | None, seed: int, common: dict) -> dict:
    from .. import baselines, datasets
    from .. import benchmark as bm

    scales = []
    for s in _floats(scale, "scale"):
        if s not in SR_SCALES:  # the scales inference serves, and the sets' LR files
            fail(f"bad scale {s:g}: use {', '.join(map(str, SR_SCALES))}")
        scales.append(int(s))
    sigmas = _floats(sigma, "sigma") if sigma else [0.0]
    if len(sigmas) != 1 or sigmas[0] < 0:
        fail("super-resolution takes one sigma >= 0 (the RIM's assumed noise on the LR image)")
    names = _names(baselines_opt, baselines.UPSCALERS, "super-resolution baseline")
    names = list(baselines.UPSCALERS) if names is None else names
    folder = datasets.locate(name, data, scales[0])
    for s in scales[1:]:
        datasets.locate(name, folder, s)  # every requested scale must be there
    specs = models.load("superres", 3)
    runs = _run_with_progress(lambda cb: bm.run_sr(name, folder, scales, specs, names, sigma=sigmas[0], limit=limit,
                                                   device=device, progress=cb))
    opts = {"--scale": ",".join(map(str, scales)), "--sigma": f"{sigmas[0]:g}" if sigmas[0] else None,
            **models.opts(specs), "--baselines": ",".join(names) or "none", **common}
    return bm.make_report(name, "superres", runs, specs, names, folder=folder, seed=seed,
                          command=_command_line(name, opts), device=device, extra={"sigma": sigmas[0]})


def _projections(sigma: str | None, data: Path | None, models: _Models, device: str, limit: int | None,
                 baselines_opt: str | None, seed: int, patches: int, ensembles: str, ratios: str, batch: int,
                 common: dict) -> dict:
    from .. import benchmark as bm
    from .. import datasets

    # the pseudo-inverse is the RIM's own start, so it is always reported; `none` is accepted for scripts
    _names(baselines_opt, ("pinv",), "projections baseline (pinv is the only one)")
    sigmas = _floats(sigma, "sigma") if sigma else [bm.DEFAULT_CS_SIGMA * GRAY_LEVELS]
    if len(sigmas) != 1 or sigmas[0] < 0:
        fail("projections take one sigma >= 0")
    sigma01 = sigmas[0] / GRAY_LEVELS
    kinds = _names(ensembles, ENSEMBLES, "ensemble") or fail("no ensemble given")
    rs = _floats(ratios, "ratio")
    if any(not 0 < r <= 1 for r in rs):
        fail("ratios must lie in (0, 1]")
    folder = datasets.locate("bsd68", data)
    specs = models.load("cs", 1, curve_default=bm.CS_MAX_STEPS)
    runs = _run_with_progress(lambda cb: bm.run_projections(folder, specs, ensembles=kinds, ratios=rs, patches=patches,
                                                            sigma01=sigma01, seed=seed, batch=batch, limit=limit,
                                                            device=device, progress=cb))
    opts = {"--sigma": f"{sigmas[0]:g}", "--patches": patches, "--ensembles": ",".join(kinds), "--ratios": ratios,
            "--batch": batch, **models.opts(specs), **common}
    return bm.make_report(bm.PROJECTIONS, "cs", runs, specs, [], folder=folder, seed=seed,
                          command=_command_line(bm.PROJECTIONS, opts), device=device,
                          extra={"sigma": sigma01, "patches": patches, "patch": bm.PATCH})


# ---------------------------------------------------------------- rim data


@data_app.command("list")
@handle_errors
def data_list() -> None:
    """The known sets, where each was found (if anywhere) and its public source."""
    from rich.table import Table

    from .. import datasets

    table = Table(title="benchmark datasets", title_justify="left")
    for col in ("name", "task", "images", "location", "source"):
        table.add_column(col)
    for ds in datasets.DATASETS.values():
        try:
            where = str(datasets.locate(ds.name))
        except datasets.DatasetError:
            where = "[dim]missing[/dim]"
        table.add_row(ds.name, ds.task, str(ds.images), where, ds.source.url)
    out.print(table)


@data_app.command("path")
@handle_errors
def data_path(
    name: str = typer.Argument(..., help="dataset name"),
    folder: Path | None = typer.Argument(None, help="an existing folder holding the set (or a root holding it) to register"),
) -> None:
    """Register an existing folder for a set, or print where the set is found."""
    from .. import datasets

    if folder is None:
        print(datasets.locate(name))
        return
    found = datasets.register(name, folder)
    console.print(f"registered {datasets.info(name).name} at {found}")
    print(found)


@data_app.command("fetch")
@handle_errors
def data_fetch(
    name: str = typer.Argument(..., help="dataset name (see `rim data list`)"),
    url: str | None = typer.Option(None, "--url", help="download from this URL instead of the public source"),
    sha256: str | None = typer.Option(None, "--sha256", help="expected sha256 of the archive (overrides the pinned one)"),
    force: bool = typer.Option(False, "--force", help="replace an earlier fetch"),
) -> None:
    """Download a set from its public source, check its sha256 and unpack it into the user data folder."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    from .. import datasets

    ds = datasets.info(name)
    with Progress(TextColumn(f"fetching {ds.name}"), BarColumn(), DownloadColumn(), console=console,
                  transient=True) as prog:
        task = prog.add_task("download", total=None)
        result = datasets.fetch(ds.name, url=url, sha256=sha256, force=force,
                                progress=lambda done, total: prog.update(task, completed=done, total=total))
    if not result.pinned:
        console.print(f"[yellow]warning:[/yellow] no checksum was pinned for this download; its sha256 is {result.sha256} "
                      "(pass --sha256 to check it on later fetches)")
    console.print(f"{ds.name} ready at {result.folder}")
    print(result.folder)
