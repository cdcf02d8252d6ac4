"""Recurrent inference: every step on request, seamless tiling, bounded tiles, devices, precision."""

from __future__ import annotations

import pytest
import torch

import rimcli.inference as inference
from rimcli.inference import DeviceError, receptive_depth, resolve_device, resolve_precision, restore, unroll
from rimcli.model import RIM, RIMConfig
from rimcli.operators import Blur, Denoise, Downsample, LinearOperator, RandomProjection

SIGMA = 25 / 255


def _model(arch: str = "rim", channels: int = 1, gain: float = 1.0, seed: int = 0, sigma_input: bool = False) -> RIM:
    """A tiny untrained RIM. gain > 1 scales every weight, so that distant pixels matter more
    than in the freshly initialised net: a stand-in for a trained model's longer reach."""
    torch.manual_seed(seed)
    model = RIM(RIMConfig(channels=channels, hidden=8, arch=arch, sigma_input=sigma_input))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(gain)
    return model.eval()


def _measure(op: LinearOperator, shape: tuple[int, ...], sigma: float = SIGMA) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return op.measure(torch.rand(shape, generator=g), sigma, g)


def test_restore_returns_every_step_on_request_with_the_last_as_final() -> None:
    y = _measure(Denoise(), (2, 3, 24, 20))
    out = restore(y, Denoise(), SIGMA, _model(channels=3), steps=4, return_steps=True, device="cpu")
    assert out.steps is not None and len(out.steps) == 4
    assert torch.equal(out.steps[-1], out.image)
    assert not torch.equal(out.steps[0], out.image)
    assert out.image.shape == (2, 3, 24, 20) and out.image.dtype == torch.float32
    assert 0 <= out.image.min() and out.image.max() <= 1
    assert restore(y, Denoise(), SIGMA, _model(channels=3), steps=2, device="cpu").steps is None


@pytest.mark.parametrize("channels", [1, 3])
def test_restore_matches_unroll(channels: int) -> None:
    model, op = _model(channels=channels), Downsample(2)
    y = _measure(op, (1, channels, 24, 24))
    with torch.no_grad():
        expected = unroll(model, y, op, SIGMA, 3)[-1]
    got = restore(y, op, SIGMA, model, 3, device="cpu").image
    # the CPU restore runs the net channels-last (faster 1x1 convs): the same sums in another order
    assert model.cell.conv_mid.weight.is_contiguous(memory_format=torch.channels_last)  # 3x3: not both layouts
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_unroll_rejects_zero_steps() -> None:
    with pytest.raises(ValueError, match="steps"):
        unroll(_model(), torch.rand(1, 1, 8, 8), Denoise(), SIGMA, 0)


def test_default_overlap_is_five_pixels_per_step_for_denoising() -> None:
    """The rim cell spreads 2 + 2 + 1 pixels a step (5x5, dilated 3x3, 3x3) and denoising's A^T A
    none, so 8 steps need 40 pixels of context."""
    assert receptive_depth(_model(), Denoise(), 8) == 40
    assert receptive_depth(_model(), Blur.gaussian(1.0), 1) == 6 + 6 + 5  # kernel 7x7: init, A^T A, cell


@pytest.mark.parametrize("gain", [1.0, 2.0], ids=["untrained", "strong"])
def test_tiled_and_untiled_denoising_agree_on_512x512(gain: float) -> None:
    """Acceptance test of the issue: < 0.5 gray level with the default overlap, 8 steps.

    Crop-the-core stitching is exact when the overlap covers the receptive field, whatever the
    weights, so the bound holds for a trained model too (we measure 0 on one thread).
    With the previous fixed 32-pixel overlap the untrained model passed (3e-5 gray) but only
    because its far influence is weak: at gain 2 it was 2e-3 gray and falls apart fast below
    the receptive field (see the next test)."""
    model = _model(gain=gain)
    y = _measure(Denoise(), (1, 1, 512, 512))
    whole = restore(y, Denoise(), SIGMA, model, steps=8, device="cpu").image
    tiles = []
    tiled = restore(y, Denoise(), SIGMA, model, steps=8, tile=128, device="cpu", on_tile=lambda i, n: tiles.append((i, n))).image
    assert tiles == [(i, 16) for i in range(1, 17)]
    print(f"max |tiled - untiled| = {(tiled - whole).abs().max().item() * 255:.2e} gray levels")
    assert (tiled - whole).abs().max().item() * 255 < 1e-3


def test_an_overlap_below_the_receptive_field_shows_seams() -> None:
    """The negative control: the test above can fail."""
    model = _model(gain=2.0)
    y = _measure(Denoise(), (1, 1, 160, 160))
    whole = restore(y, Denoise(), SIGMA, model, steps=8, device="cpu").image
    tiled = restore(y, Denoise(), SIGMA, model, steps=8, tile=64, tile_overlap=16, device="cpu").image
    assert (tiled - whole).abs().max().item() * 255 > 0.5


OPERATORS = {
    "denoise": Denoise(),
    "blur": Blur(torch.rand(5, 3, generator=torch.Generator().manual_seed(1)) + 0.1),
    "sr2": Downsample(2),
    "sr3": Downsample(3),
    "cs": RandomProjection("fourier", 0.3, seed=1, patch=8),
}


@pytest.mark.parametrize("op_name", list(OPERATORS))
@pytest.mark.parametrize("arch", ["rim", "gdn", "ffn", "paper", "msrim"])
def test_tiling_is_exact_for_every_architecture_and_operator(arch: str, op_name: str) -> None:
    """The default overlap (`receptive_depth`) covers each operator's reach through A^T A and
    each cell's, including the strided cells (paper: 2, multi-scale: 4), whose grid the tiles
    must also follow (tile=30 is deliberately not a multiple of 2, 4 or the scale; 190 is not a
    multiple of 4 either, so the multi-scale cell pads the last tiles as it pads the image)."""
    op = OPERATORS[op_name]
    model = _model(arch, gain=2.0, sigma_input=arch in ("rim", "msrim"))
    size = 192 if op_name in ("sr3", "cs") else 190  # those need whole LR pixels / 8x8 blocks
    y = _measure(op, (1, 1, size, size), sigma=0.05)
    whole = restore(y, op, 0.05, model, steps=2, device="cpu").image
    tiled = restore(y, op, 0.05, model, steps=2, tile=30, device="cpu").image
    assert (tiled - whole).abs().max().item() < 1e-5


def test_large_image_runs_in_bounded_tiles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory per tile is set by the tile and overlap, not the image: every unroll sees at most
    (tile + 2 * overlap)^2 pixels, which is what lets a 4000x3000 photo run on a small machine."""
    seen = []

    def spy(model, y, operator, sigma, steps, **kwargs):
        seen.append(tuple(y.shape))
        return [y.clamp(0, 1)] * steps  # stand-in output: this test is about the cutting

    monkeypatch.setattr(inference, "unroll", spy)
    h, w, tile, steps = 1100, 1500, 256, 8
    overlap = receptive_depth(_model(), Denoise(), steps)
    y = torch.rand(1, 3, h, w)
    calls = []
    out = restore(y, Denoise(), SIGMA, _model(channels=3), steps, tile=tile, device="cpu", on_tile=lambda i, n: calls.append(n))
    assert len(seen) == len(calls) == calls[0] == 5 * 6
    assert max(s[-2] for s in seen) == max(s[-1] for s in seen) == tile + 2 * overlap
    assert all(s[:2] == (1, 3) for s in seen)
    torch.testing.assert_close(out.image, y)  # each core lands where it belongs


def test_tile_overlap_in_image_pixels_becomes_whole_measurement_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    monkeypatch.setattr(inference, "unroll", lambda m, y, op, s, steps, **kw: seen.append(tuple(y.shape)) or [op.init(y)] * steps)
    y = torch.rand(1, 1, 150, 150)  # x3: a 450x450 image, 3x3 tiles
    restore(y, Downsample(3), SIGMA, _model(), 2, tile=150, tile_overlap=10, device="cpu")
    assert max(s[-1] for s in seen) == 50 + 2 * 4  # ceil(10 / 3) = 4 LR pixels of context per side


def test_negative_overlap_raises() -> None:
    with pytest.raises(ValueError, match="tile_overlap"):
        restore(torch.rand(1, 1, 16, 16), Denoise(), SIGMA, _model(), 1, tile=8, tile_overlap=-1, device="cpu")


def test_auto_device_is_cpu_without_cuda() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_asking_for_absent_cuda_raises_a_clear_device_error(device: str) -> None:
    with pytest.raises(DeviceError, match="CUDA is not available"):
        resolve_device(device)
    with pytest.raises(DeviceError):
        restore(torch.rand(1, 1, 8, 8), Denoise(), SIGMA, _model(), 1, device=device)


def test_unknown_device_lists_the_choices() -> None:
    with pytest.raises(DeviceError, match="unknown device 'tpu'; use auto, cpu, cuda or cuda:N"):
        resolve_device("tpu")


def test_fp16_on_cpu_raises() -> None:
    with pytest.raises(ValueError, match="needs a CUDA device"):
        resolve_precision("fp16", torch.device("cpu"))
    with pytest.raises(ValueError, match="needs a CUDA device"):
        restore(torch.rand(1, 1, 8, 8), Denoise(), SIGMA, _model(), 1, device="cpu", precision="fp16")


@pytest.mark.parametrize("native", [True, False])
def test_precision_names(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    """`auto` on the CPU is bf16 only where the CPU multiplies bf16 in hardware; an explicit bf16
    runs anywhere (emulated where it is not native)."""
    monkeypatch.setattr(inference, "native_bf16", lambda: native)
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) is None
    assert resolve_precision("bf16", cpu) is torch.bfloat16
    assert resolve_precision("auto", cpu) is (torch.bfloat16 if native else None)
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("int8", cpu)


# ------------------------------------------------------------------- low-noise guard (SURE)


def _photo_like(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Smooth shapes plus fine texture in [0.1, 0.9]: detail that a smoother destroys."""
    g = torch.Generator().manual_seed(seed)
    h, w = shape[-2:]
    yy, xx = torch.meshgrid(torch.linspace(0, 6, h), torch.linspace(0, 6, w), indexing="ij")
    base = 0.5 + 0.25 * torch.sin(xx + 0.5 * yy) * torch.cos(0.7 * yy)
    return (base + 0.15 * (torch.rand(shape, generator=g) - 0.5)).clamp(0.1, 0.9)


def _box3(y: torch.Tensor) -> torch.Tensor:
    """3x3 mean with circular padding: a linear smoother whose divergence is exactly N / 9."""
    c = y.shape[1]
    k = torch.full((c, 1, 3, 3), 1 / 9)
    return torch.nn.functional.conv2d(torch.nn.functional.pad(y, (1, 1, 1, 1), mode="circular"), k, groups=c)


@pytest.mark.parametrize("sigma_gray", [1.0, 5.0, 25.0])
def test_sure_blend_picks_the_oracle_blend_of_a_smoother(sigma_gray: float) -> None:
    """With the truth known, the MSE-best blend a* = <x - y, r> / |r|^2 can be computed; SURE must
    find it without the truth, beat the input, and beat the smoother wherever a* < 1."""
    sigma = sigma_gray / 255
    x = _photo_like((2, 1, 128, 128))
    y = x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    probe, eps = inference.sure_probe(y, torch.full((2,), sigma))
    out, a = inference.sure_blend(y, _box3(y), _box3(y + eps * probe), probe, eps, torch.full((2,), sigma))
    r = _box3(y) - y
    oracle = ((x - y) * r).sum((1, 2, 3)) / (r * r).sum((1, 2, 3))
    torch.testing.assert_close(a, oracle.clamp(0, 1), atol=0.03, rtol=0)
    mse = ((out - x) ** 2).mean((1, 2, 3))
    assert (mse <= ((y - x) ** 2).mean((1, 2, 3))).all()
    assert (mse <= ((_box3(y) - x) ** 2).mean((1, 2, 3)) * 1.001).all()


def test_sure_probe_estimates_the_divergence() -> None:
    y = torch.rand(1, 3, 64, 64)
    probe, eps = inference.sure_probe(y, torch.tensor([2 / 255]))
    div = (probe * (_box3(y + eps * probe) - _box3(y)) / eps).sum()
    assert abs(float(div) / (y.numel() / 9) - 1) < 0.02


def test_sigma_zero_denoising_returns_the_input() -> None:
    y = _photo_like((1, 3, 20, 24))
    out = restore(y, Denoise(), 0.0, _model(channels=3, gain=3.0), steps=3, return_steps=True, device="cpu")
    assert torch.equal(out.image, y) and len(out.steps) == 3 and all(torch.equal(s, y) for s in out.steps)


def test_a_bad_denoiser_cannot_make_light_noise_worse() -> None:
    """An untrained RIM scrambles a lightly noisy image; the guard pulls every step back to at
    least the input's quality."""
    x = _photo_like((1, 1, 96, 96))
    sigma = 2 / 255
    y = x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    model = _model(gain=3.0)

    def mse(t: torch.Tensor) -> float:
        return float(((t - x) ** 2).mean())

    raw = restore(y, Denoise(), sigma, model, steps=3, device="cpu", sure=False).image
    guarded = restore(y, Denoise(), sigma, model, steps=3, return_steps=True, device="cpu")
    assert mse(raw) > 2 * mse(y)  # the model alone does harm
    assert all(mse(s) <= mse(y) * 1.01 for s in guarded.steps)


def test_the_guard_keeps_tiling_exact_and_stays_out_above_its_band() -> None:
    y = _measure(Denoise(), (1, 1, 40, 36), sigma=3 / 255)
    model = _model(gain=2.0)
    whole = restore(y, Denoise(), 3 / 255, model, steps=2, device="cpu")
    tiled = restore(y, Denoise(), 3 / 255, model, steps=2, tile=16, device="cpu")
    torch.testing.assert_close(tiled.image, whole.image, atol=1e-5, rtol=0)
    above = inference.SURE_MAX_SIGMA * 1.5 / 255
    torch.testing.assert_close(restore(y, Denoise(), above, model, steps=2, device="cpu").image,
                               restore(y, Denoise(), above, model, steps=2, device="cpu", sure=False).image,
                               atol=0, rtol=0)


def test_a_blend_that_cannot_pay_for_its_rounding_is_not_made() -> None:
    """SURE's predicted drop in MSE per pixel must beat `min_gain` (rounding an 8-bit result
    costs step^2 / 12); below it the image is returned as it came."""
    sigma = torch.full((1,), 2 / 255)
    x = _photo_like((1, 1, 64, 64))
    y = x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    probe, eps = inference.sure_probe(y, sigma)
    args = (y, _box3(y), _box3(y + eps * probe), probe, eps, sigma)
    _, a = inference.sure_blend(*args)
    r = _box3(y) - y
    drop = float(((y - x) ** 2).mean() - ((y + a * r - x) ** 2).mean())  # the real gain, truth known
    assert float(a) > 0 and drop > 0
    kept, a_kept = inference.sure_blend(*args, min_gain=0.5 * drop)
    dropped, a_dropped = inference.sure_blend(*args, min_gain=2 * drop)
    assert float(a_kept) == float(a) and float(a_dropped) == 0 and torch.equal(dropped, y.clamp(0, 1))


def test_a_masked_blend_is_the_blend_estimated_on_the_marked_pixels_alone() -> None:
    """Clipped pixels are not Gaussian observations: SURE is estimated on the others (their probe
    is 0), and the clipped ones follow the blend found there."""
    sigma = torch.full((1,), 5 / 255)
    x = _photo_like((1, 1, 64, 64))
    y = x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(4))
    probe, eps = inference.sure_probe(y, sigma)
    mask = torch.zeros_like(y)
    mask[..., :32, :] = 1
    probe = probe * mask
    f_y, f_p = _box3(y), _box3(y + eps * probe)
    out, a = inference.sure_blend(y, f_y, f_p, probe, eps, sigma, mask=mask)
    top = (..., slice(0, 32), slice(None))
    _, a_top = inference.sure_blend(y[top], f_y[top], f_p[top], probe[top], eps, sigma)
    torch.testing.assert_close(a, a_top)
    assert 0 < float(a) < 1
    torch.testing.assert_close(out, (y + a * (f_y - y)).clamp(0, 1))


def test_the_guarded_run_is_always_full_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    """The divergence probe is a tenth of sigma, below bf16's resolution: a half-precision request
    still runs the guarded (low-noise) denoise in fp32, while a bad request fails as it would unguarded."""
    seen = []
    real = inference._restore
    monkeypatch.setattr(inference, "_restore", lambda *a: seen.append(a[9]) or real(*a[:9], "fp32", a[10]))
    y = _measure(Denoise(), (1, 1, 16, 16), sigma=2 / 255)
    restore(y, Denoise(), 2 / 255, _model(), steps=1, device="cpu", precision="bf16")
    restore(y, Denoise(), 25 / 255, _model(), steps=1, device="cpu", precision="bf16")
    assert seen == ["fp32", "bf16"]
    monkeypatch.undo()
    with pytest.raises(DeviceError, match="precision"):
        restore(y, Denoise(), 2 / 255, _model(), steps=1, device="cpu", precision="half")


# ---------------------------------------------------------------- self-ensemble


SKEW = torch.rand(3, 5, generator=torch.Generator().manual_seed(1)) + 0.1


@pytest.mark.parametrize(("n", "op", "shape"), [(8, Blur(SKEW / SKEW.sum()), (1, 1, 20, 28)),
                                                 (8, Downsample(2), (1, 3, 12, 16)),
                                                 (4, Denoise(), (2, 1, 16, 20))])
def test_a_self_ensemble_makes_the_restoration_orientation_free(n: int, op: LinearOperator, shape: tuple) -> None:
    """Averaging over a group of symmetries makes the estimate equivariant under that group,
    whatever the network: restoring a mirrored or turned measurement gives the mirrored or turned
    result. A single run of an untrained net is far from that."""
    from rimcli.operators import dihedral, dihedral_inverse

    channels = shape[1]
    y = _measure(op, shape)
    model = _model(channels=channels)

    def run(g: int, ens: int) -> torch.Tensor:
        out = restore(dihedral(y, g).contiguous(), op.dihedral(g), SIGMA, model, 2, device="cpu", self_ensemble=ens)
        return dihedral_inverse(out.image, g)

    base, single = run(0, n), run(0, 1)
    for g in range(1, n):
        torch.testing.assert_close(run(g, n), base, rtol=0, atol=1e-5)
    assert max(float((run(g, 1) - single).abs().max()) for g in range(1, n)) > 1e-3


def test_a_self_ensemble_averages_every_step_and_counts_its_tiles() -> None:
    y = _measure(Denoise(), (1, 1, 24, 24))
    ticks: list[tuple[int, int]] = []
    out = restore(y, Denoise(), SIGMA, _model(), 3, return_steps=True, tile=12, device="cpu", self_ensemble=2,
                  on_tile=lambda done, total: ticks.append((done, total)))
    assert out.steps is not None and len(out.steps) == 3 and torch.equal(out.steps[-1], out.image)
    assert ticks == [(i, 8) for i in range(1, 9)]
    mirrored = restore(y.flip(-1), Denoise(), SIGMA, _model(), 3, device="cpu").image.flip(-1)
    plain = restore(y, Denoise(), SIGMA, _model(), 3, device="cpu").image
    torch.testing.assert_close(out.image, (plain + mirrored) / 2, rtol=0, atol=1e-6)


@pytest.mark.parametrize("n", [0, 3, 16, 2.0, True, "8"])
def test_a_self_ensemble_size_not_offered_is_an_input_error(n: object) -> None:
    with pytest.raises(ValueError, match="self-ensemble must be one of 1, 2, 4, 8"):
        restore(torch.rand(1, 1, 8, 8), Denoise(), SIGMA, _model(), 1, device="cpu", self_ensemble=n)


def test_projections_have_no_self_ensemble() -> None:
    op = RandomProjection("gaussian", 0.5)
    y = op.measure(torch.rand(1, 1, 32, 32), 0.01)
    assert restore(y, op, 0.01, _model(), 1, device="cpu", self_ensemble=1).image.shape == (1, 1, 32, 32)
    with pytest.raises(ValueError, match="operator 'cs' has no self-ensemble"):
        restore(y, op, 0.01, _model(), 1, device="cpu", self_ensemble=2)


def test_a_self_ensemble_under_the_low_noise_guard_blends_the_averaged_denoiser() -> None:
    """At sigma <= 5 the guard's probe run goes through the same averaging, so SURE judges the
    ensemble as the one denoiser it is: the result is the blend of y and the averaged output."""
    y = _measure(Denoise(), (1, 1, 24, 20), sigma=2 / 255).clamp(0, 1)
    model, s = _model(), torch.tensor([2 / 255])
    out = restore(y, Denoise(), 2 / 255, model, 2, return_steps=True, device="cpu", self_ensemble=2)
    probe, eps = inference.sure_probe(y, s)
    probe = probe * ((y > 0) & (y < 1)).to(y)

    def averaged(z: torch.Tensor) -> torch.Tensor:
        runs = [restore(z.flip(-1) if g else z, Denoise(), 2 / 255, model, 2, device="cpu", sure=False).image
                for g in (0, 1)]
        return (runs[0] + runs[1].flip(-1)) / 2

    expected, a = inference.sure_blend(y, averaged(y), averaged(y + eps * probe), probe, eps, s,
                                       mask=((y > 0) & (y < 1)).to(y))
    assert 0 < float(a) <= 1 and torch.equal(out.steps[-1], out.image)
    torch.testing.assert_close(out.image, expected, rtol=0, atol=1e-5)
