"""Headers first: the size of a PNG (IHDR) or EXR (dataWindow) is read without decoding, and an image over the pixel
cap is refused before a pixel is decoded (the decoders are never called)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import render_kernels as rk
from render_kernels import image_io
from tests.fixtures.bombs import exr_bomb, png_bomb


def _no_decoding(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("a pixel decoder was called")

    monkeypatch.setattr(image_io, "_pil_to_float", boom)
    monkeypatch.setattr(image_io, "_exr_channels", boom)


def test_headers_give_the_size_of_png_and_exr_without_decoding(tmp_path, monkeypatch):
    _no_decoding(monkeypatch)
    assert image_io.image_header_size(png_bomb(11000, 11000)) == (11000, 11000)
    assert image_io.image_header_size(exr_bomb(8000, 8000)) == (8000, 8000)
    assert image_io.image_header_size(exr_bomb(64, 37)[:400]) == (64, 37)  # the header alone is enough


def test_header_sizes_match_what_the_decoders_return(tmp_path):
    rk.save_png(tmp_path / "a.png", np.zeros((13, 29, 4), np.float32))
    assert image_io.image_file_header_size(tmp_path / "a.png") == (29, 13)
    (tmp_path / "b.exr").write_bytes(exr_bomb(21, 17))
    assert rk.load_image(tmp_path / "b.exr").shape[:2] == (17, 21)
    assert image_io.image_file_header_size(tmp_path / "b.exr") == (21, 17)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00", "IHDR"),
        (exr_bomb(10, 10)[:30], "cut off"),
        (b"GIF89a", "not a PNG or OpenEXR"),
    ],
)
def test_bad_headers_are_refused(data, message):
    with pytest.raises(rk.ImageError, match=message):
        image_io.image_header_size(data)


def test_images_over_the_cap_are_refused_before_decoding(tmp_path, monkeypatch):
    _no_decoding(monkeypatch)
    with pytest.raises(rk.ImageError, match="11000x11000 pixels, over the limit of 67108864"):
        rk.load_image_bytes(png_bomb(11000, 11000))
    (tmp_path / "big.png").write_bytes(png_bomb(9000, 9000))
    with pytest.raises(rk.ImageError, match="over the limit"):
        rk.load_image(tmp_path / "big.png")
    (tmp_path / "big.exr").write_bytes(exr_bomb(8000, 8000))
    with pytest.raises(rk.ImageError, match="8000x8000 pixels, over the limit of 1000000"):
        rk.load_image(tmp_path / "big.exr", max_pixels=1000 * 1000)


def test_other_formats_are_capped_from_pillows_header_too(tmp_path, monkeypatch):
    _no_decoding(monkeypatch)
    Image.new("L", (300, 200)).save(tmp_path / "img.bmp")
    with pytest.raises(rk.ImageError, match="300x200 pixels, over the limit of 1000"):
        rk.load_image(tmp_path / "img.bmp", max_pixels=1000)


def test_the_default_cap_is_8k_square_and_set_by_the_environment(monkeypatch):
    assert image_io.DEFAULT_MAX_PIXELS == 8192 * 8192  # RENDER_KERNELS_MAX_PIXELS is unset in tests
    monkeypatch.setattr(image_io, "DEFAULT_MAX_PIXELS", 100)
    with pytest.raises(rk.ImageError, match="over the limit of 100"):
        rk.load_image_bytes(png_bomb(20, 20))
    assert rk.load_image_bytes(png_bomb(10, 10)).shape == (10, 10, 1)


def test_result_bytes_are_checked_from_the_header_then_decoded(monkeypatch):
    """`image_from_bytes` (an agent's upload, a stored result): PNG or EXR only, the expected size and under the cap
    from the header, before any pixel is decoded."""
    with pytest.raises(rk.ImageError, match="only PNG and OpenEXR"):
        rk.image_from_bytes(b"GIF89a" + bytes(100))
    _no_decoding(monkeypatch)
    with pytest.raises(rk.WrongSize, match="image is 64x37, leased 64x36"):
        rk.image_from_bytes(exr_bomb(64, 37), size=(64, 36))
    with pytest.raises(rk.WrongSize, match="image is 20x20, over the limit of 100 pixels"):
        rk.image_from_bytes(png_bomb(20, 20), max_pixels=100)
    assert rk.image_size_check(png_bomb(20, 10), size=(20, 10)) == (20, 10)


def test_a_result_decodes_and_gives_a_png_thumbnail(tmp_path):
    rk.save_png(tmp_path / "a.png", np.linspace(0, 1, 40 * 60 * 3, dtype=np.float32).reshape(40, 60, 3))
    image = rk.image_from_bytes((tmp_path / "a.png").read_bytes(), size=(60, 40))
    assert image.shape == (40, 60, 3)
    thumb = rk.thumbnail_png(image, max_side=30)
    assert thumb.startswith(image_io.PNG_SIGNATURE) and image_io.image_header_size(thumb) == (30, 20)
