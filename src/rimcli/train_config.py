"""The settings of a training run (`TrainConfig`), each spelled once.

A setting is one dataclass field: its name, type and default, and in its `metadata` what its
`rim train` option needs (`setting`): the help text, flag names other than `--field-name`, and
how the flag's text becomes the value (a path, a LO:HI range; a list field takes a comma list).
`cli/train.py` builds the options from these fields, so a new setting is a new field.

Cheap to import (no torch): the CLI reads these fields when it starts; `training` runs them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from .errors import RimError
from .tasks import BLUR_KINDS, CS_BLOCK, CS_RATIOS, ENSEMBLES, SR_SCALES, TASKS, TRAIN_SIGMA_RANGE, TRAIN_SR_SCALES

if TYPE_CHECKING:
    from .model import RIMConfig

#: upper end (gray levels) of the low-noise band that `low_sigma` oversamples
LOW_SIGMA = 5.0
#: `amp` settings: auto, or the autocast dtype's name (off: fp32)
AMP_MODES = ("auto", "off", "bf16", "fp16")
#: noise std ranges in gray levels (0..255 scale) when the config leaves them unset (`tasks`)
DEFAULT_SIGMA = TRAIN_SIGMA_RANGE


class TrainError(RimError, ValueError):
    """A bad training setting, data folder, run folder or checkpoint."""


def setting(default: Any = MISSING, *, help: str, flags: tuple[str, ...] = (), path: bool = False,
            lo_hi: bool = False, factory: Callable[[], Any] | Any = MISSING) -> Any:
    """A TrainConfig field with its `rim train` option: `help`; `flags`, the option's names when
    not just `--field-name` (hidden aliases and short names); `path`, a flag that takes a file or
    folder (kept as a string); `lo_hi`, a list given as LO:HI text."""
    return field(default=default, default_factory=factory,
                 metadata={"help": help, "flags": flags, "path": path, "lo_hi": lo_hi})


@dataclass
class TrainConfig:
    """Every setting of a run; the order is that of `rim train --help`."""

    task: str = setting("denoise", help="denoise, superres, cs, 3task or deblur; a comma list trains one model "
                                                     "(each batch draws one; a task named twice is drawn twice as often).")
    channels: int = setting(1, help="1 (gray) or 3 (RGB).")
    data: str = setting("", path=True, help="Folder of training images (decoded once, kept in memory).")
    val: str | None = setting(None, path=True,
                              help="Folder of validation images (default: hold out --val-split images of --data).")
    #: images held out of `data` when no `val` folder is given
    val_split: int = setting(8, help="Images of --data held out for validation.")
    out: str = setting("runs/rim", flags=("--output", "-o"), path=True,
                       help="Run folder: log.jsonl, config.json, last.pt, best.pt.")
    patch: int = setting(48, help="Training crop size in pixels.")
    batch: int = setting(16, help="Patches per iteration (per process under torchrun).")
    iters: int = setting(10000, help="Training iterations.")
    steps: int = setting(8, help="Unrolled RIM steps T.")
    loss_weights: str = setting("equal", help="equal (the paper) or increasing weights over steps.")
    lr: float = setting(1e-3, help="Adam learning rate.")
    schedule: str = setting("cosine", help="cosine or constant (after a linear warm-up).")
    warmup: int = setting(100, help="Iterations of the linear learning-rate warm-up.")
    grad_clip: float = setting(1.0, help="Largest gradient norm; larger gradients are scaled down.")
    arch: str = setting("rim", help="rim (default), msrim (multi-scale), gdn or ffn (the paper's ablations), paper.")
    hidden: int = setting(64, help="Feature width of the RIM cell.")
    #: feed the noise level to the cell (see model.RIMConfig)
    sigma_input: bool = setting(False, help="Give the cell the noise level as an input map.")
    #: fraction of samples whose noise std is drawn from [0, LOW_SIGMA] instead of sigma_range, so
    #: that clean and lightly noisy inputs are seen often enough to be left alone
    low_sigma: float = setting(0.0, help=f"Fraction of samples with noise std in 0..{LOW_SIGMA:g} gray levels.")
    #: fraction of denoising and deblurring samples stored as a file stores a photo (clipped, rounded),
    #: so that the cell learns the censored likelihood of clipped pixels (operators.censored_residual)
    clip_fraction: float = setting(0.0, help="Fraction of noisy/blurred inputs stored as 8-bit files (validated on them too).")
    #: NHWC activations: faster oneDNN convolutions on CPU, esp. with bf16; None = on for a CPU only
    #: (`training.channels_last`: GPU runs keep NCHW, which their recipes were probed with)
    channels_last: bool | None = setting(None, help="NHWC activations (default: on for a CPU, where they are faster).")
    #: weights (.safetensors, or a model's name) or a run checkpoint (.pt) to start from instead of
    #: random weights; same cell, any channel count, the same width or (default cell family) a
    #: wider one, which starts computing what the weights did (see model.transfer_weights)
    init_from: str | None = setting(None, path=True,
                                    help="Start from these weights (.safetensors, a model name, run .pt); "
                                         "colour can start gray, narrow can start wide.")
    #: gray levels; None = the task's default (DEFAULT_SIGMA)
    sigma_range: list[float] | None = setting(None, lo_hi=True,
                                              help="Noise std range LO:HI in gray levels (0..255), e.g. 0:75.")
    scales: list[int] = setting(factory=lambda: list(SR_SCALES), help="Super-resolution scales, e.g. 2,3,4.")
    ensembles: list[str] = setting(factory=lambda: list(ENSEMBLES), help="Projection ensembles, e.g. gaussian,binary,fourier.")
    ratios: list[float] = setting(factory=lambda: list(CS_RATIOS), help="Projection ratios, e.g. 1/2,1/4,1/8.")
    blur_range: list[float] = setting(factory=lambda: [0.5, 3.0], lo_hi=True,
                                      help="Gaussian blur std range LO:HI in pixels (deblur).")
    #: one family drawn per batch; the others take their extent from blur_range (tasks.random_blur_operator)
    blur_kinds: list[str] = setting(factory=lambda: ["gaussian"],
                                    help="Blur families, e.g. gaussian,motion,defocus (deblur; one drawn per batch).")
    device: str = setting("auto", help="auto, cpu, cuda or cuda:N.")
    #: auto = bf16 where the hardware multiplies it natively (`inference.resolve_precision`)
    amp: str = setting("auto", help="auto (bf16 on a GPU with bf16 or a CPU with AVX512-BF16 or AMX, else off), "
                                    "off, bf16 or fp16 autocast.")
    #: None = on for a CPU with a C++ compiler (`training.compiles`); GPU recipes probe it instead
    compile: bool | None = setting(None, help="torch.compile the RIM cell (default: on for a CPU with a C++ compiler, "
                                              "where the step is 1.4x faster after a slow first one).")
    seed: int = setting(0, help="Seed of initial weights, data order, noise and operators.")
    val_every: int = setting(500, help="Validate and checkpoint every N iterations.")
    log_every: int = setting(25, help="Log the mean loss and patches/s every N iterations.")
    val_images: int = setting(8, help="Validation images used (at most).")
    val_crop: int = setting(96, help="Side in pixels of the centre crop validated in each image.")
    grad_checkpoint: bool = setting(False, help="Recompute each step in backward (less memory).")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise TrainError(f"unknown config key(s): {', '.join(unknown)}")
        cfg = cls(**d)
        cfg.validate()
        return cfg

    def tasks(self) -> list[str]:
        out = []
        for t in (s.strip() for s in self.task.split(",") if s.strip()):
            out.append("cs" if t == "3task" else t)
        return out

    def validate(self) -> None:
        tasks = self.tasks()
        if not tasks or any(t not in TASKS for t in tasks):
            raise TrainError(f"task must be a comma list of {', '.join(TASKS)} or 3task, got {self.task!r}")
        if "3task" in self.task and sorted(self.ensembles) != sorted(ENSEMBLES):
            raise TrainError("3task trains on all three ensembles; drop --ensembles or use --task cs")
        if self.channels not in (1, 3):
            raise TrainError("channels must be 1 or 3")
        if self.loss_weights not in ("equal", "increasing"):
            raise TrainError("loss_weights must be equal or increasing")
        if self.schedule not in ("cosine", "constant"):
            raise TrainError("schedule must be cosine or constant")
        if self.amp not in AMP_MODES:
            raise TrainError(f"amp must be {', '.join(AMP_MODES[:-1])} or {AMP_MODES[-1]}")
        for name in ("batch", "iters", "steps", "patch", "hidden", "val_every", "log_every"):
            if getattr(self, name) < 1:
                raise TrainError(f"{name} must be >= 1")
        if any(s not in TRAIN_SR_SCALES for s in self.scales):
            raise TrainError("scales must be integers in 2..8")
        if any(e not in ENSEMBLES for e in self.ensembles):
            raise TrainError(f"ensembles must be among {', '.join(ENSEMBLES)}")
        kinds = self.blur_kinds
        if not kinds or any(k not in BLUR_KINDS for k in kinds) or len(set(kinds)) < len(kinds):
            raise TrainError(f"blur_kinds must be distinct names among {', '.join(BLUR_KINDS)}, got {self.blur_kinds}")
        if len(self.blur_range) != 2 or not 0 < self.blur_range[0] <= self.blur_range[1] < math.inf:
            raise TrainError("blur_range must be lo:hi with 0 < lo <= hi")
        if any(not 0 < r <= 1 for r in self.ratios):
            raise TrainError("ratios must be in (0, 1]")
        if self.sigma_range is not None and (len(self.sigma_range) != 2 or not 0 <= self.sigma_range[0] <= self.sigma_range[1]):
            raise TrainError("sigma_range must be lo:hi with 0 <= lo <= hi")
        if not 0.0 <= self.low_sigma <= 1.0:
            raise TrainError("low_sigma must be a fraction in [0, 1]")
        if not 0.0 <= self.clip_fraction <= 1.0:
            raise TrainError("clip_fraction must be a fraction in [0, 1]")
        if "cs" in tasks and self.patch % CS_BLOCK:
            raise TrainError(f"cs training needs a patch size that is a multiple of {CS_BLOCK}")
        if "superres" in tasks and any(self.patch % s for s in self.scales):
            raise TrainError(f"patch {self.patch} must be a multiple of every scale in {self.scales}")
        try:  # arch, hidden and sigma_input must make a valid cell (model.RIMConfig checks them)
            self.model_config()
        except ValueError as e:
            raise TrainError(str(e)) from None

    def sigma_for(self, task: str) -> tuple[float, float]:
        lo, hi = self.sigma_range if self.sigma_range is not None else DEFAULT_SIGMA[task]
        return float(lo), float(hi)

    def model_config(self) -> RIMConfig:
        from .model import RIMConfig  # here: the model module loads torch

        return RIMConfig(channels=self.channels, hidden=self.hidden, arch=self.arch, sigma_input=self.sigma_input)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def flops_per_iteration(self) -> float:
        """Training FLOPs of one iteration: the cell's MACs over T steps (model.unroll_macs) x 2 FLOPs
        per MAC x 3 (forward + backward) x batch; operators and the loss are not counted."""
        from .model import RIM, unroll_macs

        return 2 * 3 * unroll_macs(RIM(self.model_config()), self.patch, self.patch, self.steps) * self.batch
