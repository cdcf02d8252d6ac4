"""Forward operators: adjointness, likelihood gradient, shapes, reproducibility, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rimcli.operators import (
    DIHEDRAL,
    ENSEMBLES,
    Blur,
    Denoise,
    Downsample,
    LinearOperator,
    RandomProjection,
    as_sigma,
    censored_residual,
    defocus_kernel,
    dihedral,
    dihedral_inverse,
    gaussian_kernel,
    load_kernel,
    motion_kernel,
)

# A non-symmetric kernel (3x5, random positive) catches a missing flip/transpose in the adjoint.
SKEW_KERNEL = torch.rand(3, 5, generator=torch.Generator().manual_seed(7)) + 0.1


def _operators() -> list[tuple[str, LinearOperator, tuple[int, int]]]:
    """(id, operator, image size). Sizes are multiples of 12 (every SR scale) or 32 (projections)."""
    ops: list[tuple[str, LinearOperator, tuple[int, int]]] = [("denoise", Denoise(), (20, 28))]
    ops += [(f"sr{s}", Downsample(s), (24, 36)) for s in (2, 3, 4)]
    ops += [("blur-gauss", Blur.gaussian(1.5), (24, 30)), ("blur-skew", Blur(SKEW_KERNEL), (24, 30))]
    ops += [(f"cs-{k}-{r}", RandomProjection(k, r, seed=3, batch=2), (64, 96)) for k in ENSEMBLES for r in (0.1, 0.5, 1.0)]
    return ops


OPERATORS = _operators()
IDS = [name for name, _, _ in OPERATORS]


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(("name", "op", "hw"), OPERATORS, ids=IDS)
def test_adjoint_matches_forward_in_inner_product(name: str, op: LinearOperator, hw: tuple[int, int], channels: int) -> None:
    x = _rand(2, channels, *hw, seed=1)
    ax = op.A(x)
    y = _rand(*ax.shape, seed=2)
    lhs = (ax * y).sum()
    rhs = (x * op.A_adjoint(y)).sum()
    assert abs(lhs - rhs) <= 1e-5 * max(abs(lhs), abs(rhs)), (lhs.item(), rhs.item())


@pytest.mark.parametrize(("name", "op", "hw"), OPERATORS, ids=IDS)
def test_closed_form_adjoint_equals_autograd_adjoint(name: str, op: LinearOperator, hw: tuple[int, int]) -> None:
    y = _rand(*op.A(torch.zeros(2, 3, *hw, dtype=torch.float64)).shape, seed=3)
    torch.testing.assert_close(op.A_adjoint(y), op.A_adjoint_autograd(y), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("name", "op", "hw"), OPERATORS, ids=IDS)
def test_grad_is_autograd_gradient_of_gaussian_log_likelihood(name: str, op: LinearOperator, hw: tuple[int, int]) -> None:
    x = _rand(2, 3, *hw, seed=4).requires_grad_(True)
    y = op.A(_rand(2, 3, *hw, seed=5)).detach()
    sigma = torch.tensor([0.1, 0.3], dtype=torch.float64)  # per sample
    eps = 1e-3
    resid = (y - op.A(x)).flatten(1)
    loglik = -(resid**2).sum(1) / (2 * (sigma**2 + eps))
    (expected,) = torch.autograd.grad(loglik.sum(), x)
    torch.testing.assert_close(op.grad(x.detach(), y, sigma, eps), expected, rtol=1e-9, atol=1e-9)


def test_denoise_grad_is_autograd_gradient_of_the_clipped_likelihood() -> None:
    """A noisy photo is clipped to [0, 1]: its 0s and 1s say only that x + n was beyond the bound
    (log Phi), the other pixels are Gaussian observations."""
    x = (0.5 + 0.6 * _rand(2, 3, 20, 28, seed=6)).clamp(0.01, 0.99).requires_grad_(True)
    sigma = torch.tensor([0.1, 0.3], dtype=torch.float64)
    eps = 1e-3
    y = (x.detach() + _bcast4(sigma) * _rand(2, 3, 20, 28, seed=7)).clamp(0, 1)
    assert 0.05 < float((y == 0).double().mean()) and 0.05 < float((y == 1).double().mean())
    s = _bcast4((sigma**2 + eps).sqrt())
    loglik = torch.where(y == 0, torch.special.log_ndtr(-x / s),
                         torch.where(y == 1, torch.special.log_ndtr((x - 1) / s), -0.5 * ((y - x) / s) ** 2))
    (expected,) = torch.autograd.grad(loglik.sum(), x)
    torch.testing.assert_close(Denoise().grad(x.detach(), y, sigma, eps), expected, rtol=1e-9, atol=1e-9)


def _bcast4(v: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, 1, 1, 1)


def test_censored_residual_limits_and_finite_backward() -> None:
    ax = torch.tensor([-0.5, 0.0, 0.3, 0.9, 1.0, 1.5], requires_grad=True)
    zeros, ones = torch.zeros(6), torch.ones(6)
    # no noise: y - Ax, or 0 where Ax is already beyond the bound the pixel was clipped at
    torch.testing.assert_close(censored_residual(zeros, ax, torch.tensor(0.0)), -ax.detach().clamp_min(0))
    # far beyond the bound it was clipped at, a pixel no longer pulls: ~0; far inside: ~ y - Ax
    r = censored_residual(zeros, ax, torch.tensor(0.01**2)).detach()
    assert abs(float(r[0])) < 1e-6 and abs(float(r[3]) + 0.9) < 1e-3
    r = censored_residual(ones, ax, torch.tensor(0.01**2)).detach()
    assert abs(float(r[5])) < 1e-6 and abs(float(r[2]) - 0.7) < 1e-3
    # values not at a bound (unclipped float measurements) keep the plain residual
    y = torch.tensor([-0.2, 0.1, 0.5, 1.2, 0.7, 0.3])
    torch.testing.assert_close(censored_residual(y, ax, torch.tensor(0.04)), y - ax.detach())
    # every branch stays finite in backward, wherever Ax is
    for var in (0.0, 1e-12, 0.04, 4.0):
        (g,) = torch.autograd.grad(censored_residual(torch.cat([zeros[:3], ones[:3]]), ax, torch.tensor(var)).sum(), ax)
        assert torch.isfinite(g).all(), var


def test_denoising_and_deblurring_treat_their_measurement_as_clipped() -> None:
    """Photos (noisy or blurred) come clipped to [0, 1]; LR files (sigma ~0) and projections do not."""
    assert Denoise.censored and Blur.censored
    assert not any(type(op).censored for _, op, _ in OPERATORS if not isinstance(op, Denoise | Blur))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(("name", "op", "hw"), OPERATORS, ids=IDS)
def test_shapes_round_trip_for_gray_rgb_and_batch(name: str, op: LinearOperator, hw: tuple[int, int], channels: int) -> None:
    x = torch.rand(2, channels, *hw)
    y = op.A(x)
    k = op.scale
    assert y.shape[:2] == (2, channels) and y.shape[-2:] == (hw[0] // k, hw[1] // k)
    assert op.x_shape(y.shape) == tuple(x.shape)
    assert op.A_adjoint(y).shape == x.shape
    assert op.init(y).shape == x.shape
    assert op.grad(x, y, 0.1, 1e-4).shape == x.shape


@pytest.mark.parametrize(("name", "op", "hw"), OPERATORS, ids=IDS)
def test_the_transformed_operator_measures_the_transformed_image_alike(name: str, op: LinearOperator,
                                                                       hw: tuple[int, int]) -> None:
    """The self-ensemble's premise: A_g(g x) = g (A x) for all 8 symmetries of the square (the
    skewed kernel turns with the image; MATLAB bicubic is symmetric); projections have no A_g."""
    x = _rand(2, 3, *hw)
    for g in range(DIHEDRAL):
        op_g = op.dihedral(g)
        if name.startswith("cs"):
            assert op_g is None
            continue
        torch.testing.assert_close(op_g.A(dihedral(x, g)), dihedral(op.A(x), g), rtol=0, atol=1e-6)


def test_the_dihedral_transforms_are_the_eight_distinct_symmetries_and_invert() -> None:
    x = _rand(1, 1, 3, 3)
    images = [dihedral(x, g) for g in range(DIHEDRAL)]
    assert len({tuple(im.flatten().tolist()) for im in images}) == DIHEDRAL
    assert all(torch.equal(dihedral_inverse(im, g), x) for g, im in enumerate(images))
    assert torch.equal(dihedral(x, 3), x.rot90(2, (-2, -1)))  # both flips: a half turn
    assert dihedral(_rand(1, 1, 3, 5), 4).shape[-2:] == (5, 3)
    assert Blur(SKEW_KERNEL).dihedral(5).kernel.shape == (5, 3)


def test_projection_measurement_holds_m_values_per_block() -> None:
    op = RandomProjection("gaussian", 0.25, patch=32)
    assert op.A(torch.rand(1, 3, 64, 96)).shape == (1, 3, 256, 2, 3)


def test_measure_is_reproducible_from_the_generator() -> None:
    x = torch.rand(2, 1, 24, 24)
    op = Downsample(2)
    a = op.measure(x, 0.1, torch.Generator().manual_seed(11))
    b = op.measure(x, 0.1, torch.Generator().manual_seed(11))
    c = op.measure(x, 0.1, torch.Generator().manual_seed(12))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)


def test_measure_adds_noise_of_the_given_std_per_sample() -> None:
    x = torch.zeros(2, 1, 128, 128, dtype=torch.float64)
    y = Denoise().measure(x, [0.0, 0.2], torch.Generator().manual_seed(0))
    assert torch.equal(y[0], x[0])  # sigma 0: exactly A x
    assert abs(y[1].std().item() - 0.2) < 0.01


def test_as_sigma_rejects_negative_and_mismatched_sigma() -> None:
    like = torch.zeros(1)
    with pytest.raises(ValueError, match=">= 0"):
        as_sigma(-0.1, 1, like)
    with pytest.raises(ValueError, match="batch of 3"):
        as_sigma([0.1, 0.2], 3, like)


@pytest.mark.parametrize("kind", ENSEMBLES)
def test_projection_matrix_is_reproducible_from_the_seed(kind: str) -> None:
    a = RandomProjection(kind, 0.25, seed=5).matrix
    b = RandomProjection(kind, 0.25, seed=5).matrix
    c = RandomProjection(kind, 0.25, seed=6).matrix
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_projection_batch_holds_one_distinct_matrix_per_sample() -> None:
    op = RandomProjection("gaussian", 0.1, seed=0, batch=3)
    assert op.matrix.shape == (3, 102, 1024)
    assert not torch.equal(op.matrix[0], op.matrix[1])
    with pytest.raises(ValueError, match="3 matrices for a batch of 2"):
        op.A(torch.rand(2, 1, 32, 32))


@pytest.mark.parametrize(("ratio", "m"), [(1.0, 1024), (0.5, 512), (0.25, 256), (0.125, 128), (0.1, 102), (0.01, 10), (1e-5, 1)])
@pytest.mark.parametrize("kind", ENSEMBLES)
def test_projection_takes_round_ratio_times_1024_measurements_per_patch(kind: str, ratio: float, m: int) -> None:
    op = RandomProjection(kind, ratio)
    assert op.m == m and op.matrix.shape == (1, m, 1024)


def test_gaussian_and_binary_entries_follow_their_ensembles() -> None:
    n = 1024
    g = RandomProjection("gaussian", 0.5, seed=1).matrix[0].double() * math.sqrt(n)  # rows scaled by 1/sqrt(n)
    assert abs(g.mean().item()) < 0.01 and abs(g.std().item() - 1) < 0.01
    b = RandomProjection("binary", 0.5, seed=1).matrix[0].double() * math.sqrt(n)
    assert set(b.unique().tolist()) == {-1.0, 1.0}
    assert abs((b > 0).double().mean().item() - 0.5) < 0.01


@pytest.mark.parametrize("ratio", [1 / 1024, 2 / 1024, 0.1, 0.25, 0.5, 0.75, 1021 / 1024, 1022 / 1024, 1.0])
def test_fourier_rows_are_orthonormal(ratio: float) -> None:
    """Even m used to add the Re row of a frequency drawn again at random, so it could repeat one
    already taken (at ratio 0.5, seed 3: rank 511 of 512); m above 1021 was refused."""
    for seed in (0, 3):
        mat = RandomProjection("fourier", ratio, seed=seed).matrix[0].double()
        torch.testing.assert_close(mat @ mat.T, torch.eye(mat.shape[0], dtype=torch.float64), rtol=0, atol=1e-6)


def test_fourier_rows_are_dft_rows_as_real_pairs() -> None:
    """Each row is Re or Im of one unitary DFT row: its spectrum sits on one frequency and its conjugate."""
    p = 32
    mat = RandomProjection("fourier", 0.05, seed=2).matrix[0].double().reshape(-1, p, p)
    spectrum = torch.fft.fft2(mat, norm="ortho").abs()
    support = (spectrum > 1e-6).flatten(1).sum(1)
    assert support[0] == 1  # the DC row
    assert bool((support[1:] <= 2).all())


@pytest.mark.parametrize("ratio", [0.1, 0.5])
@pytest.mark.parametrize("kind", ENSEMBLES)
def test_projection_init_is_consistent_with_noiseless_measurement(kind: str, ratio: float) -> None:
    op = RandomProjection(kind, ratio, seed=1, batch=2)
    y = op.A(torch.rand(2, 3, 64, 32))
    x0 = op.init(y)
    torch.testing.assert_close(op.A(x0), y, rtol=1e-4, atol=1e-4)
    # minimum norm: x0 lies in the row space of M, so projecting onto it (pinv(M) M) leaves it unchanged
    m = op.matrix.double()
    row_space = torch.linalg.pinv(m) @ m
    blocks = op._patches(x0.double())
    torch.testing.assert_close(torch.einsum("bnk,bchwk->bchwn", row_space, blocks), blocks, rtol=1e-5, atol=1e-5)


def test_projection_init_solves_a_training_batch_of_matrices() -> None:
    """A training batch (one matrix per sample, ratio 1/2) at 2 threads: oneMKL's batched LU solve
    failed here ("DLASWP", pivots < 1); the init must agree with each sample's own pinv."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        op = RandomProjection("gaussian", 0.5, seed=3, batch=8)
        y = op.A(torch.rand(8, 1, 32, 32))
        x0 = op.init(y)
    finally:
        torch.set_num_threads(threads)
    pinv = torch.linalg.pinv(op.matrix.double())
    expect = torch.einsum("bnm,bcmhw->bchwn", pinv, y.double())
    torch.testing.assert_close(op._patches(x0.double()), expect, rtol=1e-4, atol=1e-4)


def test_denoise_init_is_the_measurement() -> None:
    y = torch.rand(1, 3, 8, 8)
    assert torch.equal(Denoise().init(y), y)


def test_blur_is_a_true_convolution_with_the_kernel() -> None:
    x = torch.zeros(1, 1, 9, 11, dtype=torch.float64)
    x[0, 0, 4, 5] = 1  # an impulse away from the border reproduces the kernel itself
    out = Blur(SKEW_KERNEL).A(x)[0, 0, 3:6, 3:8]
    torch.testing.assert_close(out, SKEW_KERNEL.double(), rtol=0, atol=1e-7)


def test_gaussian_kernel_is_normalised_symmetric_and_covers_three_sigma() -> None:
    k = gaussian_kernel(1.5)
    assert k.shape == (11, 11)
    assert abs(k.sum().item() - 1) < 1e-6
    torch.testing.assert_close(k, k.flip(0))
    torch.testing.assert_close(k, k.T)


def _spread(k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centroid (row, col) and per-axis variance of a kernel."""
    r = torch.arange(k.shape[0], dtype=torch.float64) - (k.shape[0] - 1) / 2
    c = torch.arange(k.shape[1], dtype=torch.float64) - (k.shape[1] - 1) / 2
    k = k.double()
    mean = torch.stack([(k.sum(1) * r).sum(), (k.sum(0) * c).sum()])
    var = torch.stack([(k.sum(1) * (r - mean[0]) ** 2).sum(), (k.sum(0) * (c - mean[1]) ** 2).sum()])
    return mean, var


def test_defocus_kernel_is_a_normalised_disc_of_the_radius() -> None:
    for radius in (1.0, 2.5, 6.0):
        k = defocus_kernel(radius, size=19)
        assert k.shape == (19, 19) and abs(k.sum().item() - 1) < 1e-6 and (k >= 0).all()
        torch.testing.assert_close(k, k.flip(0))
        torch.testing.assert_close(k, k.T)
        mean, var = _spread(k)
        assert mean.abs().max() < 1e-6
        if radius > 2:  # a uniform disc: r^2 / 4 per axis (pixels blur a smaller one more)
            assert var[0].item() == pytest.approx(radius**2 / 4, rel=0.05)
        rr = (torch.arange(19.0) - 9) ** 2
        assert k[(rr[:, None] + rr[None, :]).sqrt() > radius + 1].sum() == 0  # nothing beyond the edge pixels
    assert defocus_kernel(2.5).shape == (7, 7)
    assert not torch.equal(defocus_kernel(2.0, 9), defocus_kernel(2.3, 9))  # partial edge pixels: radii between pixels differ


def test_motion_kernel_is_a_normalised_centred_path_of_the_length() -> None:
    g = torch.Generator().manual_seed(0)
    kernels = [motion_kernel(length, 19, g) for length in (3.0, 9.0, 18.0, 60.0) for _ in range(5)]
    for k in kernels:
        assert k.shape == (19, 19) and abs(k.sum().item() - 1) < 1e-6 and (k >= 0).all()
        assert _spread(k)[0].abs().max() < 1e-6  # centroid on the centre pixel: the blur shifts nothing
        assert k[0].sum() == k[-1].sum() == k[:, 0].sum() == k[:, -1].sum() == 0  # fits, with a margin
    spread = [float(_spread(k)[1].sum()) for k in kernels]
    assert max(spread[:5]) < min(spread[5:10]) and np.mean(spread[5:10]) < np.mean(spread[10:15])  # longer, wider
    assert len({tuple(k.flatten().tolist()) for k in kernels[5:10]}) == 5  # random paths
    a, b = (motion_kernel(9.0, 15, torch.Generator().manual_seed(3)) for _ in range(2))
    assert torch.equal(a, b)  # the generator alone decides the path
    for bad in (0.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="> 0 and finite"):
            motion_kernel(bad, 9, g)
        with pytest.raises(ValueError, match="> 0 and finite"):
            defocus_kernel(bad)
    for size in (1, 2, 8):
        with pytest.raises(ValueError, match="odd and at least 3"):
            motion_kernel(3.0, size, g)
    assert defocus_kernel(0.05, 3)[1, 1] == 1  # a disc finer than a pixel: no blur, not 0/0


def test_load_kernel_from_npy_is_normalised(tmp_path) -> None:
    path = tmp_path / "k.npy"
    np.save(path, np.ones((3, 5)))
    k = load_kernel(path)
    assert k.shape == (3, 5) and abs(k.sum().item() - 1) < 1e-6
    for bad in (-np.ones((3, 3)), np.full((3, 3), np.nan), np.array([[1.0, np.inf, 1.0]])):
        np.save(path, bad)
        with pytest.raises(ValueError, match="finite non-negative"):
            load_kernel(path)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: RandomProjection("gaussian", 0), "ratio"),
        (lambda: RandomProjection("gaussian", 1.5), "ratio"),
        (lambda: RandomProjection("bernoulli", 0.5), "unknown ensemble"),
        (lambda: RandomProjection("gaussian", 0.5).A(torch.rand(1, 1, 48, 64)), "multiples of 32"),
        (lambda: Blur(torch.ones(4, 3)), "odd"),
        (lambda: Blur(torch.ones(3)), "2-D"),
        (lambda: Blur.gaussian(0), "> 0"),
        (lambda: Downsample(0), "positive integer"),
        (lambda: Downsample(2.5), "positive integer"),
        (lambda: Downsample(3).A(torch.rand(1, 1, 24, 25)), "multiples of the scale 3"),
    ],
    ids=["ratio-0", "ratio-1.5", "unknown-kind", "not-multiple-of-32", "even-kernel", "1d-kernel", "blur-sigma-0", "scale-0",
         "scale-2.5", "sr-size-not-multiple"],
)
def test_bad_operator_input_raises_value_error(make, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()
