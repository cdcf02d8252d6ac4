"""Training: unrolled RIM, loss summed over all steps, fresh corruption every batch.

Reproducible and resumable: the data/noise generator, the model, the optimiser and the
schedule are all in the checkpoint, so `--resume` continues the same run bit for bit.
Data-parallel under `torchrun` (DDP; NCCL on GPUs, gloo on CPU).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .errors import os_reason
from .inference import AUTOCAST_DTYPES, precision_name, resolve_device, resolve_precision, unroll
from .io import EXTENSIONS, GRAY_LEVELS, read_image, to_float, write_bytes
from .metrics import psnr_batch, sr_psnr
from .model import RIM, transfer_weights
from .operators import LinearOperator, _bcast
from .runtime import cpu_compiler, tune_allocator
from .tasks import (
    DENOISE_TEST_SIGMAS,
    STORED_AS_8BIT,
    as_8bit,
    crop_multiple,
    cs_operator,
    deblur_operator,
    denoise_operator,
    random_blur_operator,
    stored_measurement,
    superres_operator,
)
from .train_config import DEFAULT_SIGMA, LOW_SIGMA, TrainConfig, TrainError  # noqa: F401 - their old home

#: settings a resumed run may change without altering the data stream or the update rule
RESUMABLE_CHANGES = {"iters", "device", "val_every", "log_every", "out", "data", "val", "channels_last", "compile",
                     "init_from"}  # init_from is read only when a run starts


# ---------------------------------------------------------------- data


def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise TrainError(f"data folder {folder} does not exist")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS)
    if not files:
        raise TrainError(f"no images found in {folder}")
    return files


#: ITU-R 601 luma weights in 1/65536: integer arithmetic gives PIL's 'L' exactly on 8-bit images
_LUMA = np.array([19595, 38470, 7471], dtype=np.uint32)


def load_images(files: list[Path], channels: int) -> list[torch.Tensor]:
    """Decode once into memory as (C, H, W) tensors with `io.read_image`, as every other reader
    does: 8-bit images as uint8, 16-bit and float ones as float32 in [0, 1] (4x the memory, but
    their precision kept). Alpha is dropped; gray is ITU-R 601 luma; gray repeats into RGB."""
    return [torch.from_numpy(_planes(read_image(f).data, channels)) for f in files]


def _planes(a: np.ndarray, channels: int) -> np.ndarray:
    """HxW or HxWx3 -> writable (channels, H, W): uint8 kept, other types as float32 in [0, 1]."""
    if channels == 1 and a.ndim == 3:
        a = _gray(a)
    if a.dtype != np.uint8:
        a = to_float(a)
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    if a.shape[0] < channels:
        a = np.repeat(a, channels, axis=0)
    return np.require(a, requirements=["C", "W"])  # Pillow's arrays are read-only; torch wants writable


def _gray(a: np.ndarray) -> np.ndarray:
    """Luma of HxWx3: uint8 in integer arithmetic (what training always used), else float32 in [0, 1]."""
    if a.dtype == np.uint8:
        return ((a.astype(np.uint32) @ _LUMA + 0x8000) >> 16).astype(np.uint8)
    return to_float(a) @ (_LUMA / 65536.0).astype(np.float32)


def _unit(t: torch.Tensor) -> torch.Tensor:
    """A stored image or crop as float32 in [0, 1] (uint8 ones scaled, float ones as they are)."""
    return t.float().div_(GRAY_LEVELS) if t.dtype == torch.uint8 else t.float()


class PatchSampler:
    """Random crops with flips and 90-degree rotations, drawn from one seeded generator."""

    def __init__(self, images: list[torch.Tensor], patch: int, generator: torch.Generator):
        small = [i for i, im in enumerate(images) if min(im.shape[-2:]) < patch]
        if small:
            raise TrainError(f"{len(small)} training image(s) are smaller than the {patch}px patch; use a smaller --patch")
        self.images, self.patch, self.g = images, patch, generator

    def _randint(self, hi: int) -> int:
        return int(torch.randint(hi, (1,), generator=self.g))

    def batch(self, n: int) -> torch.Tensor:
        p = self.patch
        out = []
        for _ in range(n):
            im = self.images[self._randint(len(self.images))]
            top = self._randint(im.shape[-2] - p + 1)
            left = self._randint(im.shape[-1] - p + 1)
            crop = im[:, top : top + p, left : left + p]
            if self._randint(2):
                crop = crop.flip(-1)
            crop = torch.rot90(crop, self._randint(4), dims=(-2, -1))
            out.append(crop)
        return torch.stack([_unit(c) for c in out])


def _uniform(lo: float, hi: float, n: int, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def sample_operator(cfg: TrainConfig, task: str, n: int, g: torch.Generator) -> LinearOperator:
    """A fresh forward operator for one batch: scale, blur, ensemble and matrices drawn from g
    (in this order, which the data stream depends on), the operator built by `tasks`."""
    if task == "denoise":
        return denoise_operator()
    if task == "superres":
        return superres_operator(cfg.scales[int(torch.randint(len(cfg.scales), (1,), generator=g))])
    if task == "deblur":
        # the family is drawn only from a list of several, so Gaussian-only runs keep their stream
        kinds = cfg.blur_kinds
        kind = kinds[int(torch.randint(len(kinds), (1,), generator=g))] if len(kinds) > 1 else kinds[0]
        lo, hi = cfg.blur_range
        width = float(_uniform(lo, hi, 1, g))
        return random_blur_operator(kind, width, hi, g)
    kind = cfg.ensembles[int(torch.randint(len(cfg.ensembles), (1,), generator=g))]
    ratio = cfg.ratios[int(torch.randint(len(cfg.ratios), (1,), generator=g))]
    return cs_operator(kind, ratio, int(torch.randint(2**62, (1,), generator=g)), batch=n)


def corrupt(
    cfg: TrainConfig, task: str, x: torch.Tensor, g: torch.Generator
) -> tuple[LinearOperator, torch.Tensor, torch.Tensor]:
    """Draw an operator and per-sample noise levels, and simulate y = A x + n."""
    op = sample_operator(cfg, task, x.shape[0], g)
    lo, hi = cfg.sigma_for(task)
    sigma = _uniform(lo, hi, x.shape[0], g)
    if cfg.low_sigma > 0:  # drawn every batch even where unused, so the stream is the same for any fraction
        low = torch.rand(x.shape[0], generator=g) < cfg.low_sigma
        sigma = torch.where(low, _uniform(0.0, min(LOW_SIGMA, hi), x.shape[0], g), sigma)
    sigma = sigma / GRAY_LEVELS
    y = stored_measurement(task, op.measure(x, sigma, g))  # LR images come as 8-bit files
    # drawn only then, so runs without it keep their stream (deblur runs drew none before 2026-11-24)
    if task in STORED_AS_8BIT and cfg.clip_fraction > 0:
        as_file = (torch.rand(x.shape[0], generator=g) < cfg.clip_fraction).to(y.device)
        y = torch.where(_bcast(as_file, y.ndim), as_8bit(y), y)
    return op, y, sigma


# ---------------------------------------------------------------- model / loss


class Unrolled(nn.Module):
    """The whole T-step loop as one module, so DDP sees one forward per iteration."""

    def __init__(self, rim: RIM):
        super().__init__()
        self.rim = rim

    def forward(self, y: torch.Tensor, op: LinearOperator, sigma: torch.Tensor, steps: int,
                autocast: torch.dtype | None = None, checkpoint: bool = False) -> torch.Tensor:
        return torch.stack(unroll(self.rim, y, op, sigma, steps, autocast=autocast, checkpoint=checkpoint))


def step_weights(kind: str, steps: int) -> torch.Tensor:
    w = torch.ones(steps) if kind == "equal" else torch.arange(1, steps + 1, dtype=torch.float32)
    return w / w.mean()  # mean 1: the loss stays on the scale of one step's MSE


def unrolled_loss(xs: torch.Tensor, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_t w_t MSE(x_t, x) / T, with xs of shape (T, B, C, H, W)."""
    mse = ((xs - x.unsqueeze(0)) ** 2).flatten(1).mean(1)
    return (weights.to(mse) * mse).mean()


def lr_factor(cfg: TrainConfig, it: int) -> float:
    if it < cfg.warmup:
        return (it + 1) / cfg.warmup
    if cfg.schedule == "constant":
        return 1.0
    progress = (it - cfg.warmup) / max(1, cfg.iters - cfg.warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


# ---------------------------------------------------------------- validation


def validation_set(cfg: TrainConfig) -> list[tuple[str, dict]]:
    """Fixed evaluation settings per task: (label, settings)."""
    sets = []
    for task in dict.fromkeys(cfg.tasks()):  # a task named twice weighs the mix, not the validation
        if task == "denoise":
            sets += [(f"denoise_s{s:g}", {"task": task, "sigma": s}) for s in DENOISE_TEST_SIGMAS]
            if cfg.clip_fraction > 0:  # a run that trains on 8-bit files is picked on them too
                sets += [(f"denoise_s{s:g}_8bit", {"task": task, "sigma": s, "as_8bit": True})
                         for s in DENOISE_TEST_SIGMAS]
        elif task == "superres":
            sets += [(f"sr_x{s}", {"task": task, "scale": s}) for s in cfg.scales]
        elif task == "deblur":
            sets += [(f"deblur_b{b}", {"task": task, "blur": b, "sigma": 2.0}) for b in (1.0, 2.0)]
            if cfg.clip_fraction > 0:
                sets += [(f"deblur_b{b}_8bit", {"task": task, "blur": b, "sigma": 2.0, "as_8bit": True}) for b in (1.0, 2.0)]
            # one fixed kernel per other family trained on, 8-bit where the run trains on files
            sets += [(f"deblur_{k}", {"task": task, "blur": 2.0, "kind": k, "widest": max(cfg.blur_range), "sigma": 2.0,
                                      "as_8bit": cfg.clip_fraction > 0}) for k in cfg.blur_kinds if k != "gaussian"]
        else:
            r = sorted(cfg.ratios)[len(cfg.ratios) // 2]
            sets += [(f"cs_{e}_r{r:g}", {"task": task, "ensemble": e, "ratio": r, "sigma": 10.0}) for e in cfg.ensembles]
    return sets


def _crop_multiple(cfg: TrainConfig) -> int:
    """Crops must tile exactly into LR pixels (superres) and blocks (cs)."""
    return crop_multiple(cfg.tasks(), cfg.scales)


def validation_crops(cfg: TrainConfig, files: list[Path] | None = None) -> torch.Tensor:
    """The crops a run validates on: centred crops of its held-out images (default `held_out(cfg)`)."""
    images = load_images((held_out(cfg) if files is None else files)[: cfg.val_images], cfg.channels)
    c = cfg.val_crop - cfg.val_crop % _crop_multiple(cfg)
    if c < 1:
        raise TrainError(f"val_crop must be at least {_crop_multiple(cfg)} for these tasks")
    crops = []
    for im in images:
        h, w = im.shape[-2:]
        if min(h, w) < c:
            raise TrainError(f"validation images must be at least {c}px on each side")
        top, left = (h - c) // 2, (w - c) // 2
        crops.append(im[:, top : top + c, left : left + c])
    return torch.stack([_unit(c) for c in crops])


def _val_operator(s: dict, n: int) -> tuple[LinearOperator, float]:
    task = s["task"]
    if task == "denoise":
        return denoise_operator(), s["sigma"]
    if task == "superres":
        return superres_operator(s["scale"]), 0.0
    if task == "deblur" and s.get("kind", "gaussian") != "gaussian":
        return random_blur_operator(s["kind"], s["blur"], s["widest"], torch.Generator().manual_seed(99)), s["sigma"]
    if task == "deblur":
        return deblur_operator(s["blur"]), s["sigma"]
    return cs_operator(s["ensemble"], s["ratio"], 1234, batch=n), s["sigma"]


@torch.no_grad()
def validate(model: RIM, cfg: TrainConfig, x: torch.Tensor, device: torch.device) -> dict[str, list[float]]:
    """PSNR of 8-bit-rounded outputs at every step for each validation setting (`val_psnr`)."""
    model.eval()
    out = {}
    for label, s in validation_set(cfg):
        op, sigma = _val_operator(s, x.shape[0])
        g = torch.Generator().manual_seed(4321)
        y = op.measure(x, sigma / GRAY_LEVELS, g)
        y = as_8bit(y) if s.get("as_8bit") else stored_measurement(s["task"], y)
        xs = unroll(model, y.to(device), op.to(device), sigma / GRAY_LEVELS, 2 * cfg.steps)
        out[label] = [val_psnr(s, xt, x) for xt in xs]
    model.train()
    return out


def val_psnr(setting: dict, x_hat: torch.Tensor, x: torch.Tensor) -> float:
    """Mean PSNR over a batch of the output rounded to 8 bits: peak 1 on all channels, and for
    super-resolution the benchmark's protocol (`metrics.sr_psnr`: Y, `scale` pixels shaved), so that
    the checkpoint and steps picked on validation are picked by what the benchmark scores."""
    out = torch.round(x_hat.float() * GRAY_LEVELS)
    if setting["task"] != "superres":  # on the device, as before
        return float(psnr_batch(out / GRAY_LEVELS, x.to(out.device), peak=1.0, min_mse=1e-12).mean())
    pairs = zip(_hwc(out.cpu()), _hwc(x.cpu() * GRAY_LEVELS), strict=True)
    return float(np.mean([sr_psnr(a, b, setting["scale"]) for a, b in pairs]))


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(0, 2, 3, 1).double().numpy()


def val_score(curves: dict[str, list[float]], steps: int) -> float:
    """Mean PSNR over settings at the training horizon (what checkpoint selection uses)."""
    return float(np.mean([c[steps - 1] for c in curves.values()]))


# ---------------------------------------------------------------- checkpoints


def _atomic_save(obj: Any, path: Path) -> None:
    """A checkpoint, serialised in memory and written with the one atomic writer."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise TrainError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)  # no arbitrary pickle
    except OSError as e:
        raise TrainError(f"checkpoint {path} cannot be read ({os_reason(e)})") from None


def init_file(init_from: str) -> Path:
    """The file `init_from` names: a run checkpoint (.pt), a weights file, or a model's name
    (`rim models`: bundled or exported), so a recipe can fine-tune a bundled model from any folder."""
    if Path(init_from).suffix == ".pt":
        return Path(init_from)
    from .weights import model_file

    return model_file(init_from)[0]


def _start_from(rim: RIM, init_from: str) -> None:
    """Initialise `rim` from a weights file, a model's name or a run checkpoint (fine-tuning)."""
    path = init_file(init_from)
    if path.suffix == ".pt":
        ck = load_checkpoint(path)
        src = RIM(TrainConfig.from_dict(ck["config"]).model_config())
        src.load_state_dict(ck["model"])
    else:
        from .weights import load_file

        src = load_file(path)
    try:
        transfer_weights(src, rim)
    except ValueError as e:
        raise TrainError(f"--init-from {init_from}: {e}") from None


def git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[2]
        r = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return r.stdout.strip() or None if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


# ---------------------------------------------------------------- distributed


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


# ---------------------------------------------------------------- the loop


@dataclass
class TrainState:
    iteration: int = 0
    best: float = -math.inf
    history: list[dict] = field(default_factory=list)


def _split(cfg: TrainConfig) -> tuple[list[Path], list[Path]]:
    files = list_images(Path(cfg.data))
    if cfg.val:
        return files, list_images(Path(cfg.val))
    if cfg.val_split >= len(files):
        raise TrainError(f"val_split {cfg.val_split} leaves no training images out of {len(files)}")
    # deterministic hold-out: every k-th image, so train and val cover the same kinds of scenes
    k = max(1, len(files) // max(1, cfg.val_split))
    val = files[::k][: cfg.val_split]
    return [f for f in files if f not in set(val)], val


def held_out(cfg: TrainConfig) -> list[Path]:
    """The images a run holds out for validation."""
    return _split(cfg)[1]


def train(cfg: TrainConfig, resume: bool = False, command: str | None = None,
          on_log: Callable[[dict], None] | None = None, time_limit: float | None = None) -> Path:
    """Run (or resume) training; returns the run folder. Writes log.jsonl, last.pt, best.pt.

    `time_limit` (seconds) ends the run early but cleanly: validate, checkpoint, return; a later
    `resume=True` call continues it (for time-boxed machines and job queues)."""
    started = time.monotonic()
    run = _start(cfg, resume, command)
    meter = _Meter()
    with _eager_if_compile_fails(cfg):
        _loop(run, meter, on_log, started, time_limit)
    _shutdown(run.dist)
    return run.out


def _loop(run: _Run, meter: _Meter, on_log: Callable[[dict], None] | None, started: float,
          time_limit: float | None) -> None:
    cfg = run.cfg
    while run.state.iteration < cfg.iters:
        meter.add(_iteration(run), cfg.batch * run.dist.world)
        it = run.state.iteration
        if run.dist.main and (it % cfg.log_every == 0 or it == cfg.iters):
            _log(run.out, meter.record(it, run), on_log)
        out_of_time = time_limit is not None and _agree(time.monotonic() - started > time_limit, run.dist)
        if it % cfg.val_every == 0 or it == cfg.iters or out_of_time:
            _validate_and_checkpoint(run, on_log)
            if run.dist.main:
                meter.restart_clock()  # throughput counts training, not validation
            _barrier(run.dist)
        if out_of_time:
            break


@dataclass
class _Run:
    """One training run in memory: built by `_start`, advanced by `_iteration`, saved by
    `_validate_and_checkpoint`."""

    cfg: TrainConfig
    out: Path
    device: torch.device
    dist: Dist
    gen: torch.Generator  # this rank's data and corruption stream (in the checkpoint)
    sampler: PatchSampler
    val_x: torch.Tensor | None  # the validation crops (main rank only)
    rim: RIM
    net: nn.Module  # the unrolled loop, DDP-wrapped on several ranks
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    amp: torch.dtype | None
    weights: torch.Tensor  # per-step loss weights
    tasks: list[str]
    meta: dict  # provenance stored in config.json and every checkpoint
    state: TrainState


def _start(cfg: TrainConfig, resume: bool, command: str | None) -> _Run:
    """Set up a run: device and ranks, the run folder, data, model, optimiser and schedule, and
    (resuming) everything the last checkpoint holds. The order is part of the data stream."""
    cfg.validate()
    tune_allocator()
    device, dist = _devices(cfg)
    out = Path(cfg.out)
    if dist.main:
        _claim_out(out, resume)
    train_files, val_files = _split(cfg)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + dist.rank)
    sampler = PatchSampler(load_images(train_files, cfg.channels), cfg.patch, gen)
    val_x = validation_crops(cfg, val_files) if dist.main else None
    rim, net = _build_model(cfg, device, dist, None if resume else cfg.init_from)
    opt = torch.optim.Adam(rim.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: lr_factor(cfg, it))
    state, saved_meta = TrainState(), None
    if resume:
        state, saved_meta = _restore(out / "last.pt", cfg, rim, opt, sched, gen, dist)
    meta = _run_meta(cfg, command, train_files, val_files, dist, saved_meta)
    amp = autocast_dtype(cfg.amp, device)
    # what `auto` settings became on this machine (the latest start's, for a resumed run)
    meta |= {"precision": precision_name(amp),
             "channels_last": channels_last(cfg, device), "compile": compiles(cfg, device)}
    if dist.main and not resume:
        write_bytes(out / "config.json", json.dumps({"config": cfg.to_dict(), **meta}, indent=2))
    return _Run(cfg=cfg, out=out, device=device, dist=dist, gen=gen, sampler=sampler, val_x=val_x, rim=rim, net=net,
                opt=opt, sched=sched, scaler=torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16"),
                amp=amp,
                weights=step_weights(cfg.loss_weights, cfg.steps), tasks=cfg.tasks(), meta=meta, state=state)


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of an `amp` setting on `device`; `auto` is bf16 where the hardware
    multiplies it natively, as for inference. Measured on 2 cores with AVX512-BF16 (with NHWC):
    1.8x (hidden 32) and 2.2x (hidden 96) the fp32 NCHW patches/s, and the held-out validation
    curve of fp32 at equal iterations (README, Training your own)."""
    if amp == "auto":
        return resolve_precision("auto", device)
    return AUTOCAST_DTYPES["fp32" if amp == "off" else amp]  # fp16 may run on a CPU here, unlike inference


def channels_last(cfg: TrainConfig, device: torch.device) -> bool:
    """NHWC activations: as set, else on a CPU only (oneDNN runs the cell 1.1x faster so, more in bf16)."""
    return device.type == "cpu" if cfg.channels_last is None else cfg.channels_last


def compiles(cfg: TrainConfig, device: torch.device) -> bool:
    """torch.compile the cell: as set, else on a CPU that can build kernels. Measured on 2 cores
    with AVX512-BF16 (hidden 64, patch 48, batch 16, T=8; scripts/bench_train.py): the bf16 NHWC
    step 1.4x faster compiled, 2.7x the first-landed cell's fp32 NCHW step. GPU runs leave it to
    their recipes, which probe it."""
    return device.type == "cpu" and cpu_compiler() if cfg.compile is None else cfg.compile


def compile_cell(rim: RIM) -> None:
    """torch.compile the cell only (the loop and the operators stay eager), in place, so state_dict
    keys stay unprefixed. Static shapes: patches and validation crops are fixed, so validation adds
    graphs of its own rather than making the training ones dynamic (measured at hidden 32: 107 patches/s
    fell to 101 after the first validations)."""
    rim.cell.compile(dynamic=False)


def _eager_if_compile_fails(cfg: TrainConfig) -> contextlib.AbstractContextManager:
    """Under `auto` compile, a kernel build that fails (missing headers, say) runs that code
    eagerly, with torch's warning, instead of ending the run; `--compile` asked for it, so raises."""
    if cfg.compile is None:
        return torch._dynamo.config.patch(suppress_errors=True)
    return contextlib.nullcontext()


def _devices(cfg: TrainConfig) -> tuple[torch.device, Dist]:
    """The device and this process's place among the ranks (one GPU per rank under torchrun)."""
    device = resolve_device(cfg.device)
    dist = init_distributed(device)
    if device.type == "cuda" and dist.world > 1:
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    return device, dist


def _claim_out(out: Path, resume: bool) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TrainError(f"{out}: cannot create the run folder ({os_reason(e)})") from None
    if not resume and (out / "last.pt").exists():
        raise TrainError(f"{out} already holds a run; use --resume to continue it or choose another --out")


def _build_model(cfg: TrainConfig, device: torch.device, dist: Dist, init_from: str | None) -> tuple[RIM, nn.Module]:
    """The RIM (seeded, or started from `init_from`) on its device, and the module the loop calls."""
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    rim = RIM(cfg.model_config())
    if init_from:
        _start_from(rim, init_from)
    rim = rim.to(device)
    if channels_last(cfg, device):
        rim = rim.to(memory_format=torch.channels_last)
    if compiles(cfg, device):
        compile_cell(rim)
    net: nn.Module = Unrolled(rim)
    if dist.world > 1:
        # one step never reaches the GRUs' weights on the state (it starts at zero and is skipped)
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None,
                                                  find_unused_parameters=cfg.steps == 1)
    return rim, net


def _restore(path: Path, cfg: TrainConfig, rim: RIM, opt: torch.optim.Optimizer, sched: Any, gen: torch.Generator,
             dist: Dist) -> tuple[TrainState, dict]:
    """Load the last checkpoint into the freshly built run (refusing a changed recipe); returns
    its progress and the provenance it recorded."""
    ck = load_checkpoint(path)
    saved = TrainConfig.from_dict(ck["config"])
    changed = [k for k, v in saved.to_dict().items() if v != getattr(cfg, k) and k not in RESUMABLE_CHANGES]
    if changed:
        raise TrainError(f"{path} was written with different {', '.join(changed)}; resume with the same settings")
    rim.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    sched.load_state_dict(ck["scheduler"])
    gen.set_state(ck["rng"][dist.rank] if dist.rank < len(ck["rng"]) else ck["rng"][0])
    return TrainState(ck["iteration"], ck["best"], ck.get("history", [])), ck.get("meta", {})


def _run_meta(cfg: TrainConfig, command: str | None, train_files: list[Path], val_files: list[Path], dist: Dist,
              resumed_meta: dict | None) -> dict:
    """Provenance: command, commit, data, ranks, and which weights a fine-tune started from
    (kept from the checkpoint when resuming: `resumed_meta` is None for a new run)."""
    meta = {"command": command, "commit": git_commit(), "train_images": len(train_files),
            "val_images": [f.name for f in val_files], "world_size": dist.world}
    if resumed_meta is not None:
        # a resumed run's own command names only what changed: keep every command that made it
        earlier = resumed_meta.get("commands") or [resumed_meta.get("command")]
        meta["commands"] = [c for c in earlier if c] + ([command] if command else [])
        if "init_from_sha256" in resumed_meta:
            meta["init_from_sha256"] = resumed_meta["init_from_sha256"]
    elif cfg.init_from:  # which weights it started from, not just their path
        from .weights import sha256

        meta["init_from_sha256"] = sha256(init_file(cfg.init_from))
    return meta


def _iteration(run: _Run) -> float:
    """One optimiser step on a fresh batch (task, crops, operator and noise drawn from the run's
    generator, in that order); returns the loss."""
    cfg, gen = run.cfg, run.gen
    task = run.tasks[int(torch.randint(len(run.tasks), (1,), generator=gen))]
    x = run.sampler.batch(cfg.batch)
    op, y, sigma = corrupt(cfg, task, x, gen)
    x, y, sigma, op = x.to(run.device), y.to(run.device), sigma.to(run.device), op.to(run.device)
    # projections measure vectors; the cell's NHWC weights still set the layout
    if channels_last(cfg, run.device) and y.dim() == 4:
        y = y.contiguous(memory_format=torch.channels_last)
    xs = run.net(y, op, sigma, cfg.steps, run.amp, cfg.grad_checkpoint)
    loss = unrolled_loss(xs, x, run.weights)
    run.opt.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.unscale_(run.opt)
    nn.utils.clip_grad_norm_(run.rim.parameters(), cfg.grad_clip)
    run.scaler.step(run.opt)
    run.scaler.update()
    run.sched.step()
    run.state.iteration += 1
    return float(loss.detach())


class _Meter:
    """Mean loss and patches/s between log records."""

    def __init__(self) -> None:
        self.t0, self.seen, self.losses = time.perf_counter(), 0, []

    def add(self, loss: float, patches: int) -> None:
        self.losses.append(loss)
        self.seen += patches

    def restart_clock(self) -> None:
        self.t0 = time.perf_counter()

    def record(self, it: int, run: _Run) -> dict:
        """The log record at iteration `it`; starts the next interval."""
        dt = time.perf_counter() - self.t0
        rec = {"iter": it, "loss": float(np.mean(self.losses)), "lr": run.sched.get_last_lr()[0],
               "patches_per_s": self.seen / dt, "eps": float(run.rim.eps.detach())}
        self.t0, self.seen, self.losses = time.perf_counter(), 0, []
        return rec


def _validate_and_checkpoint(run: _Run, on_log: Callable[[dict], None] | None) -> None:
    """Every rank hands over its data-stream state (and a digest of its weights); the main rank
    validates, writes last.pt (and best.pt when the score improved) and logs the curves."""
    rng = _gather_rng(run.gen, run.dist)
    digests = _gather_digests(run.rim, run.dist)
    if not run.dist.main:
        return
    cfg, state = run.cfg, run.state
    it = state.iteration
    curves = validate(run.rim, cfg, run.val_x, run.device)
    score = val_score(curves, cfg.steps)
    state.history.append({"iter": it, "val_psnr": score})
    improved = score > state.best
    state.best = max(state.best, score)
    ck = _checkpoint(run.rim, run.opt, run.sched, rng, state, cfg, run.meta)
    if improved:
        _atomic_save(ck, run.out / "best.pt")
    _atomic_save(ck, run.out / "last.pt")
    rec = {"iter": it, "val": curves, "val_psnr": score, "best": improved}
    if run.dist.world > 1:  # DDP must keep every replica identical: record it so drift is visible
        rec["rank_digests"] = digests
    _log(run.out, rec, on_log)


def _shutdown(dist: Dist) -> None:
    """Leave the process group together: a rank exiting with gloo threads alive aborts (SIGABRT)."""
    if dist.world > 1:
        import torch.distributed as tdist

        tdist.barrier()
        tdist.destroy_process_group()


def _agree(flag: bool, dist: Dist) -> bool:
    """True on every rank if true on any (ranks must stop at the same iteration)."""
    if dist.world == 1:
        return flag
    import torch.distributed as tdist

    t = torch.tensor([int(flag)], device="cuda" if tdist.get_backend() == "nccl" else "cpu")
    tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
    return bool(t.item())


def _barrier(dist: Dist) -> None:
    if dist.world > 1:
        import torch.distributed as tdist

        tdist.barrier()


def _gather_rng(gen: torch.Generator, dist: Dist) -> list[torch.Tensor]:
    """Every rank's data-stream state, so a resumed DDP run continues each one."""
    if dist.world == 1:
        return [gen.get_state()]
    import torch.distributed as tdist

    states: list[Any] = [None] * dist.world
    tdist.all_gather_object(states, gen.get_state())
    return states


def _gather_digests(rim: RIM, dist: Dist) -> list[str]:
    """sha256 of each rank's parameters."""
    h = hashlib.sha256()
    for p in rim.parameters():
        h.update(p.detach().cpu().numpy().tobytes())
    if dist.world == 1:
        return [h.hexdigest()]
    import torch.distributed as tdist

    out: list[Any] = [None] * dist.world
    tdist.all_gather_object(out, h.hexdigest())
    return out


def _checkpoint(rim: RIM, opt, sched, rng: list[torch.Tensor], state: TrainState, cfg: TrainConfig, meta: dict) -> dict:
    return {
        "model": rim.state_dict(), "model_config": rim.config.to_dict(), "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(), "rng": rng, "iteration": state.iteration, "best": state.best,
        "history": state.history, "config": cfg.to_dict(), "meta": meta,
    }


def _log(out: Path, rec: dict, on_log: Callable[[dict], None] | None) -> None:
    rec = {"time": time.time(), **rec}
    try:
        with open(out / "log.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
    except OSError as e:
        raise TrainError(f"{out / 'log.jsonl'}: cannot write ({os_reason(e)})") from None
    if on_log is not None:
        on_log(rec)


def read_log(run: Path) -> list[dict]:
    path = run / "log.jsonl"
    if not path.exists():
        return []
    try:
        text = path.read_text()
    except OSError as e:
        raise TrainError(f"{path}: cannot read ({os_reason(e)})") from None
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def command_line() -> str:
    return " ".join(["rim", *sys.argv[1:]]) if sys.argv else "rim train"
