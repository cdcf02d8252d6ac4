"""Image I/O: formats, bit depths, alpha, EXIF orientation, ICC, atomic writes. No model needed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageOps

from rimcli import io as rio

RNG = np.random.default_rng(0)


def rand(shape: tuple[int, ...], dtype: type = np.uint8) -> np.ndarray:
    return RNG.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("shape", [(20, 24), (20, 24, 2), (20, 24, 3), (20, 24, 4)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_lossless_round_trip(tmp_path: Path, shape: tuple[int, ...], dtype: type, ext: str) -> None:
    arr = rand(shape, dtype)
    path = rio.write_image(tmp_path / f"x{ext}", arr)
    pic = rio.read_image(path)
    assert pic.array.dtype == dtype
    np.testing.assert_array_equal(pic.array, arr)
    assert pic.bits == (16 if dtype == np.uint16 else 8)
    assert (pic.alpha is not None) == (len(shape) == 3 and shape[2] in (2, 4))
    assert leftovers(tmp_path) == []


def test_pillow_would_truncate_16bit_rgb_but_we_do_not(tmp_path: Path) -> None:
    arr = rand((8, 9, 3), np.uint16)
    rio.write_image(tmp_path / "x.png", arr)
    assert np.asarray(Image.open(tmp_path / "x.png")).dtype == np.uint8  # why pypng is needed
    np.testing.assert_array_equal(rio.read_image(tmp_path / "x.png").data, arr)


@pytest.mark.parametrize("ext", [".jpg", ".bmp", ".webp"])
def test_other_formats_keep_shape_and_dtype(tmp_path: Path, ext: str) -> None:
    arr = rand((20, 24, 3))
    pic = rio.read_image(rio.write_image(tmp_path / f"x{ext}", arr))
    assert pic.data.shape == arr.shape and pic.data.dtype == np.uint8
    if ext != ".jpg":  # BMP and (lossless) WebP are exact
        np.testing.assert_array_equal(pic.data, arr)


def test_gray_alpha_to_webp_becomes_rgba(tmp_path: Path) -> None:
    arr = rand((10, 12, 2))
    pic = rio.read_image(rio.write_image(tmp_path / "x.webp", arr))
    np.testing.assert_array_equal(pic.alpha, arr[..., 1])
    np.testing.assert_array_equal(pic.data[..., 0], arr[..., 0])


def test_icc_profile_kept(tmp_path: Path) -> None:
    icc = b"not a real profile but bytes" * 4
    for name, arr in [("a.png", rand((8, 8, 3))), ("b.png", rand((8, 8, 3), np.uint16)), ("c.tif", rand((8, 8, 3), np.uint16))]:
        rio.write_image(tmp_path / name, arr, icc=icc)
        assert rio.read_image(tmp_path / name).icc == icc, name


@pytest.mark.parametrize("code", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path: Path, code: int) -> None:
    arr = rand((6, 10, 3))
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = code
    im.save(tmp_path / "o.png", exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.png")))
    np.testing.assert_array_equal(rio.read_image(tmp_path / "o.png").data, expected)
    np.testing.assert_array_equal(rio._orient(arr, code), expected)  # the numpy path used for 16-bit and TIFF


def test_exif_orientation_16bit_png(tmp_path: Path) -> None:
    arr = rand((6, 10, 3), np.uint16)
    rio.write_image(tmp_path / "o.png", arr)
    # add an eXIf chunk saying "rotate 90 clockwise" (orientation 6) after IHDR
    import png

    exif = Image.Exif()
    exif[0x0112] = 6
    chunks = list(png.Reader(filename=str(tmp_path / "o.png")).chunks())
    chunks.insert(1, (b"eXIf", exif.tobytes()[6:]))  # the chunk holds the TIFF data without "Exif\0\0"
    with open(tmp_path / "o.png", "wb") as f:
        png.write_chunks(f, chunks)
    pic = rio.read_image(tmp_path / "o.png")
    assert pic.data.dtype == np.uint16
    np.testing.assert_array_equal(pic.data, np.rot90(arr, -1))


def test_tiff_orientation_and_miniswhite(tmp_path: Path) -> None:
    arr = rand((6, 10), np.uint16)
    tifffile.imwrite(tmp_path / "o.tif", arr, photometric="miniswhite", extratags=[(274, "H", 1, 8, True)])
    np.testing.assert_array_equal(rio.read_image(tmp_path / "o.tif").data, np.rot90(65535 - arr, 1))


def test_palette_converted_to_rgb_or_rgba(tmp_path: Path) -> None:
    Image.fromarray(rand((10, 12, 3))).convert("P").save(tmp_path / "p.png")
    assert rio.read_image(tmp_path / "p.png").mode == "RGB"
    im = Image.fromarray(rand((10, 12, 3))).convert("P")
    im.info["transparency"] = 0
    im.save(tmp_path / "pt.png", transparency=0)
    assert rio.read_image(tmp_path / "pt.png").mode == "RGBA"


def test_bilevel_becomes_gray(tmp_path: Path) -> None:
    Image.fromarray(rand((10, 12)) > 128).save(tmp_path / "b.png")
    pic = rio.read_image(tmp_path / "b.png")
    assert pic.mode == "gray" and set(np.unique(pic.data)) <= {0, 255}


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: (p / "x.tif").write_bytes(b"II*\0" + b"\0" * 12), "not a readable image"),
        (lambda p: (p / "x.png").write_text("not an image"), "not an image"),
        (lambda p: Image.new("RGB", (8, 8)).save(p / "x.gif"), "not an image"),
        (lambda p: None, "no such file"),
    ],
)
def test_unreadable_inputs(tmp_path: Path, make, expected: str) -> None:
    make(tmp_path)
    target = next((p for p in tmp_path.iterdir()), tmp_path / "missing.png")
    with pytest.raises(rio.ImageError, match=expected) as err:
        rio.read_image(target)
    assert "\n" not in str(err.value)


def test_folder_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(rio.ImageError, match="folder"):
        rio.read_image(tmp_path)


def test_write_refuses_what_the_format_cannot_hold(tmp_path: Path) -> None:
    with pytest.raises(rio.ImageError, match="16-bit"):
        rio.write_image(tmp_path / "x.jpg", rand((8, 8, 3), np.uint16))
    with pytest.raises(rio.ImageError, match="alpha"):
        rio.write_image(tmp_path / "x.jpg", rand((8, 8, 4)))
    with pytest.raises(rio.ImageError, match="alpha"):
        rio.write_image(tmp_path / "x.bmp", rand((8, 8, 2)))
    with pytest.raises(rio.ImageError, match="cannot write"):
        rio.write_image(tmp_path / "x.gif", rand((8, 8, 3)))
    assert list(tmp_path.iterdir()) == []


def test_write_does_not_overwrite_unless_asked(tmp_path: Path) -> None:
    rio.write_image(tmp_path / "x.png", rand((8, 8)))
    before = (tmp_path / "x.png").read_bytes()
    with pytest.raises(rio.ImageError, match="exists"):
        rio.write_image(tmp_path / "x.png", rand((8, 8)))
    assert (tmp_path / "x.png").read_bytes() == before
    rio.write_image(tmp_path / "x.png", rand((8, 8)), overwrite=True)
    assert (tmp_path / "x.png").read_bytes() != before


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rio.os, "replace", broken)
    with pytest.raises(rio.ImageError, match="No space left"):
        rio.write_image(tmp_path / "x.png", rand((8, 8)))
    assert list(tmp_path.iterdir()) == []


def test_write_into_a_file_as_folder_fails_cleanly(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(rio.ImageError, match="cannot write"):
        rio.write_image(tmp_path / "f" / "x.png", rand((8, 8)))


def test_written_files_get_normal_permissions(tmp_path: Path) -> None:
    rio.write_image(tmp_path / "x.png", rand((8, 8)))
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "x.png").stat().st_mode & 0o777 == 0o666 & ~mask


def test_float_conversions() -> None:
    for dtype in (np.uint8, np.uint16):
        arr = rand((5, 6), dtype)
        np.testing.assert_array_equal(rio.from_float(rio.to_float(arr), dtype), arr)
    assert rio.from_float(np.array([-0.5, 1.5]), np.uint8).tolist() == [0, 255]
    assert rio.to_float(np.zeros(3, np.float64)).dtype == np.float32


def test_gif_and_plot_encoders() -> None:
    import io

    frames = [RNG.random((10, 12, 3)).astype(np.float32) for _ in range(3)]
    gif = Image.open(io.BytesIO(rio.encode_gif(frames)))
    assert gif.format == "GIF" and gif.n_frames == 3
    gray = Image.open(io.BytesIO(rio.encode_gif([f[..., :1] for f in frames])))
    assert gray.n_frames == 3
    plot = Image.open(io.BytesIO(rio.encode_psnr_plot([20.0, 22.5, None, float("inf")], "t")))
    assert plot.format == "PNG"


# --------------------------------------------------------------------------- CMYK and float TIFF (issue 12, item 8)


def test_cmyk_jpeg_and_tiff_become_rgb_with_a_note(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (10, 8), (0, 255, 0, 0))  # full magenta ink
    cmyk.save(tmp_path / "m.jpg", quality=100)
    cmyk.save(tmp_path / "m.tif")
    for name in ("m.jpg", "m.tif"):
        pic = rio.read_image(tmp_path / name)
        assert pic.mode == "RGB" and pic.data.dtype == np.uint8 and pic.icc is None
        assert pic.notes == ["converted from CMYK to RGB"]
        r, g, b = pic.data.reshape(-1, 3).mean(0)
        assert r > 240 and g < 15 and b > 240, (name, r, g, b)
    assert rio.read_image(tmp_path / "m.jpg").notes is not rio.read_image(tmp_path / "m.tif").notes
    rio.write_image(tmp_path / "rgb.png", rand((8, 8, 3)))
    assert rio.read_image(tmp_path / "rgb.png").notes == []


@pytest.mark.parametrize("shape, photometric", [((20, 24), None), ((20, 24, 3), "rgb"), ((20, 24, 4), "rgb")])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_tiff_in_0_1_is_read_as_float32(tmp_path: Path, shape: tuple[int, ...], photometric: str | None,
                                              dtype: type) -> None:
    arr = RNG.random(shape).astype(dtype)
    extra = {"extrasamples": ["unassalpha"]} if shape[-1] == 4 else {}
    tifffile.imwrite(tmp_path / "f.tif", arr, photometric=photometric, **extra)
    pic = rio.read_image(tmp_path / "f.tif")
    assert pic.data.dtype == np.float32 and pic.bits == 32
    np.testing.assert_array_equal(pic.array, arr.astype(np.float32))


def test_float_tiff_min_is_white(tmp_path: Path) -> None:
    arr = RNG.random((6, 7)).astype(np.float32)
    tifffile.imwrite(tmp_path / "w.tif", arr, photometric="miniswhite")
    np.testing.assert_allclose(rio.read_image(tmp_path / "w.tif").data, 1 - arr)


@pytest.mark.parametrize("values, match", [([0.0, 2.0], r"values in \[0, 1\], found \[0, 2\]"),
                                           ([-0.5, 0.5], r"found \[-0.5, 0.5\]"), ([0.0, np.nan], "inf or NaN")])
def test_float_tiff_outside_0_1_is_refused(tmp_path: Path, values: list[float], match: str) -> None:
    tifffile.imwrite(tmp_path / "f.tif", np.array([values] * 4, np.float32))
    with pytest.raises(rio.ImageError, match=match) as err:
        rio.read_image(tmp_path / "f.tif")
    assert "\n" not in str(err.value)


def test_float_tiff_through_pillow(tmp_path: Path) -> None:
    """Pillow's 32-bit float mode 'F' (used when tifffile cannot decode a compression)."""
    arr = RNG.random((6, 7)).astype(np.float32)
    Image.fromarray(arr, mode="F").save(tmp_path / "f.tif")
    np.testing.assert_array_equal(rio._read_pillow(tmp_path / "f.tif", b"", [])[0], arr)


def test_float_images_are_written_as_tiff_only_and_clipped(tmp_path: Path) -> None:
    arr = np.array([[-0.1, 0.25], [0.5, 1.2]], np.float32)
    rio.write_image(tmp_path / "f.tif", arr)
    np.testing.assert_array_equal(rio.read_image(tmp_path / "f.tif").data, np.clip(arr, 0, 1))
    with pytest.raises(rio.ImageError, match="float images can only be written as TIFF"):
        rio.write_image(tmp_path / "f.png", arr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.tif"]


def test_other_image_extensions_name_files() -> None:
    assert rio.looks_like_image_file(Path("result.gif")) and rio.looks_like_image_file(Path("x.PNG"))
    assert not rio.looks_like_image_file(Path("results")) and not rio.looks_like_image_file(Path("v1.0"))
