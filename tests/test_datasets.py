"""Dataset lookup, registration and fetching (against a local HTTP server only)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from rimcli import datasets
from rimcli.cli import _register, app

_register()
runner = CliRunner()


def _png(path: Path, shape: tuple[int, ...], seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, shape).astype(np.uint8)).save(path)


def make_denoise_set(folder: Path, n: int = 2, colour: bool = False, shape: tuple[int, int] = (40, 48)) -> Path:
    for i in range(n):
        _png(folder / f"{i + 1:02d}.png", (*shape, 3) if colour else shape, seed=i)
    return folder


def make_sr_set(folder: Path, scales: tuple[int, ...] = (2,), n: int = 2) -> Path:
    from rimcli.resize import imresize_uint8

    for s in scales:
        for i in range(n):
            rng = np.random.default_rng(i)
            shape = (12 * s, 16 * s) if i % 2 else (12 * s, 16 * s, 3)  # one gray image, like Set14's
            hr = rng.integers(0, 256, shape).astype(np.uint8)
            sub = folder / f"image_SRF_{s}"
            sub.mkdir(parents=True, exist_ok=True)
            Image.fromarray(hr).save(sub / f"img_{i + 1:03d}_SRF_{s}_HR.png")
            Image.fromarray(imresize_uint8(hr, 1 / s)).save(sub / f"img_{i + 1:03d}_SRF_{s}_LR.png")
    return folder


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty user data folder and no $RIM_DATA."""
    h = tmp_path / "home"
    monkeypatch.setattr(datasets, "data_home", lambda: h)
    monkeypatch.delenv("RIM_DATA", raising=False)
    return h


# ---------------------------------------------------------------- layouts and lookup order


def test_layouts_are_found(tmp_path: Path, home: Path) -> None:
    flat = make_denoise_set(tmp_path / "flat" / "whatever")
    assert datasets.locate("bsd68", flat) == flat  # the set itself
    root = tmp_path / "root"
    make_denoise_set(root / "bsd68")
    make_denoise_set(root / "CBSD68", colour=True)
    make_sr_set(root / "Set5", scales=(2, 3))
    assert datasets.locate("bsd68", root) == root / "bsd68"
    assert datasets.locate("cbsd68", root) == root / "CBSD68"
    assert datasets.locate("set5", root, 3) == root / "Set5"
    shared_like = tmp_path / "shared"
    make_sr_set(shared_like / "bench" / "sr" / "BSD100")
    make_denoise_set(shared_like / "bench" / "set12")
    assert datasets.locate("b100", shared_like) == shared_like / "bench" / "sr" / "BSD100"
    assert datasets.locate("bsd100", shared_like / "bench") == shared_like / "bench" / "sr" / "BSD100"
    assert datasets.locate("set12", shared_like) == shared_like / "bench" / "set12"
    wrapped = tmp_path / "wrapped"
    make_sr_set(wrapped / "SelfExSR-data" / "Set14")
    assert datasets.locate("set14", wrapped) == wrapped / "SelfExSR-data" / "Set14"


def test_missing_scale_and_unknown_name(tmp_path: Path, home: Path) -> None:
    make_sr_set(tmp_path / "Set5", scales=(2,))
    with pytest.raises(datasets.DatasetError, match="x4"):
        datasets.locate("set5", tmp_path, 4)
    with pytest.raises(datasets.DatasetError, match="unknown dataset"):
        datasets.info("urban100")


def test_lookup_order(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_root, reg_root = tmp_path / "env", tmp_path / "reg"
    make_denoise_set(env_root / "set12")
    make_denoise_set(reg_root / "Set12")
    fetched = make_denoise_set(home / "datasets" / "set12")
    assert datasets.locate("set12") == fetched  # the data folder is the last resort
    datasets.register("set12", reg_root)
    assert datasets.locate("set12") == reg_root / "Set12"
    monkeypatch.setenv("RIM_DATA", str(env_root))
    assert datasets.locate("set12") == env_root / "set12"
    # an explicit --data is the only place searched
    with pytest.raises(datasets.DatasetError) as e:
        datasets.locate("set12", tmp_path / "nowhere")
    assert "--data" in str(e.value) and "$RIM_DATA" not in str(e.value)


def test_missing_dataset_cli_message(home: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["benchmark", "set12", "--data", str(tmp_path / "nothing")])
    assert r.exit_code == 2
    msg = r.stderr.strip()
    assert msg.count("\n") == 0 and msg.startswith("error: dataset set12 not found")
    assert str(tmp_path / "nothing") in msg and "rim data fetch set12" in msg and "rim data path set12" in msg


def test_loaders(tmp_path: Path) -> None:
    gray = make_denoise_set(tmp_path / "g", n=3)
    imgs = datasets.denoise_images(gray, 1, limit=2)
    assert [n for n, _ in imgs] == ["01", "02"] and imgs[0][1].shape == (40, 48)
    assert datasets.denoise_images(gray, 3)[0][1].shape == (40, 48, 3)  # gray set for a colour protocol: replicated
    with pytest.raises(datasets.DatasetError, match="colour image in a gray set"):
        datasets.denoise_images(make_denoise_set(tmp_path / "c", colour=True), 1)
    pairs = datasets.sr_pairs(make_sr_set(tmp_path / "sr", scales=(3,)), 3)
    assert [p[0] for p in pairs] == ["img_001_SRF_3", "img_002_SRF_3"]
    assert pairs[0][1].shape == (36, 48, 3) and pairs[0][2].shape == (12, 16, 3) and pairs[1][1].ndim == 2


def test_read_uint8_modes(tmp_path: Path) -> None:
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 10
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert datasets.read_uint8(tmp_path / "a.png").tolist() == np.full((4, 5, 3), [200, 0, 0]).tolist()
    Image.fromarray(np.full((3, 3), 65535, np.uint16)).save(tmp_path / "b.png")
    assert datasets.read_uint8(tmp_path / "b.png").tolist() == np.full((3, 3), 255).tolist()


# ---------------------------------------------------------------- rim data path / list


def test_data_path_registers_and_prints(tmp_path: Path, home: Path) -> None:
    root = tmp_path / "mine"
    make_sr_set(root / "Set5")
    r = runner.invoke(app, ["data", "path", "set5", str(root)])
    assert r.exit_code == 0, r.output
    assert json.loads((home / "datasets.json").read_text()) == {"set5": str((root / "Set5").resolve())}
    r = runner.invoke(app, ["data", "path", "Set5"])
    assert r.exit_code == 0 and r.stdout.strip() == str((root / "Set5").resolve())
    r = runner.invoke(app, ["data", "path", "set14", str(root)])
    assert r.exit_code == 2 and "does not hold set14" in r.stderr
    r = runner.invoke(app, ["data", "list"])
    assert r.exit_code == 0 and "set5" in r.stdout and "missing" in r.stdout


# ---------------------------------------------------------------- rim data fetch


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server on 127.0.0.1 serving a folder: (base URL, folder)."""
    served = tmp_path / "served"
    served.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()


def _zip_set12(path: Path, members: dict[str, bytes] | None = None) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(2):
            png = io.BytesIO()
            Image.fromarray(np.full((20, 24), 40 * i, np.uint8)).save(png, format="PNG")
            z.writestr(f"Set12/{i + 1:02d}.png", png.getvalue())
        for name, data in (members or {}).items():
            z.writestr(name, data)
    path.write_bytes(buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()


def _leftovers(home: Path) -> list[str]:
    d = home / "datasets"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def test_fetch_success_with_checksum(server: tuple[str, Path], home: Path) -> None:
    base, served = server
    digest = _zip_set12(served / "set12.zip")
    r = runner.invoke(app, ["data", "fetch", "set12", "--url", f"{base}/set12.zip", "--sha256", digest])
    assert r.exit_code == 0, r.output
    folder = home / "datasets" / "set12" / "Set12"
    assert r.stdout.strip() == str(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["01.png", "02.png"]
    assert datasets.locate("set12") == folder
    assert _leftovers(home) == ["set12"]  # no temporary folder left beside it
    r = runner.invoke(app, ["data", "fetch", "set12", "--url", f"{base}/set12.zip"])
    assert r.exit_code == 2 and "--force" in r.stderr


def test_fetch_checksum_mismatch_leaves_nothing(server: tuple[str, Path], home: Path) -> None:
    base, served = server
    _zip_set12(served / "set12.zip")
    r = runner.invoke(app, ["data", "fetch", "set12", "--url", f"{base}/set12.zip", "--sha256", "0" * 64])
    assert r.exit_code == 2
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: checksum mismatch")
    assert _leftovers(home) == []
    assert not (home / "datasets.json").exists()


def test_fetch_unpinned_warns_with_digest(server: tuple[str, Path], home: Path) -> None:
    base, served = server
    digest = _zip_set12(served / "set12.zip")
    r = runner.invoke(app, ["data", "fetch", "set12", "--url", f"{base}/set12.zip"])
    assert r.exit_code == 0, r.output
    assert "no checksum was pinned" in r.stderr and digest in r.stderr.replace("\n", "")


def test_fetch_tar_and_failures(server: tuple[str, Path], home: Path) -> None:
    base, served = server
    # a tar.gz with the SR layout
    src = make_sr_set(served / "build" / "Set5")
    with tarfile.open(served / "set5.tar.gz", "w:gz") as t:
        t.add(src, arcname="Set5")
    r = runner.invoke(app, ["data", "fetch", "set5", "--url", f"{base}/set5.tar.gz"])
    assert r.exit_code == 0, r.output
    assert datasets.locate("set5", scale=2) == home / "datasets" / "set5" / "Set5"
    # 404, an archive escaping its folder, an archive without the set: one line, exit 2, nothing kept
    _zip_set12(served / "evil.zip", {"../../escape.txt": b"x"})
    (served / "empty.zip").write_bytes(_empty_zip())
    failures = [("missing.zip", "download of"), ("evil.zip", "escapes"), ("empty.zip", "does not hold")]
    for url, msg in [(f"{base}/{name}", m) for name, m in failures]:
        r = runner.invoke(app, ["data", "fetch", "set12", "--url", url])
        assert r.exit_code == 2 and msg in r.stderr, r.output
    assert _leftovers(home) == ["set5"]
    assert not (home.parent / "escape.txt").exists()


def _empty_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("README.txt", "nothing here")
    return buf.getvalue()


def test_source_table_is_complete() -> None:
    for name, ds in datasets.DATASETS.items():
        assert ds.name == name and ds.source.url.startswith("https://")
        assert ds.source.sha256 is None or len(ds.source.sha256) == 64
