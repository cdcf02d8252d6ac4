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
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

ARCHS = ("rim", "gdn", "ffn", "paper")


@dataclass(frozen=True)
class RIMConfig:
    channels: int = 1
    hidden: int = 64
    arch: str = "rim"
    #: initial value of eps = softplus(phi) in A^T(y - Ax)/(sigma^2 + eps), on the [0,1] scale
    eps_init: float = 1e-4

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; choose from {', '.join(ARCHS)}")
        if self.channels not in (1, 3):
            raise ValueError("channels must be 1 or 3")
        if self.hidden < 1:
            raise ValueError("hidden must be >= 1")

    @classmethod
    def from_dict(cls, d: dict) -> RIMConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(sorted(unknown))}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


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

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        z, r = torch.sigmoid(self.gates(torch.cat([x, h], 1))).chunk(2, 1)
        n = torch.tanh(self.cand_x(x) + r * self.cand_h(h))
        return (1 - z) * n + z * h


def _input_features(x: torch.Tensor, grad: torch.Tensor, with_estimate: bool) -> torch.Tensor:
    # arcsinh compresses the gradient's 1/sigma^2 dynamic range while keeping its sign and zero
    g = torch.asinh(grad)
    return torch.cat([x - 0.5, g], 1) if with_estimate else g


class RIMCell(nn.Module):
    """The default full-resolution cell (and its gdn / ffn ablations)."""

    #: pixels one step spreads information: conv_in 5x5 (2) + dilated 3x3 (2) + conv_out 3x3 (1)
    reach = 5
    #: tiles must start on multiples of this many pixels for tiled results to be exact
    stride = 1

    def __init__(self, cfg: RIMConfig):
        super().__init__()
        c, f = cfg.channels, cfg.hidden
        self.with_estimate = cfg.arch != "gdn"
        self.recurrent = cfg.arch != "ffn"
        in_ch = 2 * c if self.with_estimate else c
        self.conv_in = nn.Conv2d(in_ch, f, 5, padding=2, padding_mode="replicate")
        self.conv_mid = nn.Conv2d(f, f, 3, padding=2, dilation=2, padding_mode="replicate")
        if self.recurrent:
            self.rnn1, self.rnn2 = ConvGRU(f, f), ConvGRU(f, f)
        else:
            self.ff1, self.ff2 = nn.Conv2d(f, f, 1), nn.Conv2d(f, f, 1)
        self.conv_out = nn.Conv2d(f, c, 3, padding=1, padding_mode="replicate")
        nn.init.zeros_(self.conv_out.bias)
        self.hidden = f

    def state_shapes(self, h: int, w: int) -> list[tuple[int, int, int]]:
        return [(self.hidden, h, w), (self.hidden, h, w)] if self.recurrent else []

    def forward(self, x: torch.Tensor, grad: torch.Tensor, state: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        a = F.relu(self.conv_in(_input_features(x, grad, self.with_estimate)))
        if self.recurrent:
            h1 = self.rnn1(a, state[0])
            h2 = self.rnn2(F.relu(self.conv_mid(h1)), state[1])
            return self.conv_out(h2), [h1, h2]
        a = F.relu(self.ff1(a))
        a = F.relu(self.ff2(F.relu(self.conv_mid(a))))
        return self.conv_out(a), []


class PaperCell(nn.Module):
    """Section 4.1 of the paper: stride-2 encoder, conv GRU at half resolution, transposed decoder."""

    # stride-2 conv (1 + rounding) + 3x3 GRU (2 at half resolution) + transposed conv (2) + conv_out (1);
    # the state also spreads 2 pixels a step on its own, which this bound covers
    reach = 6
    stride = 2

    def __init__(self, cfg: RIMConfig):
        super().__init__()
        c, f = cfg.channels, cfg.hidden
        self.down = nn.Conv2d(2 * c, f, 3, stride=2, padding=1)
        self.rnn = ConvGRU(f, 4 * f, kernel=3)
        self.up = nn.ConvTranspose2d(4 * f, f, 3, stride=2, padding=1, output_padding=1)
        self.conv_out = nn.Conv2d(f, c, 3, padding=1, padding_mode="replicate")
        nn.init.zeros_(self.conv_out.bias)
        self.hidden = 4 * f

    def state_shapes(self, h: int, w: int) -> list[tuple[int, int, int]]:
        return [(self.hidden, (h + 1) // 2, (w + 1) // 2)]

    def forward(self, x: torch.Tensor, grad: torch.Tensor, state: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        a = torch.tanh(self.down(_input_features(x, grad, True)))
        h = self.rnn(a, state[0])
        u = torch.tanh(self.up(h))[..., : x.shape[-2], : x.shape[-1]]
        return self.conv_out(u), [h]


class RIM(nn.Module):
    """A RIM: the cell plus the trainable likelihood regulariser eps = softplus(phi)."""

    def __init__(self, cfg: RIMConfig | None = None, **kwargs):
        super().__init__()
        self.config = cfg or RIMConfig(**kwargs)
        self.cell = PaperCell(self.config) if self.config.arch == "paper" else RIMCell(self.config)
        # inverse softplus so that eps starts at eps_init
        self.phi = nn.Parameter(torch.tensor(math.log(math.expm1(self.config.eps_init))))

    @property
    def eps(self) -> torch.Tensor:
        return F.softplus(self.phi)

    def init_state(self, x: torch.Tensor) -> list[torch.Tensor]:
        b = x.shape[0]
        return [x.new_zeros(b, *s) for s in self.cell.state_shapes(x.shape[-2], x.shape[-1])]

    def forward(self, x: torch.Tensor, grad: torch.Tensor, state: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One step: returns the additive update for eta and the next state."""
        return self.cell(x, grad, state)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
