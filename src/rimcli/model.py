"""The RIM cell and its ablations.

One step maps (estimate x_t, likelihood gradient g_t, hidden state s_t) to an additive update
of eta (x = sigmoid(eta)) and the next state. The recurrent loop lives in `inference.unroll`.

Architectures (`RIMConfig.arch`):
- ``rim``: conv -> conv GRU -> dilated conv -> conv GRU -> conv (Putzky's later PyTorch code and
  NKI-AI/direct's ConvRNN; full resolution, so one cell serves 32x32 patches and whole images).
- ``gdn``: the same network without the current estimate as input (paper's ablation).
- ``ffn``: the GRUs replaced by a ReLU conv layer, no memory between steps (paper's ablation).
- ``paper``: the paper's section 4.1 cell: stride-2 conv + tanh -> conv GRU -> transposed conv
  + tanh -> conv (BatchNorm omitted: it couples samples and breaks tiling).
- ``msrim``: a multi-scale cell: a light full-resolution path plus conv GRU state at 1/2 and 1/4
  resolution (pixel-unshuffle down, pixel-shuffle up, U-Net skips). The receptive field grows
  about 17 pixels a step for the FLOPs of the ``rim`` cell at the same width.

`sigma_input` adds the noise level as a constant input map (as FFDNet does): the gradient alone
mixes the noise level with the size of the residual, so the cell cannot tell a clean photo at
sigma 0 from a noisy one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

ARCHS = ("rim", "gdn", "ffn", "paper", "msrim")
#: the noise-level input map is sigma (0..1 scale) times this: about 1 at sigma 50 gray levels
SIGMA_FEATURE_SCALE = 255.0 / 50.0


@dataclass(frozen=True)
class RIMConfig:
    channels: int = 1
    hidden: int = 64
    arch: str = "rim"
    #: initial value of eps = softplus(phi) in A^T(y - Ax)/(sigma^2 + eps), on the [0,1] scale
    eps_init: float = 1e-4
    #: feed the noise level to the cell as an extra constant input channel
    sigma_input: bool = False

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; choose from {', '.join(ARCHS)}")
        if self.channels not in (1, 3):
            raise ValueError("channels must be 1 or 3")
        if self.hidden < 1:
            raise ValueError("hidden must be >= 1")
        if self.arch == "msrim" and self.hidden % 2:
            raise ValueError("msrim needs an even hidden width")
        if self.sigma_input and self.arch == "gdn":
            raise ValueError("the gdn ablation takes the gradient only; sigma_input does not apply")

    @classmethod
    def from_dict(cls, d: dict) -> RIMConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(sorted(unknown))}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


def replicate_pad(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """`F.pad(x, pad, mode="replicate")`, pad = (left, right, top, bottom). While torch.compile
    traces, the same values as edge slices concatenated: the compiled backward of
    replication_pad2d fails a stride assertion (torch 2.13, CPU), the slices' backward compiles.
    Eager keeps F.pad, which is faster there (bf16 NHWC training step 0.60 s against 0.75 s)."""
    if not torch.compiler.is_compiling():
        return F.pad(x, pad, mode="replicate")
    left, right, top, bottom = pad
    if top or bottom:
        x = torch.cat([x[:, :, :1].expand(-1, -1, top, -1), x, x[:, :, -1:].expand(-1, -1, bottom, -1)], 2)
    if left or right:
        x = torch.cat([x[..., :1].expand(-1, -1, -1, left), x, x[..., -1:].expand(-1, -1, -1, right)], 3)
    return x


class ReplicateConv2d(nn.Conv2d):
    """`nn.Conv2d(..., padding_mode="replicate")` (same parameters and state_dict) padding with
    `replicate_pad`, so that a compiled cell trains."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, padding_mode="replicate", **kwargs)

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ph, pw = self.padding
        return F.conv2d(replicate_pad(x, (pw, pw, ph, ph)), weight, bias, self.stride, 0, self.dilation, self.groups)


class ConvGRU(nn.Module):
    """Convolutional GRU with 1x1 gates (spatial context comes from the convs around it)."""

    def __init__(self, in_ch: int, hidden: int, kernel: int = 1):
        super().__init__()
        pad = kernel // 2
        self.gates = nn.Conv2d(in_ch + hidden, 2 * hidden, kernel, padding=pad)
        self.cand_x = nn.Conv2d(in_ch, hidden, kernel, padding=pad)
        self.cand_h = nn.Conv2d(hidden, hidden, kernel, padding=pad, bias=False)
        self.hidden = hidden
        for conv in (self.gates, self.cand_x, self.cand_h):
            nn.init.orthogonal_(conv.weight)
        nn.init.zeros_(self.gates.bias)
        nn.init.zeros_(self.cand_x.bias)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None) -> torch.Tensor:
        if h is None:  # zero state (the first step): r and every weight on h drop out, 2/3 of the MACs
            return self._from_zero(x)
        # in place on fresh conv outputs (their backward needs only the convs' inputs)
        z, r = self.gates(torch.cat([x, h], 1)).sigmoid_().chunk(2, 1)
        # (1 - z) n + z h, with fused kernels: a third of the cell's elementwise passes (6% of a CPU restore)
        n = _tanh_(torch.addcmul(self.cand_x(x), r, self.cand_h(h)))
        return torch.lerp(n, h, z)

    def _from_zero(self, x: torch.Tensor) -> torch.Tensor:
        g = self.gates
        z = F.conv2d(x, g.weight[: self.hidden, : x.shape[1]], g.bias[: self.hidden], padding=g.padding).sigmoid_()
        n = _tanh_(self.cand_x(x))
        return torch.addcmul(n, z, n, value=-1)  # (1 - z) n + z 0


def _tanh_(a: torch.Tensor) -> torch.Tensor:
    """tanh(a), which may overwrite `a`. On the CPU in float32 as 2 sigmoid(2a) - 1 (within 2e-7):
    ATen's CPU sigmoid is 3x faster than its tanh, which was 12% of a restore. Elsewhere plain
    tanh: on a GPU both are memory-bound, and in half precision the sigmoid form would lose
    tanh's relative precision near 0 (bf16 resolves 0.5 + 0.002, not 0 + 0.002)."""
    if a.device.type != "cpu" or a.dtype != torch.float32:
        return torch.tanh(a)
    s = a.mul_(2).sigmoid_()
    return torch.add(s, s).sub_(1)  # out of place: sigmoid's backward needs s


def _input_features(x: torch.Tensor, grad: torch.Tensor, with_estimate: bool,
                    sigma: torch.Tensor | None = None) -> torch.Tensor:
    # arcsinh compresses the gradient's 1/sigma^2 dynamic range while keeping its sign and zero
    g = torch.asinh(grad)
    parts = [x - 0.5, g] if with_estimate else [g]
    if sigma is not None:
        level = (sigma.to(x.dtype) * SIGMA_FEATURE_SCALE).reshape(-1, 1, 1, 1)
        parts.append(level.expand(x.shape[0], 1, *x.shape[-2:]))
    return torch.cat(parts, 1)


def _in_channels(cfg: RIMConfig, with_estimate: bool = True) -> int:
    return (2 if with_estimate else 1) * cfg.channels + int(cfg.sigma_input)


class RIMCell(nn.Module):
    """The default full-resolution cell (and its gdn / ffn ablations)."""

    #: pixels one step spreads information: conv_in 5x5 (2) + dilated 3x3 (2) + conv_out 3x3 (1)
    reach = 5
    #: tiles must start on multiples of this many pixels for tiled results to be exact
    stride = 1
    #: the convolutions that see image channels (input features, update): see transfer_weights
    io_convs = ("conv_in", "conv_out")

    def __init__(self, cfg: RIMConfig):
        super().__init__()
        c, f = cfg.channels, cfg.hidden
        self.with_estimate = cfg.arch != "gdn"
        self.recurrent = cfg.arch != "ffn"
        in_ch = _in_channels(cfg, self.with_estimate)
        self.conv_in = ReplicateConv2d(in_ch, f, 5, padding=2)
        self.conv_mid = ReplicateConv2d(f, f, 3, padding=2, dilation=2)
        if self.recurrent:
            self.rnn1, self.rnn2 = ConvGRU(f, f), ConvGRU(f, f)
        else:
            self.ff1, self.ff2 = nn.Conv2d(f, f, 1), nn.Conv2d(f, f, 1)
        self.conv_out = ReplicateConv2d(f, c, 3, padding=1)
        nn.init.zeros_(self.conv_out.bias)
        self.hidden = f

    def state_shapes(self, h: int, w: int) -> list[tuple[int, int, int]]:
        return [(self.hidden, h, w), (self.hidden, h, w)] if self.recurrent else []

    def forward(self, x: torch.Tensor, grad: torch.Tensor, state: list[torch.Tensor],
                sigma: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        a = F.relu_(self.conv_in(_input_features(x, grad, self.with_estimate, sigma)))
        if self.recurrent:
            h1 = self.rnn1(a, state[0])
            h2 = self.rnn2(F.relu_(self.conv_mid(h1)), state[1])
            return self.conv_out(h2), [h1, h2]
        a = F.relu_(self.ff1(a))
        a = F.relu_(self.ff2(F.relu_(self.conv_mid(a))))
        return self.conv_out(a), []


class PaperCell(nn.Module):
    """Section 4.1 of the paper: stride-2 encoder, conv GRU at half resolution, transposed decoder."""

    # stride-2 conv (1 + rounding) + 3x3 GRU (2 at half resolution) + transposed conv (2) + conv_out (1);
    # the state also spreads 2 pixels a step on its own, which this bound covers
    reach = 6
    stride = 2

    io_convs = ("down", "conv_out")

    def __init__(self, cfg: RIMConfig):
        super().__init__()
        c, f = cfg.channels, cfg.hidden
        self.down = nn.Conv2d(_in_channels(cfg), f, 3, stride=2, padding=1)
        self.rnn = ConvGRU(f, 4 * f, kernel=3)
        self.up = nn.ConvTranspose2d(4 * f, f, 3, stride=2, padding=1, output_padding=1)
        self.conv_out = ReplicateConv2d(f, c, 3, padding=1)
        nn.init.zeros_(self.conv_out.bias)
        self.hidden = 4 * f

    def state_shapes(self, h: int, w: int) -> list[tuple[int, int, int]]:
        return [(self.hidden, (h + 1) // 2, (w + 1) // 2)]

    def forward(self, x: torch.Tensor, grad: torch.Tensor, state: list[torch.Tensor],
                sigma: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        a = torch.tanh(self.down(_input_features(x, grad, True, sigma)))
        h = self.rnn(a, state[0])
        u = torch.tanh(self.up(h))[..., : x.shape[-2], : x.shape[-1]]
        return self.conv_out(u), [h]


def _conv3(cin: int, cout: int) -> nn.Conv2d:
    return ReplicateConv2d(cin, cout, 3, padding=1)


class MultiScaleCell(nn.Module):
    """Full resolution (width hidden/2), 1/2 (hidden) and 1/4 (2*hidden) with a conv GRU state at
    the two coarse levels. Each level costs about the same per image pixel, so the cell grows its
    receptive field fast for the FLOPs (the reason the paper's cell used stride 2)."""

    # one step's reach, image pixels, worst case over the 4 pixel phases: conv0_out 1, conv1_out 1
    # and conv2_out 1 + conv2_in 1 at 1/4 (8), conv1_in 1 at 1/2 (2), conv0_in 1, plus block rounding
    reach = 17
    stride = 4
    io_convs = ("conv0_in", "conv0_out")

    def __init__(self, cfg: RIMConfig):
        super().__init__()
        c, f = cfg.channels, cfg.hidden
        f0, f1, f2 = f // 2, f, 2 * f
        self.conv0_in = _conv3(_in_channels(cfg), f0)
        self.conv1_in = _conv3(4 * f0, f1)
        self.rnn1 = ConvGRU(f1, f1)
        self.conv2_in = _conv3(4 * f1, f2)
        self.rnn2 = ConvGRU(f2, f2)
        self.conv2_out = _conv3(f2, 4 * f1)
        self.conv1_out = _conv3(2 * f1, 4 * f0)
        self.conv0_out = _conv3(2 * f0, c)
        nn.init.zeros_(self.conv0_out.bias)
        self.widths = (f1, f2)

    def state_shapes(self, h: int, w: int) -> list[tuple[int, int, int]]:
        h, w = -(-h // 4), -(-w // 4)
        return [(self.widths[0], 2 * h, 2 * w), (self.widths[1], h, w)]

    def forward(self, x: torch.Tensor, grad: torch.Tensor, state: list[torch.Tensor],
                sigma: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h, w = x.shape[-2:]
        feats = _input_features(x, grad, True, sigma)
        ph, pw = -h % 4, -w % 4
        if ph or pw:  # the grid starts at the top-left, so tiles cut on multiples of 4 see the same phase
            feats = replicate_pad(feats, (0, pw, 0, ph))
        a0 = F.relu_(self.conv0_in(feats))
        h1 = self.rnn1(F.relu_(self.conv1_in(F.pixel_unshuffle(a0, 2))), state[0])
        h2 = self.rnn2(F.relu_(self.conv2_in(F.pixel_unshuffle(h1, 2))), state[1])
        u1 = F.pixel_shuffle(F.relu_(self.conv2_out(h2)), 2)
        u0 = F.pixel_shuffle(F.relu_(self.conv1_out(torch.cat([h1, u1], 1))), 2)
        out = self.conv0_out(torch.cat([a0, u0], 1))
        return out[..., :h, :w], [h1, h2]


CELLS = {"paper": PaperCell, "msrim": MultiScaleCell}


class RIM(nn.Module):
    """A RIM: the cell plus the trainable likelihood regulariser eps = softplus(phi)."""

    def __init__(self, cfg: RIMConfig | None = None, **kwargs):
        super().__init__()
        self.config = cfg or RIMConfig(**kwargs)
        self.cell = CELLS.get(self.config.arch, RIMCell)(self.config)
        # inverse softplus so that eps starts at eps_init
        self.phi = nn.Parameter(torch.tensor(math.log(math.expm1(self.config.eps_init))))

    @property
    def eps(self) -> torch.Tensor:
        return F.softplus(self.phi)

    def init_state(self, x: torch.Tensor) -> list[torch.Tensor | None]:
        """The first step's state: zero, given as None so that the GRUs skip the work on it."""
        return [None] * len(self.cell.state_shapes(x.shape[-2], x.shape[-1]))

    def zero_state(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The same zero state as tensors (what a later step's state looks like)."""
        b = x.shape[0]
        return [x.new_zeros(b, *s) for s in self.cell.state_shapes(x.shape[-2], x.shape[-1])]

    def forward(self, x: torch.Tensor, grad: torch.Tensor, state: list[torch.Tensor],
                sigma: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One step: returns the additive update for eta and the next state. `sigma` (B,), the
        noise std on the 0..1 scale, is used only by models configured with `sigma_input`."""
        return self.cell(x, grad, state, sigma if self.config.sigma_input else None)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _fold_groups(w: torch.Tensor, groups: int, c_from: int, c_to: int) -> torch.Tensor:
    """Input-conv weight (out, groups*c_from [+ sigma], k, k) re-cut for c_to image channels so
    that a gray image gives the same response as its RGB copy (R=G=B)."""
    head, tail = w[:, : groups * c_from], w[:, groups * c_from:]
    parts = []
    for g in head.split(c_from, 1):
        total = g.sum(1, keepdim=True)
        parts.append(total if c_to == 1 else total.repeat(1, c_to, 1, 1) / c_to)
    return torch.cat([*parts, tail], 1)


def transfer_weights(src: RIM, dst: RIM) -> None:
    """Start `dst` from `src`'s weights (fine-tuning). The configs must agree except in the
    image channels and, for the default cell and its ablations, a wider `dst`: a colour model
    then starts a gray one (input weights summed over R, G, B, update averaged) or the reverse,
    which on a gray image computes what the source did; a wider one computes what the source did
    on any input (see `_widen`)."""
    a, b = src.config, dst.config
    widen = b.hidden > a.hidden and isinstance(dst.cell, RIMCell)
    if (a.arch, a.sigma_input) != (b.arch, b.sigma_input) or (a.hidden != b.hidden and not widen):
        raise ValueError(f"cannot start a {b.arch}/hidden {b.hidden}/sigma_input {b.sigma_input} model from a "
                         f"{a.arch}/hidden {a.hidden}/sigma_input {a.sigma_input} one (a wider {a.arch} "
                         f"cell can start from a narrower one of the default cell family)")
    conv_in, conv_out = (f"cell.{n}" for n in dst.cell.io_convs)
    groups = 2 if getattr(dst.cell, "with_estimate", True) else 1
    state = {}
    for k, v in src.state_dict().items():
        if a.channels != b.channels and k == f"{conv_in}.weight":
            v = _fold_groups(v, groups, a.channels, b.channels)
        elif a.channels != b.channels and k.startswith(f"{conv_out}."):
            v = v.mean(0, keepdim=True) if b.channels == 1 else v.repeat(3, *([1] * (v.dim() - 1)))
        state[k] = v
    if widen:
        state = _widen(state, dst.state_dict(), a.hidden, b.hidden)
    dst.load_state_dict(state)


def _widen(old: dict, fresh: dict, f: int, wide: int) -> dict:
    """Net2Net-style function-preserving widening of a RIMCell from `f` to `wide` hidden units.

    Every width dimension of the cell is k blocks of f units (k = 2 for the GRU gates' z and r and
    for their input [x, h]); each block grows to `wide`, old units first. The old units keep their
    weights and take nothing from the new ones (zero), so they and the update compute what they
    did; the new units keep `fresh`'s random weights, so they carry signal and the zero weights
    out of them get gradients from the first step."""
    out = {}
    for k, w in fresh.items():
        v = old[k]
        if v.shape == w.shape:
            out[k] = v
            continue
        w = w.clone()
        old_units = []  # per dimension (out, in): the old units' indices in the wide tensor
        for n_old, n_new in zip(v.shape[:2], w.shape[:2], strict=True):
            blocks, rem = divmod(n_old, f)
            if n_old != n_new and (rem or n_new != blocks * wide):
                raise ValueError(f"cannot widen {k} from {tuple(v.shape)} to {tuple(w.shape)}")
            idx = torch.arange(n_old) if n_old == n_new else torch.cat([torch.arange(f) + i * wide for i in range(blocks)])
            old_units.append(idx)
        w[old_units[0]] = 0  # old outputs read nothing from new inputs...
        w[torch.meshgrid(*old_units, indexing="ij")] = v  # ...and their old weights from old ones
        out[k] = w
    return out


def count_macs(model: RIM, height: int = 64, width: int = 64, first: bool = False) -> int:
    """Multiply-accumulates of one RIM step (the cell's convolutions) on one height x width image,
    counted by running it; gates, activations and the operator are left out (a few percent).
    `first`: the first step, whose zero state the GRUs skip (see `unroll_macs`)."""
    x = torch.full((1, model.config.channels, height, width), 0.5)
    state = model.init_state(x) if first else model.zero_state(x)
    # counted at the aten level, so a convolution called functionally (the zero-state GRU) counts too
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, torch.zeros_like(x), state, torch.zeros(1))
    return counter.get_total_flops() // 2  # 2 FLOPs per multiply-accumulate


def unroll_macs(model: RIM, height: int, width: int, steps: int) -> int:
    """Multiply-accumulates of `steps` RIM steps: the cheaper first step, then full ones."""
    return count_macs(model, height, width, first=True) + (steps - 1) * count_macs(model, height, width)
