"""`rim denoise | superres | deblur | cs | models`: restore image files with the bundled RIMs.

Thin by design: flags are parsed and checked here, files are planned, read and written here
(through `rimcli.io`), and every restoration and score is one call to `rimcli.api`.
Exit codes: 0 all good, 2 bad usage or every input failed, 1 some inputs of a batch failed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from ..api import Options, Outcome, Problem
from ..errors import os_reason
from ..io import EXTENSIONS
from ..tasks import DEFAULT_SIGMA
from . import app
from .common import USER_ERRORS, CLIError, console, fail, handle_errors, is_stdout, one_line, write_text

_IO, _RUN, _EVAL = "Input and output", "Model and device", "Evaluation"
_EXTS = ("auto", *(e.lstrip(".") for e in EXTENSIONS))
#: errors that fail one file of a batch (anything else is a bug and should show its traceback)
_FILE_ERRORS = USER_ERRORS

def _opt(*decls: str, help: str, panel: str | None = None, default_text: str | None = None) -> Any:
    """A Typer option; `default_text` replaces the shown default where the real one is None."""
    if default_text:
        help = f"{help} (default: {default_text})"
    return typer.Option(*decls, help=help, rich_help_panel=panel, show_default=default_text is None)


Inputs = Annotated[list[Path], typer.Argument(help="Image files or folders (PNG, JPEG, TIFF, BMP, WebP).", show_default=False)]
#: the corrupted image a simulation also writes, beside the result: NAME_<tag>.EXT
DEGRADED_TAG = {"denoise": "noisy", "superres": "bicubic", "deblur": "blurred"}
Simulate = Annotated[bool, _opt(
    "--simulate", panel=_EVAL,
    help="Treat the input as clean: corrupt it (seeded), restore, score. The corrupted image is also written beside "
         "the result, as NAME_noisy / NAME_blurred / NAME_bicubic (the low-resolution image upscaled), to compare by eye.")]
Reference = Annotated[
    Path | None,
    _opt("--reference", help="Clean image, or a folder of them matched by name, to score input and output against.",
         panel=_EVAL, default_text="none"),
]
NOISE_HELP = "Measurement-noise std on the 0..255 scale (8-bit gray levels, whatever the bit depth)."

_HELP = {
    "output": "Output file (one input) or folder, created if missing.",
    "suffix": "Added to output names.",
    "ext": "Output format: auto (as the input), png, jpg, tif, bmp, webp. 16-bit needs png or tif.",
    "recursive": "Also take images in subfolders of folder inputs.",
    "overwrite": "Replace existing output files.",
    "json": "Write a machine-readable report to PATH ('-': stdout).",
    "quiet": "Print nothing but errors.",
    "model": "Bundled model name or a .safetensors file.",
    "steps": "RIM iterations.",
    "device": "auto, cpu, cuda or cuda:N.",
    "fp32": "Full precision (the default is bfloat16 on a GPU and on a CPU with native bf16: AVX512-BF16 or AMX).",
    "tile": "Tile size in output pixels, 0 = whole image.",
    "tile_overlap": "Context pixels around each tile.",
    "self_ensemble": "Restore 2 or 4 mirrored copies of the input, or 8 mirrored and transposed, and average "
                     "(EDSR's self-ensemble): that many times slower, usually a little better.",
    "seed": "Seed of the simulated noise and random projections.",
    "save_steps": "Write every step's estimate, an animated GIF and, with a ground truth, a PSNR-per-step plot to DIR/<name>/.",
}

# the flags every restore command shares: (name, annotation, default)
COMMON: list[tuple[str, Any, Any]] = [
    ("output", Annotated[Path | None, _opt("--output", "-o", help=_HELP["output"], panel=_IO, default_text="results/")], None),
    ("suffix", Annotated[str | None, _opt("--suffix", help=_HELP["suffix"], panel=_IO, default_text="e.g. _denoised")], None),
    ("ext", Annotated[str, _opt("--ext", help=_HELP["ext"], panel=_IO)], "auto"),
    ("recursive", Annotated[bool, _opt("--recursive", "-r", help=_HELP["recursive"], panel=_IO)], False),
    ("overwrite", Annotated[bool, _opt("--overwrite", help=_HELP["overwrite"], panel=_IO)], False),
    ("json_path", Annotated[Path | None, _opt("--json", help=_HELP["json"], panel=_IO, default_text="none")], None),
    ("quiet", Annotated[bool, _opt("--quiet", "-q", help=_HELP["quiet"], panel=_IO)], False),
    ("model", Annotated[str | None, _opt("--model", "-n", help=_HELP["model"], panel=_RUN,
                                         default_text="the bundled model for the task and the image's channels")], None),
    ("steps", Annotated[int | None, _opt("--steps", help=_HELP["steps"], panel=_RUN, default_text="the model's")], None),
    ("device", Annotated[str, _opt("--device", help=_HELP["device"], panel=_RUN)], "auto"),
    ("fp32", Annotated[bool, _opt("--fp32", help=_HELP["fp32"], panel=_RUN)], False),
    ("tile", Annotated[int | None, _opt("--tile", "-t", help=_HELP["tile"], panel=_RUN,
                                        default_text="auto: tiles of 512 only where the whole image needs over ~4 GiB")], None),
    ("tile_overlap", Annotated[int | None, _opt("--tile-overlap", help=_HELP["tile_overlap"], panel=_RUN,
                                                default_text="the model's reach over the steps (seamless)")], None),
    ("self_ensemble", Annotated[int, _opt("--self-ensemble", help=_HELP["self_ensemble"], panel=_RUN)], 1),
    ("seed", Annotated[int, _opt("--seed", help=_HELP["seed"], panel=_RUN)], 0),
    ("save_steps", Annotated[Path | None, _opt("--save-steps", help=_HELP["save_steps"], panel=_EVAL, default_text="off")], None),
]


@dataclass
class Common:
    """The shared flags of one restore command."""

    inputs: list[Path]
    output: Path | None
    suffix: str | None
    ext: str
    recursive: bool
    overwrite: bool
    json_path: Path | None
    quiet: bool
    model: str | None
    steps: int | None
    device: str
    fp32: bool
    tile: int | None
    tile_overlap: int | None
    self_ensemble: int
    seed: int
    save_steps: Path | None


def _restore_command(func: Callable[..., None] | None = None, *, without: tuple[str, ...] = ()) -> Any:
    """Give a command the shared flags (Typer reads the signature built here); the command
    receives them bundled as `common=Common(...)`. Flags named in `without` mean nothing for the
    command: they are left out of its help and keep their defaults."""
    if func is None:
        return functools.partial(_restore_command, without=without)
    kw = inspect.Parameter.KEYWORD_ONLY  # keyword-only: required and defaulted may mix in any order
    own = [p.replace(kind=kw) for p in inspect.signature(func, eval_str=True).parameters.values() if p.name != "common"]
    shared = [inspect.Parameter(name, kw, annotation=ann, default=default) for name, ann, default in COMMON
              if name not in without]
    params = [inspect.Parameter("inputs", kw, annotation=Inputs), *own, *shared]

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> None:
        common = Common(kwargs.pop("inputs"), **{n: kwargs.pop(n, default) for n, _, default in COMMON})
        func(common=common, **kwargs)

    wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper


# --------------------------------------------------------------------------- commands


@app.command()
@handle_errors
@_restore_command
def denoise(
    sigma: Annotated[str, _opt("--sigma", help="Noise std on the 0..255 scale, or 'auto' to estimate it per image.")] = (
        f"{DEFAULT_SIGMA['denoise']:g}"),
    simulate: Simulate = False,
    reference: Reference = None,
    *,
    common: Common,
) -> None:
    """Remove white Gaussian noise."""
    problem = Problem("denoise", sigma=_parse_sigma(sigma), simulate=simulate, seed=common.seed)
    _run(problem, common, "_denoised", reference)


@app.command()
@handle_errors
@_restore_command
def superres(
    scale: Annotated[int, typer.Option("--scale", "-s", help="Upscaling factor: 2, 3 or 4.")] = Problem.scale,
    sigma: Annotated[float, typer.Option("--sigma", help=NOISE_HELP)] = DEFAULT_SIGMA["superres"],
    simulate: Simulate = False,
    reference: Reference = None,
    *,
    common: Common,
) -> None:
    """Super-resolve images (the low-resolution image is modelled as MATLAB bicubic downsampling)."""
    problem = Problem("superres", sigma=sigma, scale=scale, simulate=simulate, seed=common.seed)
    _run(problem, common, f"_x{scale}", reference)


@app.command()
@handle_errors
@_restore_command
def deblur(
    kernel: Annotated[Path | None, _opt("--kernel", help="Blur kernel image or .npy (odd sides), normalised to sum 1.")] = None,
    blur_sigma: Annotated[float | None, _opt("--blur-sigma", help="Or a Gaussian blur of this std in pixels.")] = None,
    sigma: Annotated[float, typer.Option("--sigma", help=NOISE_HELP)] = DEFAULT_SIGMA["deblur"],
    simulate: Simulate = False,
    reference: Reference = None,
    *,
    common: Common,
) -> None:
    """Remove a known blur (a kernel file or a Gaussian)."""
    if kernel is not None and blur_sigma is not None:
        fail("give either --kernel or --blur-sigma, not both")
    if kernel is None and blur_sigma is None:
        fail("deblur needs --kernel FILE or --blur-sigma S")
    problem = Problem("deblur", sigma=sigma, blur_sigma=blur_sigma, kernel=kernel, simulate=simulate, seed=common.seed)
    _run(problem, common, "_deblurred", reference)


@app.command()
@handle_errors
@_restore_command(without=("self_ensemble",))  # not in SELF_ENSEMBLE_TASKS: a projection has no symmetry
def cs(
    ensemble: Annotated[str, typer.Option("--ensemble", help="Projections: gaussian, binary or fourier.")] = Problem.ensemble,
    ratio: Annotated[float, typer.Option("--ratio", help="Measurements per pixel of a 32x32 block, in (0, 1].")] = Problem.ratio,
    sigma: Annotated[float, typer.Option("--sigma", help=NOISE_HELP)] = DEFAULT_SIGMA["cs"],
    *,
    common: Common,
) -> None:
    """Compressed sensing, simulated as in the paper (random projections of 32x32 blocks).

    Each image is padded to whole blocks, projected with a seeded random matrix, reconstructed
    and cropped back; PSNR/SSIM of the pseudo-inverse start and of the result are reported."""
    problem = Problem("cs", sigma=sigma, ensemble=ensemble.lower(), ratio=ratio, seed=common.seed)
    _run(problem, common, "_cs", None)


# --------------------------------------------------------------------------- checks and planning


def _parse_sigma(text: str) -> float | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        fail(f"--sigma must be a number >= 0 or 'auto', got {text!r}")


def _parse_ext(ext: str) -> str:
    e = ext.lower().lstrip(".")
    if e not in _EXTS:
        fail(f"unsupported --ext {ext!r}; choose from {', '.join(_EXTS)}")
    return e


@dataclass
class Job:
    """One input file and where its result goes."""

    src: Path
    rel: Path  # its path inside the folder it came from (just the name for file inputs)
    dst: Path | None = None
    degraded: Path | None = None  # where a simulation writes the corrupted input
    error: str | None = None


def _has_files(folder: Path) -> bool:
    try:
        return folder.is_dir() and any(folder.iterdir())
    except OSError as e:
        raise CLIError(f"{folder}: cannot read this folder ({os_reason(e)})") from None


def _images_in(folder: Path, recursive: bool, skip: list[Path]) -> list[Path]:
    try:
        return _list_images(folder, recursive, skip)
    except OSError as e:  # an unreadable folder the user named
        raise CLIError(f"{folder}: cannot list this folder ({os_reason(e)})") from None


def _list_images(folder: Path, recursive: bool, skip: list[Path]) -> list[Path]:
    found = []
    for f in folder.rglob("*") if recursive else folder.iterdir():
        rel = f.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or f.suffix.lower() not in EXTENSIONS or not f.is_file():
            continue  # hidden files include our own half-written temp files
        if any(f.resolve().is_relative_to(s) for s in skip):
            continue  # never feed a previous run's results back in
        found.append(f)
    return sorted(found)


def _collect(inputs: list[Path], recursive: bool, skip: list[Path]) -> list[Job]:
    jobs: list[Job] = []
    skip = [s.resolve() for s in skip]
    for item in inputs:
        if not item.is_dir():
            jobs.append(Job(item, Path(item.name)))  # a missing file fails later, on its own
            continue
        found = _images_in(item, recursive, skip)
        if not found:
            hint = "" if recursive else " (use --recursive for subfolders)"
            jobs.append(Job(item, Path(item.name), error=f"{item}: no images in this folder{hint}"))
        jobs += [Job(f, f.relative_to(item)) for f in found]
    return jobs


def _is_file_output(output: Path | None) -> bool:
    from ..io import looks_like_image_file

    return output is not None and looks_like_image_file(output) and not output.is_dir()


def _check_folders(c: Common, folder: Path | None) -> None:
    """An input folder that is (or lies inside) the output or --save-steps folder has no inputs:
    their images are never read, so as not to feed results back in."""
    for item in (i for i in c.inputs if i.is_dir()):
        for target, flag in ((folder, "--output"), (c.save_steps, "--save-steps")):
            if target is None or not item.resolve().is_relative_to(target.resolve()):
                continue
            where = "is also the" if item.resolve() == target.resolve() else "is inside the"
            fail(f"input folder {item} {where} {flag} folder {target} (whose images are never inputs); choose another {flag}")


def _out_ext(src: Path, ext: str) -> str:
    if ext != "auto":
        return "." + ext
    return src.suffix if src.suffix.lower() in EXTENSIONS else ".png"


def _plan(c: Common, suffix: str, ext: str, degraded_tag: str | None = None) -> list[Job]:
    """Inputs and their destinations: `-o FILE` for one input, else `<folder>/<rel><suffix><ext>`;
    with `degraded_tag`, the corrupted input goes beside each as `<stem>_<tag><ext>`."""
    from ..io import format_of

    file_out = _is_file_output(c.output)
    if file_out and format_of(c.output) is None:
        fail(f"--output {c.output}: cannot write {c.output.suffix} images; use .png, .jpg, .tif, .bmp or .webp")
    folder = None if file_out else (c.output or Path("results"))
    _check_folders(c, folder)
    skip = [p for p in (folder, c.save_steps) if p is not None]
    jobs = _collect(c.inputs, c.recursive, skip)
    if not jobs:
        fail("no input images given")
    if file_out:
        if len(jobs) != 1 or c.inputs[0].is_dir():
            fail(f"--output {c.output} is a file but there are several inputs; give a folder")
        jobs[0].dst = c.output
    seen: dict[Path, Path] = {}
    for job in jobs:
        if job.error:
            continue
        if not file_out:
            job.dst = folder / job.rel.parent / f"{job.rel.stem}{suffix}{_out_ext(job.src, ext)}"
        if degraded_tag:
            job.degraded = job.dst.with_name(f"{job.src.stem}_{degraded_tag}{job.dst.suffix}")
        for target in (t for t in (job.dst, job.degraded) if t is not None):
            key = target.resolve()
            if key in seen:
                other = "its own result" if seen[key] == job.src else f"the output of {seen[key]}"
                job.error = f"{job.src}: its output {target} is also {other}; choose another --output or --suffix"
                break
            seen[key] = job.src
    _refuse_replacing_inputs(jobs, file_out)
    return jobs


def _file_ids(path: Path) -> set[Any]:
    """What identifies a file: its resolved path and, if it exists, its inode (which also
    catches hard links and case-insensitive file systems)."""
    ids: set[Any] = {path.resolve()}
    with contextlib.suppress(OSError):
        st = path.stat()
        ids.add((st.st_dev, st.st_ino))
    return ids


def _refuse_replacing_inputs(jobs: list[Job], file_out: bool) -> None:
    """An output that is an input would destroy it (--overwrite or not): a usage error."""
    inputs = set().union(*(_file_ids(j.src) for j in jobs if not j.error))
    for job in (j for j in jobs if not j.error):
        for dst in (d for d in (job.dst, job.degraded) if d is not None and _file_ids(d) & inputs):
            which = "its own input" if _file_ids(dst) & _file_ids(job.src) else "another input"
            fail(f"{job.src}: output {dst} would replace {which}; choose another --output{'' if file_out else ' or --suffix'}")


def _check_writable(target: Path, what: str) -> None:
    """Fail early (exit 2) when `target` (a folder, existing or not) cannot be written."""
    p = target.absolute()
    while not p.exists():
        p = p.parent
    if not p.is_dir():
        fail(f"{what} {target}: {p} is not a folder")
    if not os.access(p, os.W_OK | os.X_OK):
        fail(f"{what} {target}: no permission to write in {p}")


def _preflight(problem: Problem, options: Options, c: Common, reference: Path | None) -> None:
    """Every check that can fail before any file is touched: each is a usage error (exit 2)."""
    from ..api import load_model
    from ..inference import ensemble_operators, resolve_device

    problem.check()
    op = problem.operator()  # builds it once: a bad kernel file is a usage error, found before any work
    options.check()
    ensemble_operators(op, options.self_ensemble)
    resolve_device(c.device)
    if reference is not None and problem.simulate:
        fail("--reference and --simulate exclude each other (a simulation is its own reference)")
    if c.model is not None:
        loaded = load_model(c.model)  # once per run: api caches it
        if loaded.tasks and problem.task not in loaded.tasks and not c.quiet:
            _say(f"warning: model {loaded.name} was trained for {', '.join(loaded.tasks)}, not {problem.task}")


# --------------------------------------------------------------------------- the batch


def _run(problem: Problem, c: Common, default_suffix: str, reference: Path | None) -> None:
    options = Options(
        steps=c.steps,
        device=c.device,
        precision="fp32" if c.fp32 else "auto",
        tile=c.tile,
        tile_overlap=c.tile_overlap,
        return_steps=c.save_steps is not None,
        self_ensemble=c.self_ensemble,
    )
    ext = _parse_ext(c.ext)
    _preflight(problem, options, c, reference)
    degraded_tag = DEGRADED_TAG.get(problem.task) if problem.simulate else None
    jobs = _plan(c, default_suffix if c.suffix is None else c.suffix, ext, degraded_tag)
    if reference is not None and reference.is_file() and len(jobs) > 1:
        fail("--reference FILE needs a single input; give a folder of references to match by name")
    for target, what in ((_out_folder(c), "output folder"), (c.save_steps, "--save-steps folder")):
        if target is not None:
            _check_writable(target, what)
    if c.json_path is not None and not is_stdout(c.json_path):
        _check_writable(c.json_path.parent, "--json folder")
    t0 = time.perf_counter()
    with _Progress(len(jobs), enabled=not c.quiet) as progress:
        records = [_process(job, problem, options, c, reference, progress) for job in jobs]
    failed = sum(r["error"] is not None for r in records)
    code = 0 if not failed else 2 if failed == len(records) else 1
    if c.json_path is not None:
        write_text(c.json_path, json.dumps(_report(problem, options, records, code, time.perf_counter() - t0), indent=2) + "\n")
    if not c.quiet and (len(records) > 1 or not failed):  # a lone failure is its error line alone
        _summary(records, problem)
    if code:
        raise typer.Exit(code)


def _out_folder(c: Common) -> Path | None:
    if _is_file_output(c.output):
        return c.output.parent
    return c.output or Path("results")


def _process(job: Job, problem: Problem, options: Options, c: Common, reference: Path | None, progress: _Progress) -> dict:
    """Restore one file; any expected failure becomes the record's `error` (and one stderr line)."""
    from ..api import check_reference, evaluate, output_shape, run
    from ..io import check_encodable, read_image, write_image

    rec: dict[str, Any] = {"input": str(job.src), "output": None, "error": None}
    t0 = time.perf_counter()
    progress.start_file(job.src.name)
    try:
        if job.error:
            raise CLIError(job.error)
        for dst in (d for d in (job.dst, job.degraded) if d is not None):
            if dst.exists() and not c.overwrite:  # before the work, not after it
                raise CLIError(f"{job.src}: output {dst} exists (use --overwrite to replace it)")
        pic = read_image(job.src)
        for note in [] if c.quiet else pic.notes:
            _say(f"{job.src}: {note}")
        rec.update(size=list(pic.size), channels=pic.channels, bit_depth=pic.bits, alpha=pic.alpha is not None)
        # all that would fail after the work is checked before it: a failure then costs nothing
        check_encodable(job.dst, pic.array)  # the result has the input's bit depth and alpha
        ref = _reference_for(job, reference)
        if ref is not None:
            check_reference(ref, output_shape(pic.array, problem))
        steps_dir = _steps_dir(c.save_steps, job) if c.save_steps is not None else None
        if steps_dir is not None and not c.overwrite and _has_files(steps_dir):
            raise CLIError(f"{job.src}: --save-steps folder {steps_dir} is not empty (use --overwrite to replace its files)")
        outcome = run(pic.array, problem, c.model, dataclasses.replace(options, on_tile=progress.on_tile))
        if outcome.sigma_estimated and not c.quiet:
            _say(f"{job.src}: estimated noise sigma {outcome.sigma:.2f} (0..255 scale)")
        metrics = evaluate(outcome, ref)
        write_image(job.dst, outcome.image, icc=pic.icc, overwrite=c.overwrite)
        rec.update(_outcome_fields(outcome, metrics, job.dst))
        if job.degraded is not None:  # checked like the result: same format, depth and alpha
            write_image(job.degraded, outcome.degraded, icc=pic.icc, overwrite=c.overwrite)
            rec["simulated_input"] = str(job.degraded)
        if steps_dir is not None:
            rec["steps_dir"] = str(_save_steps(steps_dir, job, outcome, metrics, c.overwrite))
    except _FILE_ERRORS as e:
        rec["error"] = _one_line(e, job.src)
        _say(f"error: {rec['error']}")
    rec["time_s"] = round(time.perf_counter() - t0, 3)
    progress.end_file()
    return rec


def _outcome_fields(outcome: Outcome, metrics: dict | None, dst: Path) -> dict[str, Any]:
    h, w = outcome.image.shape[:2]
    return {
        "output": str(dst),
        "output_size": [w, h],
        "model": outcome.model,
        "steps": outcome.n_steps,
        "sigma": outcome.sigma,
        "sigma_estimated": outcome.sigma_estimated,
        "tile": outcome.tile,
        "precision": outcome.precision,
        "metrics": metrics,
    }


def _reference_for(job: Job, reference: Path | None) -> Any:
    """The reference's colour channels: the file itself, or the same-named file in a folder."""
    import glob

    from ..io import read_image

    if reference is None:
        return None
    path = reference
    if reference.is_dir():
        folder = reference / job.rel.parent
        hits = sorted(p for p in folder.glob(glob.escape(job.rel.stem) + ".*") if p.suffix.lower() in EXTENSIONS)
        if not hits:
            raise CLIError(f"{job.src}: no reference named {job.rel.stem}.* in {folder}")
        path = hits[0]
    return read_image(path).data


def _steps_dir(root: Path, job: Job) -> Path:
    return root / job.rel.parent / job.rel.stem


def _save_steps(folder: Path, job: Job, outcome: Outcome, metrics: dict | None, overwrite: bool) -> Path:
    """DIR/<name>/step_XX.png (step 0 = the degraded input), steps.gif and psnr_vs_step.png."""
    import numpy as np

    from ..io import encode_gif, encode_psnr_plot, from_float, write_bytes, write_image

    frames = [outcome.start, *(outcome.steps or [])]
    dtype = outcome.dtype if outcome.dtype in (np.uint8, np.uint16) else np.uint8
    for t, frame in enumerate(frames):
        write_image(folder / f"step_{t:02d}.png", from_float(frame, dtype), overwrite=overwrite)
    write_bytes(folder / "steps.gif", encode_gif(frames), overwrite=overwrite)
    if metrics and metrics.get("psnr_per_step"):
        plot = encode_psnr_plot(metrics["psnr_per_step"], f"{job.src.name}: {outcome.problem.task}, {outcome.model}")
        write_bytes(folder / "psnr_vs_step.png", plot, overwrite=overwrite)
    return folder


# --------------------------------------------------------------------------- output


def _say(message: str) -> None:
    """One line on stderr, never wrapped or styled (so errors stay one line)."""
    console.print(message, markup=False, highlight=False, emoji=False, soft_wrap=True)


def _one_line(e: Exception, src: Path) -> str:
    msg = one_line(e)
    return msg if str(src) in msg else f"{src}: {msg}"


class _Progress:
    """Transient rich bars on stderr: the files, and the tiles of the current file when tiled."""

    def __init__(self, total: int, enabled: bool):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=True, disable=not enabled,
        )
        self.files = self.bar.add_task("files", total=total)
        self.tiles = self.bar.add_task("  passes", total=1, visible=False)  # tiles x self-ensemble

    def __enter__(self) -> _Progress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def start_file(self, name: str) -> None:
        self.bar.update(self.files, description=name)
        self.bar.reset(self.tiles, total=1, visible=False)  # also restarts its clock

    def on_tile(self, done: int, total: int) -> None:
        if total > 1:
            self.bar.update(self.tiles, completed=done, total=total, visible=True)

    def end_file(self) -> None:
        self.bar.advance(self.files)


def _fmt_pair(m: dict | None, key: str, digits: int) -> str:
    if not m:
        return ""
    a, b = m["input"].get(key), m["output"].get(key)
    if a is None or b is None:
        return ""
    return f"{a:.{digits}f}\n{b:.{digits}f}"  # the input's figure on its line, the output's on the next


def _num(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


def _summary(records: list[dict], problem: Problem) -> None:
    """A table that fits 80 columns: what all files share goes in the title; each file's cell
    holds its name over its output's (no_wrap: names are never broken, other cells wrap)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    done = [r for r in records if r["error"] is None]
    try:
        folder = Path(os.path.commonpath([Path(r["output"]).parent for r in done])) if done else None
    except ValueError:  # e.g. on different drives
        folder = None
    shared = {k: {r[k] for r in done} for k in ("steps", "sigma")}
    title = []
    if len(shared["steps"]) == 1:
        steps = next(iter(shared["steps"]))
        title.append(f"{steps} step{'s' if steps != 1 else ''}")
    if len(shared["sigma"]) == 1:
        title.append(f"sigma {_num(next(iter(shared['sigma'])))}")
    if folder is not None:
        title.append(f"output in {folder}{os.sep}")
    corrupted = [Path(r["simulated_input"]).name for r in done if r.get("simulated_input")]
    if corrupted:
        title.append(f"corrupted input {corrupted[0]}" if len(corrupted) == 1 else
                     f"corrupted inputs as NAME_{DEGRADED_TAG[problem.task]}")
    table = Table(title=f"rim {problem.task}" + (": " + ", ".join(title) if title else ""), title_justify="left",
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, show_lines=True)
    # each row: the input and its figures on one line, the output and its figures on the next;
    # a name too long for the terminal folds, the figures never wrap
    table.add_column("file / output", overflow="fold", ratio=1)
    cols = ["size", *(k for k in ("steps", "sigma") if len(shared[k]) > 1), "time"]
    scored = any(r.get("metrics") for r in records)
    cols += ["PSNR", "SSIM"] if scored else []
    for name in cols:
        table.add_column(name, justify="right", no_wrap=True)
    for r in records:
        size = "x".join(map(str, r.get("size") or [])) or "-"
        if r.get("output_size") and r["output_size"] != r.get("size"):
            size += "\n" + "x".join(map(str, r["output_size"]))  # on the output's line
        if r["output"]:
            shown = Path(r["output"]).relative_to(folder) if folder else r["output"]
            name = Text.assemble(Path(r["input"]).name, "\n", (str(shown), "dim"))
        else:
            name = Text.assemble(Path(r["input"]).name, "\n", ("failed", "red"))
        cells = {"size": size, "steps": str(r.get("steps", "")), "sigma": _num(r["sigma"]) if "sigma" in r else "",
                 "time": f"{r['time_s']:.2f}s", "PSNR": _fmt_pair(r.get("metrics"), "psnr", 2),
                 "SSIM": _fmt_pair(r.get("metrics"), "ssim", 3)}
        table.add_row(name, *(cells[c] for c in cols))
    console.print(table)


def _finite(obj: Any) -> Any:
    """JSON has no inf/nan (an identical image has infinite PSNR): write null instead."""
    if isinstance(obj, float):
        return obj if obj == obj and abs(obj) != float("inf") else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def _report(problem: Problem, options: Options, records: list[dict], code: int, seconds: float) -> dict:
    from .. import __version__
    from ..inference import precision_name, resolve_device, resolve_precision

    device = resolve_device(options.device)
    amp = resolve_precision(options.precision, device)
    return _finite({
        "rimcli": __version__,
        "command": problem.task,
        "problem": problem.describe(),
        "device": str(device),
        "precision": precision_name(amp),  # asked for; each file's record says what ran
        "tile": options.tile,
        "tile_overlap": options.tile_overlap,
        "self_ensemble": options.self_ensemble,
        "files": records,
        "ok": sum(r["error"] is None for r in records),
        "failed": sum(r["error"] is not None for r in records),
        "exit_code": code,
        "time_s": round(seconds, 3),
    })
