"""The RIM cell and its ablations: sizes, shapes, the trainable eps, what each variant may see."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from rimcli.inference import unroll
from rimcli.model import ARCHS, RIM, ConvGRU, RIMConfig
from rimcli.operators import Denoise, Downsample


def _gru_1x1(f: int) -> int:
    return (2 * f * 2 * f + 2 * f) + (f * f + f) + f * f  # gates, candidate from input, from state


def _conv3(cin: int, cout: int) -> int:
    return 9 * cin * cout + cout


def _expected_parameters(arch: str, c: int, f: int, sigma_input: bool = False) -> int:
    """Counted by hand from the layers, so a changed layer shows up as a changed formula."""
    gru_1x1 = _gru_1x1(f)
    if arch == "msrim":
        f0, f1, f2 = f // 2, f, 2 * f
        return (_conv3(2 * c + sigma_input, f0) + _conv3(4 * f0, f1) + _gru_1x1(f1) + _conv3(4 * f1, f2)
                + _gru_1x1(f2) + _conv3(f2, 4 * f1) + _conv3(2 * f1, 4 * f0) + _conv3(2 * f0, c) + 1)
    conv_mid = 9 * f * f + f
    conv_out = 9 * f * c + c
    phi = 1
    if arch == "paper":
        h = 4 * f
        down = 9 * 2 * c * f + f
        gru_3x3 = 9 * (f + h) * 2 * h + 2 * h + 9 * f * h + h + 9 * h * h
        up = 9 * h * f + f
        return down + gru_3x3 + up + conv_out + phi
    conv_in = 25 * (c if arch == "gdn" else 2 * c) * f + f
    middle = 2 * (f * f + f) if arch == "ffn" else 2 * gru_1x1
    return conv_in + middle + conv_mid + conv_out + phi


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("hidden", [8, 64])
@pytest.mark.parametrize("arch", ARCHS)
def test_parameter_count_matches_the_architecture(arch: str, hidden: int, channels: int) -> None:
    model = RIM(RIMConfig(channels=channels, hidden=hidden, arch=arch))
    assert model.num_parameters() == _expected_parameters(arch, channels, hidden)


@pytest.mark.parametrize("arch", ["rim", "msrim"])
def test_sigma_input_adds_one_input_channel(arch: str) -> None:
    """The noise-level map is one more input channel of the first conv, nothing else."""
    plain = RIM(RIMConfig(channels=3, hidden=8, arch=arch)).num_parameters()
    with_sigma = RIM(RIMConfig(channels=3, hidden=8, arch=arch, sigma_input=True)).num_parameters()
    first = 25 * 8 if arch == "rim" else 9 * 4  # kernel area x output width of the first conv (8 or 8/2)
    assert with_sigma - plain == first
    if arch == "msrim":
        assert with_sigma == _expected_parameters(arch, 3, 8, sigma_input=True)


@pytest.mark.parametrize("arch", ["rim", "msrim", "paper", "ffn"])
def test_the_update_depends_on_sigma_only_with_sigma_input(arch: str) -> None:
    x, g = torch.rand(1, 1, 16, 16), torch.randn(1, 1, 16, 16)
    for sigma_input in (False, True):
        torch.manual_seed(0)
        model = RIM(RIMConfig(hidden=8, arch=arch, sigma_input=sigma_input))
        lo = model(x, g, model.init_state(x), torch.tensor([0.0]))[0]
        hi = model(x, g, model.init_state(x), torch.tensor([0.2]))[0]
        assert torch.equal(lo, hi) != sigma_input


def test_multiscale_reach_is_a_tight_bound() -> None:
    """`MultiScaleCell.reach` is what the tiler's exact overlap is built from: no input pixel
    further than `reach` changes an output pixel, and some pixel at exactly `reach` does."""
    torch.manual_seed(0)
    model = RIM(RIMConfig(hidden=4, arch="msrim")).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_().add_(0.05)  # all-positive weights: no influence can cancel out by chance
    n, reach = 64, model.cell.reach
    x, g = torch.full((1, 1, n, n), 0.5), torch.zeros(1, 1, n, n)
    base = model(x, g, model.init_state(x))[0]
    furthest = 0
    for q in range(28, 32):  # all four phases of the 4-pixel grid
        g2 = g.clone()
        g2[..., q, q] = 1.0
        changed = (model(x, g2, model.init_state(x))[0] - base).abs()[0, 0, q] > 0
        cols = changed.nonzero().flatten()
        furthest = max(furthest, int((cols - q).abs().max()))
    assert furthest == reach


def test_multiscale_needs_an_even_width_and_gdn_takes_no_sigma() -> None:
    with pytest.raises(ValueError, match="even"):
        RIMConfig(hidden=7, arch="msrim")
    with pytest.raises(ValueError, match="sigma_input"):
        RIMConfig(arch="gdn", sigma_input=True)


def test_default_architecture_has_90306_parameters() -> None:
    """The figure quoted in the closing note (gray; 97,860 for RGB)."""
    assert RIM().num_parameters() == 90_306
    assert RIM(RIMConfig(channels=3)).num_parameters() == 97_860


@pytest.mark.parametrize("hw", [(16, 20), (15, 17)], ids=["even", "odd"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("arch", ARCHS)
def test_step_returns_update_and_state_of_the_right_shapes(arch: str, channels: int, hw: tuple[int, int]) -> None:
    model = RIM(RIMConfig(channels=channels, hidden=8, arch=arch))
    x = torch.rand(2, channels, *hw)
    state = model.zero_state(x)
    for first in (model.init_state(x), state):
        delta, new_state = model(x, torch.randn_like(x), first)
        assert delta.shape == x.shape
        assert [s.shape for s in new_state] == [s.shape for s in state]


@pytest.mark.parametrize("kernel", [1, 3])
def test_conv_gru_is_the_textbook_gru(kernel: int) -> None:
    """z, r = sigmoid(W [x, h]); n = tanh(W_x x + r * W_h h); h' = (1 - z) n + z h (the fused kernels
    compute exactly this, to float rounding)."""
    torch.manual_seed(0)
    gru = ConvGRU(3, 5, kernel)
    x, h = torch.randn(2, 3, 6, 7), torch.randn(2, 5, 6, 7)
    z, r = torch.sigmoid(gru.gates(torch.cat([x, h], 1))).chunk(2, 1)
    n = torch.tanh(gru.cand_x(x) + r * gru.cand_h(h))
    torch.testing.assert_close(gru(x, h), (1 - z) * n + z * h, rtol=0, atol=1e-6)
    # a state of None is the zero state, computed without the weights on h
    torch.testing.assert_close(gru(x, None), gru(x, torch.zeros_like(h)), rtol=0, atol=1e-6)



@pytest.mark.parametrize("state", ["zero", "given"])
def test_conv_gru_gradients_are_the_textbook_grus(state: str) -> None:
    """The in-place kernels (sigmoid_, tanh as 2 sigmoid(2a) - 1) leave autograd intact: gradients
    on the input, the state and every weight equal the textbook GRU's, also where tanh saturates."""
    torch.manual_seed(0)
    gru = ConvGRU(3, 5)
    x = (10 * torch.randn(2, 3, 6, 7)).requires_grad_()  # large: many gates and candidates saturate
    h = torch.randn(2, 5, 6, 7).tanh().requires_grad_()
    w = torch.randn(2, 5, 6, 7)

    def textbook() -> torch.Tensor:
        hh = h if state == "given" else torch.zeros_like(h)
        z, r = torch.sigmoid(gru.gates(torch.cat([x, hh], 1))).chunk(2, 1)
        n = torch.tanh(gru.cand_x(x) + r * gru.cand_h(hh))
        return (1 - z) * n + z * hh

    def grads(out: torch.Tensor) -> list[torch.Tensor]:
        inputs = [x, h, *gru.parameters()] if state == "given" else [x, gru.gates.weight, gru.cand_x.weight]
        return torch.autograd.grad((out * w).sum(), inputs)

    ours = grads(gru(x, h if state == "given" else None))
    for a, b in zip(ours, grads(textbook()), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)

@pytest.mark.parametrize("arch", ARCHS)
def test_the_first_step_skips_the_zero_state_and_computes_the_same(arch: str) -> None:
    """init_state is None per state (the GRUs skip it): the update and the next state equal those
    from explicit zeros, and the step costs less (hand count: 1x1 GRUs keep their z gate and x candidate)."""
    from rimcli.model import count_macs, unroll_macs

    torch.manual_seed(0)
    model = RIM(RIMConfig(channels=3, hidden=8, arch=arch))
    x, g = torch.rand(2, 3, 15, 17), torch.randn(2, 3, 15, 17)
    with torch.no_grad():
        d0, s0 = model(x, g, model.init_state(x))
        d1, s1 = model(x, g, model.zero_state(x))
    torch.testing.assert_close(d0, d1, rtol=0, atol=1e-6)
    for a, b in zip(s0, s1, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    if arch == "rim":
        f, h, w = 8, 12, 10
        per_pixel = 25 * 6 * f + 9 * f * f + 2 * (f * f + f * f) + 9 * f * 3
        assert count_macs(model, h, w, first=True) == per_pixel * h * w
        assert unroll_macs(model, h, w, 4) == per_pixel * h * w + 3 * count_macs(model, h, w)


def test_eps_is_positive_trainable_and_starts_at_eps_init() -> None:
    model = RIM(RIMConfig(hidden=8, eps_init=1e-3))
    assert model.eps.item() == pytest.approx(1e-3, rel=1e-5)
    assert model.phi.requires_grad and any(p is model.phi for p in model.parameters())
    with torch.no_grad():
        model.phi.fill_(-50.0)  # softplus keeps it positive whatever the optimiser does
    assert model.eps.item() > 0


def test_gdn_ignores_the_current_estimate() -> None:
    torch.manual_seed(0)
    model = RIM(RIMConfig(hidden=8, arch="gdn"))
    x = torch.rand(1, 1, 12, 12)
    grad = torch.randn_like(x)
    state = [torch.randn_like(s) for s in model.zero_state(x)]
    a, _ = model(x, grad, state)
    b, _ = model(torch.rand_like(x), grad, state)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_rim_uses_the_current_estimate() -> None:
    model = RIM(RIMConfig(hidden=8))
    x = torch.rand(1, 1, 12, 12)
    grad = torch.randn_like(x)
    state = model.init_state(x)
    assert not torch.allclose(model(x, grad, state)[0], model(torch.rand_like(x), grad, state)[0])


def test_ffn_has_no_state() -> None:
    model = RIM(RIMConfig(hidden=8, arch="ffn"))
    x = torch.rand(1, 1, 12, 12)
    assert model.init_state(x) == []
    delta, state = model(x, torch.randn_like(x), [])
    assert state == []
    assert not any("rnn" in name for name, _ in model.named_parameters())


@pytest.mark.parametrize("arch", ["rim", "gdn", "paper"])
def test_recurrent_state_changes_the_output(arch: str) -> None:
    torch.manual_seed(0)
    model = RIM(RIMConfig(hidden=8, arch=arch))
    x = torch.rand(1, 1, 12, 12)
    grad = torch.randn_like(x)
    zero = model.init_state(x)
    other = [torch.randn_like(s) for s in model.zero_state(x)]
    assert not torch.allclose(model(x, grad, zero)[0], model(x, grad, other)[0])


@pytest.mark.parametrize("arch", ARCHS)
def test_gradient_reaches_every_parameter_through_unroll(arch: str) -> None:
    torch.manual_seed(0)
    model = RIM(RIMConfig(channels=3, hidden=8, arch=arch))
    x = torch.rand(2, 3, 24, 24)
    op = Downsample(2)  # an operator with a non-trivial A^T, so the eps path is exercised too
    y = op.measure(x, 0.01, torch.Generator().manual_seed(0))
    xs = unroll(model, y, op, 0.01, steps=3)
    loss = sum(((xt - x) ** 2).mean() for xt in xs)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert missing == []


def test_unroll_with_checkpointing_gives_the_same_gradients() -> None:
    torch.manual_seed(0)
    model = RIM(RIMConfig(hidden=8))
    x = torch.rand(1, 1, 16, 16)
    y = Denoise().measure(x, 0.1, torch.Generator().manual_seed(0))
    grads = []
    for checkpoint in (False, True):
        model.zero_grad()
        sum(((xt - x) ** 2).mean() for xt in unroll(model, y, Denoise(), 0.1, 3, checkpoint=checkpoint)).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"arch": "lstm"}, "unknown arch"), ({"channels": 2}, "channels"), ({"hidden": 0}, "hidden")],
)
def test_bad_config_raises(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RIMConfig(**kwargs)


def test_config_round_trips_and_rejects_unknown_keys() -> None:
    cfg = RIMConfig(channels=3, hidden=16, arch="gdn")
    assert RIMConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown model config keys: depth, width"):
        RIMConfig.from_dict({**cfg.to_dict(), "width": 3, "depth": 2})


def test_mac_count_matches_the_layers_by_hand() -> None:
    """Default cell, gray, hidden f, on an h x w image: conv_in 5x5 (2 -> f), conv_mid 3x3, two
    1x1 GRUs (gates 2f -> 2f, candidates f -> f twice), conv_out 3x3 (f -> 1)."""
    from rimcli.model import count_macs

    f, h, w = 8, 12, 10
    per_pixel = 25 * 2 * f + 9 * f * f + 2 * (2 * f * 2 * f + 2 * f * f) + 9 * f
    assert count_macs(RIM(RIMConfig(hidden=f)), h, w) == per_pixel * h * w
    # the multi-scale cell spends about the same per pixel at each of its three resolutions
    ms = count_macs(RIM(RIMConfig(hidden=f, arch="msrim")), 16, 16) / 256
    assert 0.5 < ms / count_macs(RIM(RIMConfig(hidden=f)), 16, 16) * 256 < 8
    # the paper's cell on 16x16: its transposed conv costs per input (8x8) pixel, as it runs
    half = 8 * 8
    paper = (half * f * 2 * 9 + half * (5 * f * 8 * f + f * 4 * f + 4 * f * 4 * f) * 9 + half * 4 * f * f * 9
             + 256 * f * 9)
    assert count_macs(RIM(RIMConfig(hidden=f, arch="paper")), 16, 16) == paper


@pytest.mark.parametrize("arch", ARCHS)
def test_a_colour_model_starts_a_gray_one_that_computes_the_same_on_gray_images(arch: str) -> None:
    """transfer_weights folds R, G, B: on a gray image (R=G=B) the gray model's first update is the
    colour model's update averaged over channels, and the reverse transfer replicates it."""
    from rimcli.model import transfer_weights

    torch.manual_seed(0)
    sig = arch != "gdn"
    colour = RIM(RIMConfig(channels=3, hidden=8, arch=arch, sigma_input=sig))
    gray = RIM(RIMConfig(channels=1, hidden=8, arch=arch, sigma_input=sig))
    transfer_weights(colour, gray)
    x, g = torch.rand(2, 1, 20, 24), torch.randn(2, 1, 20, 24)
    sigma = torch.tensor([0.05, 0.2]) if sig else None
    with torch.no_grad():
        d3, _ = colour(x.repeat(1, 3, 1, 1), g.repeat(1, 3, 1, 1), colour.init_state(x.repeat(1, 3, 1, 1)), sigma)
        d1, _ = gray(x, g, gray.init_state(x), sigma)
        torch.testing.assert_close(d1, d3.mean(1, keepdim=True), rtol=1e-4, atol=1e-5)
        back = RIM(RIMConfig(channels=3, hidden=8, arch=arch, sigma_input=sig))
        transfer_weights(gray, back)
        d, _ = back(x.repeat(1, 3, 1, 1), g.repeat(1, 3, 1, 1), back.init_state(x.repeat(1, 3, 1, 1)), sigma)
        torch.testing.assert_close(d, d1.repeat(1, 3, 1, 1), rtol=1e-4, atol=1e-5)
    assert torch.equal(gray.phi, colour.phi)


def test_transfer_refuses_a_different_cell() -> None:
    from rimcli.model import transfer_weights

    with pytest.raises(ValueError, match="hidden 8"):  # narrower: the weights would not fit
        transfer_weights(RIM(RIMConfig(hidden=16)), RIM(RIMConfig(hidden=8)))
    with pytest.raises(ValueError, match="msrim/hidden 16"):  # wider, but not a cell _widen knows
        transfer_weights(RIM(RIMConfig(hidden=8, arch="msrim")), RIM(RIMConfig(hidden=16, arch="msrim")))
    with pytest.raises(ValueError, match="ffn"):
        transfer_weights(RIM(RIMConfig(hidden=8)), RIM(RIMConfig(hidden=8, arch="ffn")))


@pytest.mark.parametrize(("arch", "channels"), [("rim", 1), ("rim", 3), ("gdn", 1), ("ffn", 3)])
def test_a_wider_cell_starts_from_a_narrower_one_and_computes_the_same(arch: str, channels: int) -> None:
    """Widening (issue 16's hidden 64 -> 96 runs): every step's update and the old units' state are
    the narrow model's, on any input; the new units carry signal and the zero weights out of them
    get gradients, so training can use them."""
    from rimcli.model import transfer_weights

    torch.manual_seed(0)
    sig = arch != "gdn"
    narrow = RIM(RIMConfig(channels=channels, hidden=6, arch=arch, sigma_input=sig))
    for p in narrow.parameters():  # no zero biases: every weight block must land in its place
        p.data.normal_(0, 0.4)
    wide = RIM(RIMConfig(channels=channels, hidden=10, arch=arch, sigma_input=sig))
    transfer_weights(narrow, wide)
    x, g = torch.rand(2, channels, 12, 14), torch.randn(2, channels, 12, 14)
    sigma = torch.tensor([0.05, 0.2])
    s_n, s_w = narrow.init_state(x), wide.init_state(x)
    for _ in range(3):
        with torch.no_grad():
            d_n, s_n = narrow(x, g, s_n, sigma)
        d_w, s_w = wide(x, g, s_w, sigma)
        torch.testing.assert_close(d_w, d_n, rtol=1e-5, atol=1e-6)
        for a, b in zip(s_w, s_n, strict=True):
            torch.testing.assert_close(a[:, :6], b, rtol=1e-5, atol=1e-6)
            assert a[:, 6:].abs().amax() > 1e-3  # the new units are live
        x = (x + 0.1 * d_w.detach()).clamp(0, 1)
    d_w.square().sum().backward()
    out = wide.cell.conv_out.weight
    assert torch.equal(out[:, 6:], torch.zeros_like(out[:, 6:])) and out.grad[:, 6:].abs().amax() > 0
    assert torch.equal(wide.phi, narrow.phi)


@pytest.mark.parametrize("pad", [(1, 1, 1, 1), (2, 2, 2, 2), (0, 3, 0, 2), (1, 0, 0, 0)])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_traced_replicate_pad_is_fpads(pad: tuple[int, int, int, int], layout: torch.memory_format,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The form that torch.compile traces (edge slices concatenated) gives F.pad's replicate values
    and gradients, in either layout."""
    from rimcli.model import replicate_pad

    x = torch.randn(2, 3, 5, 7).contiguous(memory_format=layout).requires_grad_()
    w = torch.randn(2, 3, 5 + pad[2] + pad[3], 7 + pad[0] + pad[1])
    ref = F.pad(x, pad, mode="replicate")
    (g_ref,) = torch.autograd.grad((ref * w).sum(), x)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    out = replicate_pad(x, pad)
    (g_out,) = torch.autograd.grad((out * w).sum(), x)
    assert torch.equal(out, ref)
    torch.testing.assert_close(g_out, g_ref)


def test_replicate_conv_is_a_replicate_padded_conv(monkeypatch: pytest.MonkeyPatch) -> None:
    """ReplicateConv2d holds nn.Conv2d's parameters and computes its padding_mode="replicate"
    result, eager and in the traced form, so bundled weights mean what they meant."""
    from rimcli.model import ReplicateConv2d

    torch.manual_seed(0)
    ours = ReplicateConv2d(3, 4, 3, padding=2, dilation=2)
    ref = nn.Conv2d(3, 4, 3, padding=2, dilation=2, padding_mode="replicate")
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(1, 3, 9, 11)
    torch.testing.assert_close(ours(x), ref(x))
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    torch.testing.assert_close(ours(x), ref(x))
