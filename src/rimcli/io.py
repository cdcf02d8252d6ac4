"""Image files in and out: PNG, JPEG, TIFF, BMP, WebP; 8 and 16 bit; gray, RGB, alpha.

Pillow reads and writes 8-bit images, but silently truncates 16-bit colour PNG and TIFF to
8 bits, so 16-bit PNGs go through pypng and TIFFs through tifffile. Arrays are HxW (gray) or
HxWxC with C = 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA), dtype uint8, uint16 or (TIFF
only) float32 in [0, 1]. CMYK images are converted to RGB (`Picture.notes` says so).
EXIF orientation is applied on reading; the ICC profile is kept; writes are atomic.
"""

from __future__ import annotations

import io
import os
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import RimError, os_reason

#: Pillow formats we read ("JPEG" also opens the multi-picture JPEGs (MPO) many cameras write)
_PIL_FORMATS = ["PNG", "JPEG", "BMP", "WEBP", "TIFF"]
#: other image extensions: an output path ending so is a file we cannot write, not a folder
OTHER_IMAGE_EXTENSIONS = (".gif", ".ico", ".icns", ".ppm", ".pgm", ".pbm", ".pnm", ".pcx", ".tga", ".dds", ".jp2",
                          ".j2k", ".jpx", ".heic", ".heif", ".avif", ".jxl", ".exr", ".hdr", ".psd", ".svg", ".pdf",
                          ".eps", ".raw", ".dng", ".cr2", ".nef", ".arw", ".xcf", ".qoi")
#: the image formats we read and write, by extension (the one list: folders are scanned for these
#: by `rim denoise` & co., training and the benchmark sets; `--ext` accepts them)
_FORMAT_OF = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff", ".bmp": "bmp", ".webp": "webp"}
EXTENSIONS = tuple(_FORMAT_OF)
_ORIENTATION = 0x0112
_ICC_TAG = 34675


class ImageError(RimError, ValueError):
    """An image (or any file `write_bytes` writes) that cannot be read or written: one line,
    shown to the user as is."""


@dataclass
class Picture:
    """A decoded image: colour channels, the untouched alpha, and what to keep when saving."""

    data: np.ndarray  # HxW (gray) or HxWx3 (RGB), uint8, uint16 or float32 in [0, 1]
    alpha: np.ndarray | None = None  # HxW, same dtype as data
    icc: bytes | None = None
    notes: list[str] = field(default_factory=list)  # conversions made on reading, to tell the user

    @property
    def bits(self) -> int:
        return self.data.dtype.itemsize * 8

    @property
    def channels(self) -> int:
        return 1 if self.data.ndim == 2 else self.data.shape[2]

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.data.shape[1], self.data.shape[0]

    @property
    def array(self) -> np.ndarray:
        """Colour and alpha as one array: HxW, HxWx2, HxWx3 or HxWx4."""
        if self.alpha is None:
            return self.data
        colour = self.data if self.data.ndim == 3 else self.data[..., None]
        return np.concatenate([colour, self.alpha[..., None]], axis=2)

    @property
    def mode(self) -> str:
        return {1: "gray", 3: "RGB"}[self.channels] + ("A" if self.alpha is not None else "")


def format_of(path: Path) -> str | None:
    return _FORMAT_OF.get(path.suffix.lower())


def looks_like_image_file(path: Path) -> bool:
    """True if `path` ends in an image extension, supported or not (`x.gif` is a file, not a folder)."""
    return path.suffix.lower() in EXTENSIONS + OTHER_IMAGE_EXTENSIONS


# --------------------------------------------------------------------------- reading


def read_image(path: str | Path) -> Picture:
    """Decode an image file; raises `ImageError` with a one-line reason on any failure."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image")
    try:
        with open(path, "rb") as f:
            head = f.read(32)
    except OSError as e:
        raise ImageError(f"{path}: cannot read ({os_reason(e)})") from None
    notes: list[str] = []
    try:
        if head[:4] in (b"II*\0", b"MM\0*"):
            arr, icc = _read_tiff(path, notes)
        else:
            arr, icc = _read_pillow(path, head, notes)
    except ImageError:
        raise
    except Exception as e:  # decoders raise many types (OSError, SyntaxError, png.FormatError ...)
        raise ImageError(f"{path}: not a readable image ({_reason(e)})") from None
    if arr.dtype.kind == "f":
        arr = _check_float(arr, path)
    pic = _split(arr, path)
    pic.icc = icc
    pic.notes = notes
    return pic


def _check_float(arr: np.ndarray, path: Path) -> np.ndarray:
    """Float samples are taken as [0, 1]; anything else would restore to garbage."""
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ImageError(f"{path}: float image has inf or NaN pixels")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0 or hi > 1:
        raise ImageError(f"{path}: float images must hold values in [0, 1], found [{lo:g}, {hi:g}]; rescale it first")
    return arr


def _reason(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _split(arr: np.ndarray, path: Path) -> Picture:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        return Picture(arr)
    if arr.ndim != 3 or arr.shape[2] not in (2, 3, 4):
        raise ImageError(f"{path}: unsupported image layout {arr.shape}")
    if arr.shape[2] == 2:
        return Picture(arr[..., 0], arr[..., 1])
    if arr.shape[2] == 4:
        return Picture(arr[..., :3], arr[..., 3])
    return Picture(arr)


def _read_pillow(path: Path, head: bytes, notes: list[str]) -> tuple[np.ndarray, bytes | None]:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        im = Image.open(path, formats=_PIL_FORMATS)
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image in a supported format (PNG, JPEG, TIFF, BMP, WebP)") from None
    with im:
        icc = im.info.get("icc_profile") or None
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[24] == 16:
            # 16-bit PNG: Pillow would drop colour images to 8 bits
            arr = _read_png16(path)
            return _orient(arr, im.getexif().get(_ORIENTATION, 1)), icc
        im = ImageOps.exif_transpose(im)
        if im.mode == "CMYK":
            notes.append("converted from CMYK to RGB" + (" with its ICC profile" if icc else ""))
            return np.asarray(_cmyk_to_rgb(im, icc)), None  # a CMYK profile does not describe RGB
        return _pillow_array(im, path), icc


def _cmyk_to_rgb(im, icc: bytes | None):
    """Through the embedded ICC profile to sRGB when there is one, else Pillow's plain formula."""
    if icc:
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except Exception:  # a broken profile or no littlecms: fall back, still RGB
            pass
    return im.convert("RGB")


def _pillow_array(im, path: Path) -> np.ndarray:
    """Pillow image -> array, converting only modes with an unambiguous RGB meaning."""
    mode = im.mode
    if mode == "P":  # palette: keep transparency as alpha
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
    elif mode == "1":
        im = im.convert("L")
    elif mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(im).astype(np.uint16)
    elif mode == "I":
        arr = np.asarray(im)
        if arr.min() < 0 or arr.max() > 65535:
            raise ImageError(f"{path}: unsupported 32-bit integer image")
        return arr.astype(np.uint16)
    elif mode == "F":  # 32-bit float (TIFF): checked for [0, 1] by the caller
        return np.asarray(im, dtype=np.float32)
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        raise ImageError(f"{path}: unsupported image mode {mode} (convert it to RGB or grayscale first)")
    return np.asarray(im)


def _read_png16(path: Path) -> np.ndarray:
    import png

    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    arr = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows])
    return arr.reshape(height, width, info["planes"])


def _read_tiff(path: Path, notes: list[str]) -> tuple[np.ndarray, bytes | None]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        icc_tag = page.tags.get(_ICC_TAG)
        icc = bytes(icc_tag.value) if icc_tag is not None else None
        orient_tag = page.tags.get(274)
        orientation = int(orient_tag.value) if orient_tag is not None else 1
        photometric = int(page.photometric)
        if photometric == 3 or page.bitspersample == 1 or (photometric == 5 and page.bitspersample == 8):
            return _read_pillow(path, b"", notes)  # palette, bilevel and CMYK: Pillow converts these well
        try:
            arr = page.asarray()
        except ValueError as e:
            single_float = page.sampleformat == 3 and page.bitspersample == 32 and page.samplesperpixel == 1
            if "imagecodecs" not in str(e) or (page.bitspersample > 8 and not single_float):
                raise
            return _read_pillow(path, b"", notes)  # e.g. LZW without imagecodecs: Pillow decodes these
        if page.planarconfig == 2 and arr.ndim == 3:  # separate planes: (S, H, W)
            arr = np.moveaxis(arr, 0, -1)
    if photometric not in (0, 1, 2):
        raise ImageError(f"{path}: unsupported TIFF colour space ({page.photometric.name}); convert it to RGB first")
    if arr.dtype not in (np.uint8, np.uint16) and arr.dtype.kind != "f":
        raise ImageError(f"{path}: unsupported TIFF sample type {arr.dtype} (8 or 16-bit integers, or floats in [0, 1])")
    if photometric == 0:  # min-is-white
        arr = 1 - _check_float(arr, path) if arr.dtype.kind == "f" else np.iinfo(arr.dtype).max - arr
    return _orient(arr, orientation), icc


def _orient(arr: np.ndarray, code: int) -> np.ndarray:
    """Apply an EXIF orientation (1..8) to an HxW(xC) array, as `ImageOps.exif_transpose`."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }
    op = ops.get(int(code))
    return np.ascontiguousarray(op(arr)) if op else arr


# --------------------------------------------------------------------------- writing


def write_image(path: str | Path, array: np.ndarray, *, icc: bytes | None = None, overwrite: bool = False) -> Path:
    """Write an HxW(xC) uint8/uint16 array (or float32, TIFF only, clipped to [0, 1]), format
    from the extension, atomically (temp file + rename, so a failure never leaves a partial
    file). Raises `ImageError`."""
    path = Path(path)
    arr = check_encodable(path, array)
    if path.exists() and not overwrite:
        raise ImageError(f"{path}: output exists (use --overwrite to replace it)")
    write_bytes(path, _encode(arr, format_of(path), icc), overwrite=overwrite)
    return path


def check_encodable(path: Path, array: np.ndarray) -> np.ndarray:
    """Raise `ImageError` if `path`'s format cannot hold `array` (16-bit JPEG, alpha in BMP, ...);
    only dtype and shape matter, so a caller can check before computing the real array.
    Returns the array as it will be encoded."""
    fmt = format_of(path)
    if fmt is None:
        kind = path.suffix or "files without an extension"
        raise ImageError(f"{path}: cannot write {kind}; use .png, .jpg, .tif, .bmp or .webp")
    return _check_writable(np.asarray(array), fmt, path)


def write_bytes(path: str | Path, data: bytes | str, *, overwrite: bool = True) -> None:
    """The one atomic writer (images, reports, plots, manifests, registries, weights, training
    checkpoints): `data` (text as UTF-8) goes to a hidden temp file beside `path`, which is then
    renamed into place, so a failure never leaves a partial file; the folder is created if
    missing. Raises `ImageError` with a one-line reason."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode()
    if not overwrite and path.exists():
        raise ImageError(f"{path}: output exists (use --overwrite to replace it)")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise ImageError(f"{folder}: cannot write there ({os_reason(e)})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise ImageError(f"{path}: cannot write ({os_reason(e)})") from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_writable(arr: np.ndarray, fmt: str, path: Path) -> np.ndarray:
    if arr.dtype.kind == "f":
        if fmt != "tiff":
            raise ImageError(f"{path}: float images can only be written as TIFF (use --ext tif)")
        arr = np.clip(arr, 0, 1).astype(np.float32)  # what we write, we can read back
    elif arr.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"{path}: can only write uint8, uint16 or float images, not {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (2, 3, 4)):
        raise ImageError(f"{path}: cannot write an image of shape {arr.shape}")
    if arr.dtype == np.uint16 and fmt not in ("png", "tiff"):
        raise ImageError(f"{path}: 16-bit images can only be written as PNG or TIFF (use --ext png or --ext tif)")
    has_alpha = arr.ndim == 3 and arr.shape[2] in (2, 4)
    if has_alpha and fmt in ("jpeg", "bmp"):  # Pillow's BMP reader drops alpha, so BMP counts as none
        raise ImageError(f"{path}: {fmt.upper()} cannot store an alpha channel (use --ext png)")
    if has_alpha and arr.shape[2] == 2 and fmt == "webp":  # WebP stores alpha only with RGB
        arr = arr[..., [0, 0, 0, 1]]
    return arr


def _encode(arr: np.ndarray, fmt: str, icc: bytes | None) -> bytes:
    if fmt == "tiff":
        return _encode_tiff(arr, icc)
    if arr.dtype == np.uint16:
        return _encode_png16(arr, icc)
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(arr))  # uint8: L, LA, RGB or RGBA from the shape
    opts: dict = {"icc_profile": icc} if icc and fmt != "bmp" else {}
    if fmt == "jpeg":
        opts["quality"] = 95
    if fmt == "webp":  # a restored image should not gain new compression artefacts
        opts.update(lossless=True, exact=True)  # exact: keep colour under fully transparent pixels
    buf = io.BytesIO()
    im.save(buf, format=fmt.upper(), **opts)
    return buf.getvalue()


def _encode_png16(arr: np.ndarray, icc: bytes | None) -> bytes:
    import png

    h, w = arr.shape[:2]
    planes = 1 if arr.ndim == 2 else arr.shape[2]
    writer = png.Writer(w, h, greyscale=planes <= 2, alpha=planes in (2, 4), bitdepth=16)
    buf = io.BytesIO()
    writer.write(buf, arr.reshape(h, w * planes))
    if not icc:
        return buf.getvalue()
    # pypng cannot write iCCP itself: insert the chunk right after IHDR, as the spec requires
    chunks = list(png.Reader(bytes=buf.getvalue()).chunks())
    chunks.insert(1, (b"iCCP", b"ICC profile\0\0" + zlib.compress(icc)))
    out = io.BytesIO()
    png.write_chunks(out, chunks)
    return out.getvalue()


def _encode_tiff(arr: np.ndarray, icc: bytes | None) -> bytes:
    import tifffile

    channels = 1 if arr.ndim == 2 else arr.shape[2]
    buf = io.BytesIO()
    tifffile.imwrite(
        buf,
        arr,
        photometric="rgb" if channels >= 3 else "minisblack",
        extrasamples=("unassalpha",) if channels in (2, 4) else None,
        compression="zlib",
        iccprofile=icc,
        metadata=None,
    )
    return buf.getvalue()


# --------------------------------------------------------------------------- conversions

#: 8-bit gray levels: the scale of 8-bit pixel values, and the unit of every noise std (sigma) the
#: user gives, whatever the file's bit depth; the engine works on [0, 1] (divide by this)
GRAY_LEVELS = 255.0



def to_float(arr: np.ndarray) -> np.ndarray:
    """uint8/uint16 -> float32 in [0, 1]; floats pass through as float32."""
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / GRAY_LEVELS
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    return arr.astype(np.float32)


def quantum(dtype: np.dtype) -> float:
    """The rounding step (0..1 scale) of an image saved as `dtype`; 0 for floats."""
    dtype = np.dtype(dtype)
    return 1.0 / np.iinfo(dtype).max if dtype.kind == "u" else 0.0


def from_float(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """float in [0, 1] -> `dtype` (rounded and clipped for integers)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return x.astype(dtype)
    peak = np.iinfo(dtype).max
    return np.clip(np.round(x.astype(np.float64) * peak), 0, peak).astype(dtype)


# --------------------------------------------------------------------------- step visualisations


def encode_gif(frames: list[np.ndarray], ms_per_frame: int = 400) -> bytes:
    """An endlessly looping animated GIF of float HxWxC frames in [0, 1] (8-bit, palette per frame)."""
    from PIL import Image

    ims = [Image.fromarray(from_float(f[..., 0] if f.shape[2] == 1 else f, np.uint8)) for f in frames]
    buf = io.BytesIO()
    ims[0].save(buf, format="GIF", save_all=True, append_images=ims[1:], duration=ms_per_frame, loop=0)
    return buf.getvalue()


def encode_psnr_plot(psnrs: list[float | None], title: str) -> bytes:
    """A PNG line plot of PSNR against RIM step (step 0 = the degraded input)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.2), dpi=100)  # no pyplot: no global backend or figure state
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ys = [np.nan if v is None else v for v in psnrs]
    ax.plot(range(len(ys)), ys, marker="o")
    ax.set_xlabel("RIM step (0 = input)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
