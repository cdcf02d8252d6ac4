"""Linear forward operators `y = A x + n` (deepinv-style physics).

Every operator maps an image batch `x` of shape (B, C, H, W) to a measurement whose last two
dimensions are spatial and `scale` times smaller than the image's (scale 1 for denoising and
deblurring, s for super-resolution, the patch size for random projections). That one rule lets
the inference code tile any operator the same way.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import resize
from .errors import InputError, os_reason

SigmaLike = float | Sequence[float] | torch.Tensor


def as_sigma(sigma: SigmaLike, batch: int, like: torch.Tensor) -> torch.Tensor:
    """Noise std per sample, shape (B,), on `like`'s device and dtype."""
    s = torch.as_tensor(sigma, dtype=like.dtype, device=like.device).reshape(-1)
    if s.numel() == 1:
        s = s.expand(batch)
    if s.numel() != batch:
        raise ValueError(f"sigma has {s.numel()} values for a batch of {batch}")
    if bool((s < 0).any()):
        raise InputError("sigma must be >= 0")
    return s


def _bcast(v: torch.Tensor, ndim: int) -> torch.Tensor:
    return v.reshape(-1, *([1] * (ndim - 1)))


_SQRT_HALF_PI = math.sqrt(math.pi / 2)


#: the symmetries of the square (the dihedral group D4), g = 0..7: bit 0 flips left-right, bit 1
#: flips up-down, bit 2 then transposes. The first 2 and 4 keep the image's shape; 8 is the group.
DIHEDRAL = 8


def dihedral(x: torch.Tensor, g: int) -> torch.Tensor:
    """Transform g of the last two (spatial) dimensions."""
    if g & 1:
        x = x.flip(-1)
    if g & 2:
        x = x.flip(-2)
    return x.transpose(-2, -1) if g & 4 else x


def dihedral_inverse(x: torch.Tensor, g: int) -> torch.Tensor:
    """Undoes `dihedral(x, g)`."""
    if g & 4:
        x = x.transpose(-2, -1)
    if g & 2:
        x = x.flip(-2)
    return x.flip(-1) if g & 1 else x


def censored_residual(y: torch.Tensor, ax: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """var * d/d(Ax) log p(y | Ax) for y = clip(Ax + n, 0, 1), n ~ N(0, var): where 0 < y < 1
    the Gaussian residual y - Ax; where y is 0 (or 1) the measurement says only that Ax + n was
    at or below 0 (at or above 1): the score of that censored (Tobit) likelihood, log Phi(-Ax / s)
    (log Phi((Ax - 1) / s)), written with erfcx so that it stays finite for any s > 0.
    It tends to y - Ax when Ax is far inside the range and to 0 when Ax is beyond the bound:
    a clipped pixel no longer pulls a dark or bright estimate towards the clip value.
    Unclipped float measurements (exact 0 or 1 almost never occur) get the plain residual."""
    s = var.sqrt().clamp_min(1e-12)

    def score(t: torch.Tensor) -> torch.Tensor:
        # s * phi(t) / Phi(-t) = s / (sqrt(pi/2) erfcx(t / sqrt 2)), t = Ax's distance inside the
        # bound in stds; 5 stds beyond it the score is ~1e-6 s, and the clamp keeps erfcx and its
        # derivative finite (torch.where's backward multiplies the discarded branch by 0)
        return s / (_SQRT_HALF_PI * torch.special.erfcx(t.clamp_min(-5.0) * math.sqrt(0.5)))

    return torch.where(y == 0, -score(ax / s), torch.where(y == 1, score((1 - ax) / s), y - ax))


class LinearOperator:
    """A linear forward model. Subclasses define `A`, `x_shape` and, where cheap, a closed-form
    `A_adjoint`; otherwise the adjoint comes from autograd (`A_adjoint_autograd`)."""

    #: image pixels per measurement pixel along each spatial axis
    scale: int = 1
    name: str = "operator"
    #: how far (image pixels) A reaches beyond a measurement pixel's own footprint; None =
    #: unknown. Tiling uses it to size an overlap that makes tiled results exact.
    reach: int | None = None
    #: the measurement is an image clipped to [0, 1], as a file stores it (see `censored_residual`)
    censored: bool = False

    def grad_depth(self, depth: int) -> int | None:
        """How deep (image pixels from a tile's cut edge) `grad` is wrong when x is wrong up to
        `depth`: A spreads `reach`, snaps to the measurement grid, and A^T spreads `reach` again."""
        if self.reach is None:
            return None
        k = self.scale
        return -(-(depth + self.reach) // k) * k + self.reach

    def init_depth(self) -> int | None:
        """The same for `init(y)`; bounded like A^T y (bicubic upscaling reaches less)."""
        return self.grad_depth(0)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def x_shape(self, y_shape: torch.Size) -> tuple[int, ...]:
        """Shape of the image that produced a measurement of shape `y_shape`."""
        b, c = y_shape[0], y_shape[1]
        return (b, c, y_shape[-2] * self.scale, y_shape[-1] * self.scale)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.A_adjoint_autograd(y)

    def A_adjoint_autograd(self, y: torch.Tensor) -> torch.Tensor:
        """A^T y as the vector-Jacobian product of the linear map A (exact for any linear A)."""
        x0 = torch.zeros(self.x_shape(y.shape), dtype=y.dtype, device=y.device, requires_grad=True)
        with torch.enable_grad():
            out = self.A(x0)
            (g,) = torch.autograd.grad(out, x0, y, create_graph=y.requires_grad)
        return g

    def grad(self, x: torch.Tensor, y: torch.Tensor, sigma: SigmaLike, eps: torch.Tensor | float = 0.0) -> torch.Tensor:
        """Gradient of the log-likelihood: A^T (y - A x) / (sigma^2 + eps) for Gaussian noise; with
        `censored`, measurements at exactly 0 or 1 enter through `censored_residual` instead."""
        if not isinstance(sigma, torch.Tensor):  # a tensor (from unroll) is used as is: no check, no sync
            sigma = as_sigma(sigma, x.shape[0], x)
        var = _bcast(sigma**2 + eps, x.ndim)
        ax = self.A(x)
        residual = censored_residual(y, ax, var) if self.censored else y - ax
        return self.A_adjoint(residual) / var

    def measure(self, x: torch.Tensor, sigma: SigmaLike, generator: torch.Generator | None = None) -> torch.Tensor:
        """Simulate y = A x + n with n ~ N(0, sigma^2), drawing noise from `generator`."""
        y = self.A(x)
        s = as_sigma(sigma, x.shape[0], y)
        noise = torch.randn(y.shape, generator=generator, dtype=y.dtype, device="cpu" if generator is None else generator.device)
        return y + _bcast(s, y.ndim) * noise.to(y.device)

    def init(self, y: torch.Tensor) -> torch.Tensor:
        """A sensible start estimate x_0 in image space."""
        return self.A_adjoint(y)

    def to(self, device: torch.device | str) -> LinearOperator:
        return self

    def dihedral(self, g: int) -> LinearOperator | None:
        """The operator that measures transformed images as this one measures the originals:
        A_g(dihedral(x, g)) == dihedral(A x, g). What the self-ensemble restores a flipped or
        transposed measurement with; None where there is none (the default)."""
        return None

    def describe(self) -> dict:
        return {"operator": self.name}


class Denoise(LinearOperator):
    """Identity: y = x + n."""

    name = "denoise"
    reach = 0
    censored = True  # a noisy photo comes clipped to [0, 1]

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def init(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def dihedral(self, g: int) -> Denoise:
        return self


class Downsample(LinearOperator):
    """MATLAB `imresize(x, 1/scale, 'bicubic')`: antialiased Keys cubic (a=-0.5), replicated border."""

    name = "superres"

    def __init__(self, scale: int):
        if int(scale) != scale or scale < 1:
            raise InputError(f"scale must be a positive integer, got {scale}")
        self.scale = int(scale)
        # taps with |centre - i| < 2 s (the kernel is 0 at 2 s): (3 s + 1) / 2 - 1 pixels past the block
        self.reach = (3 * self.scale + 2) // 2 - 1

    def A(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] % self.scale or x.shape[-1] % self.scale:
            # otherwise y would be ceil(H / s) high and x_shape(y) would not give back x's shape
            sides = tuple(x.shape[-2:])
            raise InputError(f"image sides {sides} must be multiples of the scale {self.scale}; crop the image first")
        return resize.imresize(x, 1.0 / self.scale)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        h, w = y.shape[-2] * self.scale, y.shape[-1] * self.scale
        return resize.imresize_adjoint(y, 1.0 / self.scale, (h, w))

    def init(self, y: torch.Tensor) -> torch.Tensor:
        return resize.imresize(y, float(self.scale))  # MATLAB bicubic upscale

    def dihedral(self, g: int) -> Downsample:
        # MATLAB's sampling grid is symmetric about the image centre (sides are multiples of the
        # scale), its border replicated, its kernel symmetric and the same along both axes
        return self

    def describe(self) -> dict:
        return {"operator": self.name, "scale": self.scale}


def gaussian_kernel(sigma: float, size: int | None = None) -> torch.Tensor:
    """Normalised 2-D Gaussian kernel; default size covers +-3 sigma."""
    if sigma <= 0:
        raise InputError("blur sigma must be > 0")
    size = size or 2 * math.ceil(3 * sigma) + 1
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    k = torch.outer(g, g)
    return (k / k.sum()).float()


def defocus_kernel(radius: float, size: int | None = None) -> torch.Tensor:
    """Normalised out-of-focus blur: a uniform disc of `radius` pixels, its edge pixels weighted by
    the share of them inside (8x8 supersampling), so that radii between whole pixels differ."""
    if not 0 < radius < math.inf:
        raise InputError("defocus radius must be > 0 and finite")
    size = size or 2 * math.ceil(radius) + 1
    _check_kernel_size(size)
    sub = (torch.arange(size * 8, dtype=torch.float64) + 0.5) / 8 - size / 2
    inside = (sub[:, None] ** 2 + sub[None, :] ** 2 <= radius**2).double()
    k = inside.reshape(size, 8, size, 8).mean((1, 3))
    if k.sum() == 0:  # a disc between the sub-samples (radius < 0.09 px) blurs nothing
        k[size // 2, size // 2] = 1.0
    return (k / k.sum()).float()


def _check_kernel_size(size: int) -> None:
    if size < 3 or size % 2 == 0:
        raise InputError(f"kernel size must be odd and at least 3, got {size}")


def motion_kernel(length: float, size: int, generator: torch.Generator) -> torch.Tensor:
    """Normalised camera-shake blur: a random smooth path of `length` pixels (a walk whose heading
    drifts and sometimes turns sharply, after Boracchi & Foi 2012), drawn into a `size` x `size`
    grid by bilinear splatting. The path's centroid sits on the centre pixel, so the blur does not
    shift the image; a path too long for the grid is scaled down to fit."""
    if not 0 < length < math.inf:
        raise InputError("motion length must be > 0 and finite")
    _check_kernel_size(size)
    n = 64
    turn = torch.randn(n, generator=generator, dtype=torch.float64) * 0.15  # gentle drift of the heading
    jerk = torch.rand(n, generator=generator, dtype=torch.float64) < 0.03  # now and then a sharp turn
    turn = turn + jerk * (torch.rand(n, generator=generator, dtype=torch.float64) - 0.5) * 2 * math.pi
    heading = float(torch.rand(1, generator=generator, dtype=torch.float64)) * 2 * math.pi + torch.cumsum(turn, 0)
    step = torch.stack([torch.cos(heading), torch.sin(heading)], 1) * (length / n)
    path = torch.cat([torch.zeros(1, 2, dtype=torch.float64), torch.cumsum(step, 0)])
    path = path - path.mean(0)
    reach = (size - 1) / 2 - 1  # the splat needs < (size - 1) / 2; the outer ring stays empty
    path = path * min(1.0, reach / max(float(path.abs().max()), 1e-12)) + (size - 1) / 2
    k = torch.zeros(size, size, dtype=torch.float64)
    lo = path.floor()
    frac = path - lo
    for dy in (0, 1):
        for dx in (0, 1):
            w = (frac[:, 0] if dy else 1 - frac[:, 0]) * (frac[:, 1] if dx else 1 - frac[:, 1])
            k.index_put_((lo[:, 0].long() + dy, lo[:, 1].long() + dx), w, accumulate=True)
    return (k / k.sum()).float()


def load_kernel(path: str | Path) -> torch.Tensor:
    """A blur kernel from an image or .npy file, normalised to sum 1."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            k = np.load(path).astype(np.float64)
        except (OSError, ValueError, TypeError, AttributeError) as e:  # missing, not .npy, pickled, an .npz
            raise InputError(f"{path}: not a readable .npy blur kernel ({os_reason(e)})") from None
    else:
        from .io import read_image

        k = read_image(path).data.astype(np.float64)
        k = k.mean(axis=2) if k.ndim == 3 else k
    if k.ndim != 2 or not np.isfinite(k).all() or k.sum() <= 0 or (k < 0).any():
        raise InputError(f"{path}: a blur kernel must be a 2-D finite non-negative array with a positive sum")
    return torch.from_numpy(k / k.sum()).float()


class Blur(LinearOperator):
    """Convolution with a kernel, same output size, reflected borders (natural for real photos).

    The reflect padding has no cheap closed-form adjoint, so A^T comes from autograd."""

    name = "deblur"
    # a blurred photo comes clipped to [0, 1] too (scripts/check_clipped.py --blur 2: +0.04/+0.23 dB at
    # sigma 5/15 on saturated training images, +-0.00 on held-out ones)
    censored = True

    def __init__(self, kernel: torch.Tensor | np.ndarray):
        k = torch.as_tensor(kernel, dtype=torch.float32)
        if k.ndim != 2 or k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0:
            raise InputError("blur kernel must be 2-D with odd sides")
        self.kernel = k
        self.reach = max(k.shape) // 2

    @classmethod
    def gaussian(cls, sigma: float) -> Blur:
        op = cls(gaussian_kernel(sigma))
        op.blur_sigma = sigma
        return op

    def A(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        kh, kw = self.kernel.shape
        pad = (kw // 2, kw // 2, kh // 2, kh // 2)
        mode = "reflect" if min(x.shape[-2:]) > max(kh, kw) // 2 else "replicate"
        w = self.kernel.to(x).flip(0, 1).expand(c, 1, kh, kw)  # flip: true convolution
        return F.conv2d(F.pad(x, pad, mode=mode), w, groups=c)

    def to(self, device: torch.device | str) -> Blur:
        self.kernel = self.kernel.to(device)
        return self

    def dihedral(self, g: int) -> Blur:
        """The same blur of the transformed scene: the kernel transformed alike (reflected
        borders are symmetric too)."""
        op = copy.copy(self)
        op.kernel = dihedral(self.kernel, g).contiguous()
        return op

    def describe(self) -> dict:
        d = {"operator": self.name, "kernel_size": list(self.kernel.shape)}
        if hasattr(self, "blur_sigma"):
            d["blur_sigma"] = self.blur_sigma
        return d


ENSEMBLES = ("gaussian", "binary", "fourier")


def projection_matrix(kind: str, m: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """An (m, n) sensing matrix. Rows are scaled to about unit norm so that A x has the
    scale of a pixel and the noise sigma means the same across ensembles and ratios."""
    if kind == "gaussian":
        return torch.randn(m, n, generator=generator, dtype=torch.float64).div_(math.sqrt(n)).float()
    if kind == "binary":
        bits = torch.randint(0, 2, (m, n), generator=generator, dtype=torch.int64)
        return (bits * 2 - 1).double().div_(math.sqrt(n)).float()
    if kind == "fourier":
        return _fourier_rows(m, n, generator)
    raise InputError(f"unknown ensemble {kind!r}; choose from {', '.join(ENSEMBLES)}")


def _fourier_rows(m: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """Randomly chosen rows of the unitary 2-D DFT of a square patch, as real pairs.

    The DC row is always kept (it carries the mean); the rest are (Re, Im) pairs of frequencies
    drawn from one half-plane, so no pair is the conjugate (a linear copy) of another. An even m
    takes the Re row of one more frequency from the same permutation (never a repeat); m above
    2 * pairs + 1 adds the real Nyquist rows, so m = n is a full orthonormal basis."""
    p = int(round(math.sqrt(n)))
    k = torch.arange(p)
    ky, kx = torch.meshgrid(k, k, indexing="ij")
    flat = (ky * p + kx).reshape(-1)
    conj = (((-ky) % p) * p + ((-kx) % p)).reshape(-1)
    half = flat[flat < conj]  # one of each conjugate pair, self-conjugate ones excluded
    nyquist = flat[(flat == conj) & (flat > 0)]  # real rows besides DC
    if m > 1 + 2 * half.numel() + nyquist.numel():
        raise InputError(f"fourier ensemble supports at most {1 + 2 * half.numel() + nyquist.numel()} measurements per patch")
    pos = torch.arange(n, dtype=torch.float64)
    py, px = pos // p, pos % p

    def phase(freq: torch.Tensor) -> torch.Tensor:
        fy, fx = (freq // p).double(), (freq % p).double()
        return -2 * math.pi * (fy[:, None] * py[None, :] + fx[:, None] * px[None, :]) / p

    perm = half[torch.randperm(half.numel(), generator=generator)]
    pairs = min((m - 1) // 2, half.numel())
    ph = phase(perm[:pairs])
    # sqrt(2/n): each of Re/Im of a unitary DFT row has norm 1/sqrt(2)
    rows = [torch.full((1, n), 1 / math.sqrt(n), dtype=torch.float64)]
    rows += [torch.cos(ph) * math.sqrt(2 / n), torch.sin(ph) * math.sqrt(2 / n)]
    rest = m - 1 - 2 * pairs
    if rest and pairs < half.numel():  # an even m: the Re row of the next frequency
        rows.append(torch.cos(phase(perm[pairs : pairs + 1])) * math.sqrt(2 / n))
    elif rest:  # m near n: real (self-conjugate) rows, norm 1 at scale 1/sqrt(n)
        rows.append(torch.cos(phase(nyquist[:rest])) / math.sqrt(n))
    return torch.cat(rows)[:m].float()


class RandomProjection(LinearOperator):
    """Random projections of non-overlapping `patch` x `patch` blocks (compressed sensing).

    y has shape (B, C, m, H/patch, W/patch): m measurements of each block, one matrix per
    sample (shared by all blocks and channels of that sample), drawn from `seed`."""

    name = "cs"

    def __init__(self, kind: str, ratio: float, seed: int = 0, patch: int = 32, batch: int = 1):
        if kind not in ENSEMBLES:
            raise InputError(f"unknown ensemble {kind!r}; choose from {', '.join(ENSEMBLES)}")
        if not 0 < ratio <= 1:
            raise InputError(f"ratio must be in (0, 1], got {ratio}")
        self.kind, self.ratio, self.seed, self.patch = kind, float(ratio), int(seed), int(patch)
        self.scale = self.patch
        self.reach = 0  # blocks are independent and tiles are cut on block boundaries
        n = self.patch**2
        self.m = max(1, int(round(ratio * n)))
        g = torch.Generator().manual_seed(self.seed)
        self.matrix = torch.stack([projection_matrix(kind, self.m, n, g) for _ in range(batch)])

    def x_shape(self, y_shape: torch.Size) -> tuple[int, ...]:
        b, c, _, h, w = y_shape
        return (b, c, h * self.patch, w * self.patch)

    def _check(self, x: torch.Tensor) -> None:
        if x.shape[-2] % self.patch or x.shape[-1] % self.patch:
            raise InputError(f"image sides must be multiples of {self.patch} for random projections")
        if self.matrix.shape[0] not in (1, x.shape[0]):
            raise ValueError(f"operator holds {self.matrix.shape[0]} matrices for a batch of {x.shape[0]}")

    def _patches(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self.patch
        return x.reshape(b, c, h // p, p, w // p, p).permute(0, 1, 2, 4, 3, 5).reshape(b, c, h // p, w // p, p * p)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        mat = self.matrix.to(x)
        return torch.einsum("bmn,bchwn->bcmhw", mat.expand(x.shape[0], -1, -1), self._patches(x))

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        b, c, _, h, w = y.shape
        p = self.patch
        mat = self.matrix.to(y).expand(b, -1, -1)
        blocks = torch.einsum("bmn,bcmhw->bchwn", mat, y)
        return blocks.reshape(b, c, h, w, p, p).permute(0, 1, 2, 4, 3, 5).reshape(b, c, h * p, w * p)

    def init(self, y: torch.Tensor) -> torch.Tensor:
        """Minimum-norm least-squares estimate pinv(M) y = M^T (M M^T)^-1 y per block.

        Solving the small m x m system is far cheaper than an SVD-based pinv, which matters
        when training draws fresh matrices for every sample."""
        b, c, _, h, w = y.shape
        p = self.patch
        mat = self.matrix.double()
        gram = mat @ mat.transpose(-1, -2)
        gram = gram + 1e-8 * torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
        # the Gram matrix is SPD: Cholesky is cheaper than LU, and oneMKL's batched LU solve
        # fails outright for batches of m >= 256 rows at 2 threads (torch 2.13, "DLASWP")
        pinv = torch.cholesky_solve(mat, torch.linalg.cholesky(gram)).transpose(-1, -2).to(y).expand(b, -1, -1)
        blocks = torch.einsum("bnm,bcmhw->bchwn", pinv, y)
        return blocks.reshape(b, c, h, w, p, p).permute(0, 1, 2, 4, 3, 5).reshape(b, c, h * p, w * p)

    def to(self, device: torch.device | str) -> RandomProjection:
        self.matrix = self.matrix.to(device)
        return self

    def describe(self) -> dict:
        return {"operator": self.name, "ensemble": self.kind, "ratio": self.ratio, "seed": self.seed, "patch": self.patch}
