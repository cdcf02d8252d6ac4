"""Benchmark datasets: where they live, how to load them, how to fetch them.

A dataset folder is looked up in this order (the first that holds the set wins):

1. ``--data DIR`` (the ``data`` argument),
2. ``$RIM_DATA``,
3. a folder registered with ``rim data path NAME DIR`` (a JSON registry in the user data folder),
4. ``<user data folder>/datasets/NAME`` (where ``rim data fetch NAME`` extracts to).

Each candidate may be the set itself (``bsd68/*.png``, ``Set5/image_SRF_2/...``) or a root that
holds it, in the flat layout (``ROOT/bsd68``, ``ROOT/Set5``) or the layout of ``../shared/data``
(``ROOT/bench/bsd68``, ``ROOT/sr/Set5`` or ``ROOT/bench/sr/Set5``). A wrapper folder with a single
subfolder (as archives often extract) is looked through.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import RimError, os_reason
from .io import EXTENSIONS, from_float, read_image, write_bytes
from .tasks import SR_SCALES  # the SR sets ship LR files (image_SRF_s) at the scales inference supports


class DatasetError(RimError, FileNotFoundError):
    """A dataset that cannot be found, fetched or read (printed as one line by the CLI)."""


@dataclass(frozen=True)
class Source:
    """Where a set is published. `sha256` None means not pinned yet (see `fetch`)."""

    url: str
    sha256: str | None = None
    subdir: str | None = None  # the set's folder inside the archive, when known
    note: str = ""


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    task: str  # "denoise" or "superres"
    channels: int  # 1 gray, 3 colour (SR sets mix a few gray images in; they are handled per image)
    folders: tuple[str, ...]  # folder names the set goes by
    images: int
    source: Source
    description: str


_SELFEXSR = "https://uofi.box.com/shared/static/"  # Huang et al. (SelfExSR) data, linked from github.com/jbhuang0604/SelfExSR
_DENOISING_SETS = "https://github.com/majedelhelou/denoising_datasets/archive/refs/heads/main.zip"
_UNPINNED = "checksum not pinned yet: the first fetch prints the sha256 to pin here"
_BIG = _UNPINNED + "; a large archive of many sets"
_SET12 = "https://download.visinf.tu-darmstadt.de/data/denoising_datasets/Set12.zip"

DATASETS: dict[str, DatasetInfo] = {
    "bsd68": DatasetInfo("bsd68", "denoise", 1, ("bsd68", "BSD68"), 68,
                         Source(_DENOISING_SETS, None, "denoising_datasets-main/BSD68", _BIG),
                         "BSD68 (Roth & Black 2005), 68 gray images from the BSDS300 test split"),
    "cbsd68": DatasetInfo("cbsd68", "denoise", 3, ("cbsd68", "CBSD68"), 68,
                          Source(_DENOISING_SETS, None, "denoising_datasets-main/CBSD68", _BIG),
                          "CBSD68, the same 68 images in colour"),
    "set12": DatasetInfo("set12", "denoise", 1, ("set12", "Set12"), 12,
                         Source(_SET12, None, None, _UNPINNED),
                         "Set12, classic gray test images"),
    "set5": DatasetInfo("set5", "superres", 3, ("Set5", "set5"), 5,
                        Source(_SELFEXSR + "kfahv87nfe8ax910l85dksyl2q212voc.zip", None, None, _UNPINNED),
                        "Set5 in the SelfExSR layout (image_SRF_s/img_NNN_SRF_s_{HR,LR}.png)"),
    "set14": DatasetInfo("set14", "superres", 3, ("Set14", "set14"), 14,
                         Source(_SELFEXSR + "igsnfieh4lz68l926l8xbklwsnnk8we9.zip", None, None, _UNPINNED),
                         "Set14 in the SelfExSR layout"),
    "b100": DatasetInfo("b100", "superres", 3, ("BSD100", "B100", "bsd100", "b100"), 100,
                        Source(_SELFEXSR + "qgctsplb8txrksm9to9x01zfa4m61ngq.zip", None, None, _UNPINNED),
                        "BSD100 (the BSDS300 test split) in the SelfExSR layout"),
}
ALIASES = {"bsd100": "b100", "B100": "b100", "BSD100": "b100", "Set5": "set5", "Set14": "set14", "Set12": "set12",
           "BSD68": "bsd68", "CBSD68": "cbsd68"}


def info(name: str) -> DatasetInfo:
    key = ALIASES.get(name, name.lower())
    if key not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[key]


# ---------------------------------------------------------------- locations


def data_home() -> Path:
    """The user data folder of rimcli (fetched sets and the registry live here)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("rimcli"))


def registry_path() -> Path:
    return data_home() / "datasets.json"


def read_registry() -> dict[str, str]:
    path = registry_path()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise DatasetError(f"dataset registry {path} cannot be read ({os_reason(e)})") from None
    except ValueError as e:
        raise DatasetError(f"corrupt dataset registry {path}: {e}") from e
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _write_registry(entries: dict[str, str]) -> None:
    write_bytes(registry_path(), json.dumps(entries, indent=2, sort_keys=True) + "\n")


def _entries(folder: Path, keep: Callable[[Path], bool]) -> list[Path]:
    """The entries of `folder` that `keep` accepts; `DatasetError` if it cannot be listed."""
    try:
        return [p for p in folder.iterdir() if keep(p)]
    except OSError as e:
        raise DatasetError(f"{folder}: cannot list this folder ({os_reason(e)})") from None


def _has_images(d: Path) -> bool:
    return bool(_entries(d, lambda p: p.suffix.lower() in EXTENSIONS and p.is_file()))


def _holds(d: Path, ds: DatasetInfo, scale: int | None) -> bool:
    if not d.is_dir():
        return False
    if ds.task == "superres":
        scales = (scale,) if scale else SR_SCALES
        return any((d / f"image_SRF_{s}").is_dir() for s in scales)
    return _has_images(d)


def _another_set(d: Path, ds: DatasetInfo) -> bool:
    """Whether a folder is named after a different set (bsd68 must never pass for cbsd68)."""
    return d.name.lower() in {f.lower() for other in DATASETS.values() if other is not ds for f in other.folders}


def _candidates(root: Path, ds: DatasetInfo) -> Iterator[Path]:
    prefixes = ("", "sr", "bench/sr") if ds.task == "superres" else ("", "bench")
    for pre in prefixes:
        for folder in ds.folders:
            yield root / pre / folder
    if _another_set(root, ds):
        return
    yield root
    # an archive's wrapper folder: look through a lone subfolder (two levels at most)
    d = root
    for _ in range(2):
        subs = _entries(d, lambda p: p.is_dir() and not p.name.startswith(".")) if d.is_dir() else []
        if len(subs) != 1 or _another_set(subs[0], ds):
            break
        d = subs[0]
        yield d
        for folder in ds.folders:
            yield d / folder


def find_in(root: Path, name: str, scale: int | None = None) -> Path | None:
    """The folder under (or at) `root` that holds the set, or None."""
    ds = info(name)
    for cand in _candidates(root, ds):
        if _holds(cand, ds, scale):
            return cand
    return None


def search_roots(data: str | Path | None, name: str) -> list[tuple[str, Path]]:
    """(label, folder) pairs in lookup order, for finding a set and for the error message."""
    ds = info(name)
    roots: list[tuple[str, Path]] = []
    if data:
        roots.append(("--data", Path(data).expanduser()))
    env = os.environ.get("RIM_DATA")
    if env:
        roots.append(("$RIM_DATA", Path(env).expanduser()))
    registered = read_registry().get(ds.name)
    if registered:
        roots.append(("registered", Path(registered)))
    roots.append(("data folder", data_home() / "datasets" / ds.name))
    return roots


def locate(name: str, data: str | Path | None = None, scale: int | None = None) -> Path:
    """The folder holding dataset `name`; a one-line DatasetError saying where it looked otherwise.

    An explicit `data` is the only place searched when given, so a typo is never masked by a
    fallback."""
    ds = info(name)
    roots = search_roots(data, name)
    if data:
        roots = roots[:1]
    for _, root in roots:
        found = find_in(root, ds.name, scale)
        if found is not None:
            return found
    where = "; ".join(f"{label} {root}" for label, root in roots)
    what = f"{ds.name} (x{scale})" if scale else ds.name
    raise DatasetError(f"dataset {what} not found (looked in: {where}); "
                       f"run `rim data fetch {ds.name}` or `rim data path {ds.name} DIR`")


def register(name: str, folder: str | Path) -> Path:
    """Record an existing folder as the home of a set (checked to hold it)."""
    ds = info(name)
    root = Path(folder).expanduser().resolve()
    found = find_in(root, ds.name)
    if found is None:
        raise DatasetError(f"{root} does not hold {ds.name} ({ds.description})")
    entries = read_registry()
    entries[ds.name] = str(found)
    _write_registry(entries)
    return found


# ---------------------------------------------------------------- loading


def read_uint8(path: Path) -> np.ndarray:
    """An image as HxW (gray) or HxWx3 (colour) uint8, decoded by `io.read_image` like every
    other image: alpha dropped, palettes expanded, 16-bit samples scaled (x / 257, rounded),
    float ones rounded from [0, 1]. The benchmark sets are 8-bit PNGs without EXIF orientation,
    so these are the very pixels MATLAB's imread gives the published protocols."""
    data = read_image(path).data
    if data.dtype == np.uint16:  # 16-bit: scale (a plain cast or Pillow's 'L' would clip)
        data = np.clip(np.round(data.astype(np.float64) / 257.0), 0, 255)
    elif data.dtype != np.uint8:
        data = from_float(data, np.uint8)
    return np.array(data, dtype=np.uint8, order="C")  # a writable copy, never a view of the decoder's


def denoise_images(folder: Path, channels: int, limit: int | None = None) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 image) pairs, sorted by file name, converted to `channels` (1 gray, 3 RGB)."""
    files = sorted(_entries(folder, lambda p: p.is_file() and p.suffix.lower() in EXTENSIONS))
    if not files:
        raise DatasetError(f"no images in {folder}")
    out = []
    for p in files[: limit or None]:
        img = read_uint8(p)
        if channels == 1 and img.ndim == 3:
            raise DatasetError(f"{p} is a colour image in a gray set")
        if channels == 3 and img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        out.append((p.stem, img))
    return out


def sr_pairs(folder: Path, scale: int, limit: int | None = None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, HR, LR) uint8 triples of one scale, in the SelfExSR layout; gray images stay 2-D."""
    sub = folder / f"image_SRF_{scale}"
    hrs = sorted(sub.glob(f"*_SRF_{scale}_HR.png")) if sub.is_dir() else []
    if not hrs:
        raise DatasetError(f"no x{scale} HR/LR pairs in {sub}")
    out = []
    for hr_path in hrs[: limit or None]:
        lr_path = hr_path.with_name(hr_path.name.replace("_HR.png", "_LR.png"))
        if not lr_path.is_file():
            raise DatasetError(f"{lr_path} is missing (every HR file needs its LR file)")
        hr, lr = read_uint8(hr_path), read_uint8(lr_path)
        if (hr.shape[0], hr.shape[1]) != (lr.shape[0] * scale, lr.shape[1] * scale):
            raise DatasetError(f"{hr_path.name}: HR {hr.shape[:2]} is not {scale}x LR {lr.shape[:2]}")
        out.append((hr_path.name[: -len("_HR.png")], hr, lr))
    return out


# ---------------------------------------------------------------- fetching



def _download(url: str, dest: Path, progress: Callable[[int, int | None], None] | None) -> None:
    req = urllib.request.Request(url, headers={"User-Agent": "rimcli"})
    with urllib.request.urlopen(req, timeout=60) as resp, open(dest, "wb") as f:
        total = resp.headers.get("Content-Length")
        total_n = int(total) if total and total.isdigit() else None
        done = 0
        while chunk := resp.read(1 << 20):
            f.write(chunk)
            done += len(chunk)
            if progress:
                progress(done, total_n)


def _inside(base: Path, member: str) -> bool:
    target = (base / member).resolve()
    return target == base or base in target.parents


def _extract(archive: Path, dest: Path) -> None:
    """Unpack a zip or tar archive, refusing members that would land outside `dest`."""
    base = dest.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            bad = [n for n in z.namelist() if not _inside(base, n)]
            if bad:
                raise DatasetError(f"archive member {bad[0]!r} escapes the target folder; refusing it")
            z.extractall(dest)
        return
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            members = t.getmembers()
            bad = [m.name for m in members if not _inside(base, m.name) or m.issym() or m.islnk() or m.isdev()]
            if bad:
                raise DatasetError(f"archive member {bad[0]!r} is a link, a device or escapes the target; refusing it")
            t.extractall(dest, members=members)
        return
    raise DatasetError(f"{archive.name} is neither a zip nor a tar archive")


@dataclass
class FetchResult:
    name: str
    folder: Path
    sha256: str
    pinned: bool  # False: no checksum was known to check against


def fetch(
    name: str,
    url: str | None = None,
    sha256: str | None = None,
    force: bool = False,
    progress: Callable[[int, int | None], None] | None = None,
) -> FetchResult:
    """Download a set's archive, check its sha256, extract it atomically and register it.

    The archive goes to a temporary folder beside the destination; only after the checksum
    matches and extraction succeeds is that folder renamed into place, so a failure leaves
    nothing behind. With no pinned or given checksum the download is kept but reported as
    unpinned (trust on first use), with the sha256 to pin."""
    ds = info(name)
    src = ds.source
    url = url or src.url
    expected = (sha256 or (src.sha256 if url == src.url else None) or "").lower() or None
    final = data_home() / "datasets" / ds.name
    if final.exists() and not force:
        raise DatasetError(f"{final} already exists; pass --force to fetch {ds.name} again")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{ds.name}-", dir=final.parent))
    except OSError as e:
        raise DatasetError(f"{final.parent}: cannot write there ({os_reason(e)})") from None
    try:
        archive = work / "download"
        try:
            _download(url, archive, progress)
        except OSError as e:  # URLError and HTTPError are OSErrors
            raise DatasetError(f"download of {url} failed: {e}") from e
        from .weights import sha256 as file_sha256

        digest = file_sha256(archive)
        if expected and digest != expected:
            raise DatasetError(f"checksum mismatch for {url}: got sha256 {digest}, expected {expected}; nothing was kept")
        content = work / "content"
        content.mkdir()
        _extract(archive, content)
        archive.unlink()
        sub = src.subdir if url == src.url else None
        if find_in(content / sub if sub else content, ds.name) is None:
            raise DatasetError(f"the archive from {url} does not hold {ds.name} ({ds.description})")
        if final.exists():
            shutil.rmtree(final)
        content.rename(final)
    except DatasetError:
        raise
    except OSError as e:  # a full disk, a folder we may not write in (DatasetError is an OSError too)
        raise DatasetError(f"unpacking {ds.name} into {final.parent} failed ({os_reason(e)})") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    folder = find_in(final / sub if sub else final, ds.name)
    assert folder is not None  # checked before the rename
    entries = read_registry()
    entries[ds.name] = str(folder)
    _write_registry(entries)
    return FetchResult(ds.name, folder, digest, pinned=expected is not None)
