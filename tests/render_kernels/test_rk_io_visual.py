"""Image I/O (PNG 8/16-bit, EXR) and the human-facing images (heatmap, thumbnail, watermark)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image
from rk_testimages import structured

import render_kernels as rk


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png_8bit_round_trip(tmp_path, channels):
    img = structured(21, 34, c=channels, seed=channels)
    path = tmp_path / "img8.png"
    rk.save_png(path, img)
    back = rk.load_image(path)
    assert back.shape == (21, 34, channels) and back.dtype == np.float32
    assert np.abs(back - img).max() <= 0.5 / 255 + 1e-6


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png_16bit_round_trip_is_exact(tmp_path, channels):
    rng = np.random.default_rng(channels)
    raw = rng.integers(0, 65536, (19, 27, channels), dtype=np.uint16)
    raw[0, 0] = 0x01FF  # low byte set, high byte small: an 8-bit decode would lose it
    path = tmp_path / "img16.png"
    rk.save_png(path, raw)
    with Image.open(path) as im:
        assert ";16" in str(im.tile[0][3]) or im.mode.startswith("I;16")  # really a 16-bit PNG
    back = rk.load_image(path)
    assert back.shape == (19, 27, channels)
    np.testing.assert_array_equal(np.rint(back * 65535).astype(np.uint16), raw)


def test_16bit_grey_png_written_by_pillow_loads(tmp_path):
    raw = np.arange(0, 65536, 97, dtype=np.uint16)[:600].reshape(20, 30)
    path = tmp_path / "grey16.png"
    Image.fromarray(raw).save(path)
    back = rk.load_image(path)
    np.testing.assert_array_equal(np.rint(back[:, :, 0] * 65535).astype(np.uint16), raw)


def test_float_image_saved_as_16bit_keeps_precision(tmp_path):
    img = structured(16, 16, seed=3)
    rk.save_png(tmp_path / "f16.png", img, bits=16)
    assert np.abs(rk.load_image(tmp_path / "f16.png") - img).max() <= 0.5 / 65535 + 1e-7


def test_missing_and_undecodable_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        rk.load_image(tmp_path / "nope.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(rk.ImageError):
        rk.load_image(bad)
    good = tmp_path / "good.png"
    rk.save_png(good, structured(30, 30, seed=1))
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(rk.ImageError):
        rk.load_image(truncated)


def test_exr_without_openexr_module_gives_a_clear_error(tmp_path, monkeypatch):
    path = tmp_path / "x.exr"
    path.write_bytes(b"not really")
    monkeypatch.setitem(sys.modules, "OpenEXR", None)  # makes `import OpenEXR` raise ImportError
    with pytest.raises(rk.ImageError, match="OpenEXR"):
        rk.load_image(path)


def test_exr_round_trip_with_blender_layer_names(tmp_path):
    openexr = pytest.importorskip("OpenEXR", reason="OpenEXR Python module not installed")
    if not hasattr(openexr, "File"):
        pytest.skip("test writes with the OpenEXR >= 3.3 API")
    rng = np.random.default_rng(0)
    rgba = (rng.random((12, 18, 4)) * 3).astype(np.float32)  # HDR values above 1 are kept
    channels = {f"ViewLayer.Combined.{c}": rgba[..., i].copy() for i, c in enumerate("RGBA")}
    channels["ViewLayer.Depth.Z"] = rgba[..., 0].copy()
    header = {"compression": openexr.ZIP_COMPRESSION, "type": openexr.scanlineimage}
    with openexr.File(header, channels) as f:
        f.write(str(tmp_path / "render.exr"))
    back = rk.load_image(tmp_path / "render.exr")
    np.testing.assert_array_equal(back, rgba)


def test_diff_heatmap_shape_black_for_equal_and_visible_at_one_level():
    ref = structured(20, 30, seed=2)
    cand = ref.copy()
    cand[5, 7, 1] += 1 / 255
    cand[10, 20, :] = 1.0 - cand[10, 20, :]
    heat = rk.diff_heatmap(cand, ref)
    assert heat.shape == (20, 30, 3) and heat.dtype == np.uint8
    zero = heat[0, 0].astype(int)
    one_level = heat[5, 7].astype(int)
    big = heat[10, 20].astype(int)
    assert zero.sum() < 10  # black-ish where identical
    assert one_level.sum() - zero.sum() > 60  # a 1/255 error is clearly visible
    assert big.sum() > one_level.sum() + 200  # brighter for bigger errors
    with pytest.raises(ValueError, match="shape"):
        rk.diff_heatmap(ref, ref[:10])


def test_thumbnail_keeps_aspect_and_never_upscales():
    img = structured(90, 160, seed=3)
    thumb = rk.thumbnail(img, 64)
    assert thumb.dtype == np.uint8 and thumb.shape == (36, 64, 3)
    small = rk.thumbnail(img, 500)
    assert small.shape == (90, 160, 3)
    grey = rk.thumbnail(img[..., :1], 32)
    assert grey.shape == (18, 32, 1)
    with pytest.raises(ValueError):
        rk.thumbnail(img, 0)


@pytest.mark.parametrize("value", [0.0, 0.5, 1.0])
def test_watermark_changes_pixels_and_keeps_shape(value):
    img = np.full((120, 200, 3), value, np.float32)
    marked = rk.watermark(img, "PREVIEW")
    assert marked.shape == (120, 200, 3) and marked.dtype == np.uint8
    base = np.rint(img * 255).astype(np.uint8)
    changed = np.any(marked != base, axis=2).mean()
    assert 0.02 < changed < 0.8  # visibly tiled, but semi-transparent text, not a fill
    assert np.array_equal(marked, rk.watermark(img, "PREVIEW"))  # deterministic
    rgba = rk.watermark(np.concatenate([img, np.ones((120, 200, 1), np.float32)], axis=2), "X")
    assert rgba.shape == (120, 200, 4)


@pytest.mark.parametrize("bits", [8, 16])
def test_png_from_memory_decodes_like_the_file(tmp_path, bits):
    image = structured(17, 23, seed=3)
    path = tmp_path / "frame.png"
    rk.save_png(path, image, bits=bits)
    from_file = rk.load_image(path)
    np.testing.assert_array_equal(rk.load_image_bytes(path.read_bytes()), from_file)
    if bits == 16:  # the 16-bit decoder keeps the low byte too
        assert np.abs(from_file - image).max() < 1 / 65535 + 1e-7


def test_junk_bytes_are_an_image_error():
    with pytest.raises(rk.ImageError, match="not a recognised image format"):
        rk.load_image_bytes(b"not an image at all")


def _png(pixels: np.ndarray, **save) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", **save)
    return buf.getvalue()


def _float_path_summary(data: bytes, side: int) -> tuple[float, bytes]:
    """What the report computed before `result_summary`: the float decode, its deviation, its thumbnail."""
    image = rk.image_from_bytes(data)
    return float(image[..., :3].std()), rk.thumbnail_png(image, max_side=side)


def _uploads() -> dict[str, bytes]:
    rng = np.random.default_rng(7)
    rgb = (structured(90, 160, c=3, seed=1) * 255).round().astype(np.uint8)
    rgba = (structured(90, 160, c=4, seed=2) * 255).round().astype(np.uint8)
    return {
        "rgb": _png(rgb),
        "rgba": _png(rgba),
        "grey": _png(rgb[..., 0]),
        "grey+alpha (float path)": _png_la(rgba[..., :2]),
        "rgb with a transparent colour": _png(rgb, transparency=(0, 0, 0)),
        "small (no upscale)": _png(rgb[:20, :30].copy()),
        "tall": _png(rgb.transpose(1, 0, 2).copy()),
        "flat": _png(np.full((40, 60, 3), 128, np.uint8)),
        "palette (float path)": _png_palette(rgb),
        "16-bit colour (float path)": _png16(rng.integers(0, 65536, (30, 50, 3), dtype=np.uint16)),
    }


def _png_la(pixels: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(np.dstack([pixels[..., 0]] * 3 + [pixels[..., 1]])).convert("LA").save(buf, format="PNG")
    return buf.getvalue()


def _png_palette(rgb: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(rgb).quantize(32).save(buf, format="PNG")
    return buf.getvalue()


def _png16(raw: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    rk.save_png(buf, raw)
    return buf.getvalue()


@pytest.mark.parametrize("name", list(_uploads()))
@pytest.mark.parametrize("side", [0, 64, 256])
def test_the_result_summary_is_what_the_float_decode_gives(name, side):
    """The report's check and preview (issue 17): an 8-bit PNG is summarised from Pillow's 8-bit decode, every
    other image through the float decode; either way the same deviation and the same thumbnail bytes."""
    from render_kernels.image_io import png8_open

    data = _uploads()[name]
    assert (png8_open(data) is not None) == ("float path" not in name)  # which way it went
    std, thumbnail = _float_path_summary(data, side or 256)
    summary = rk.result_summary(data, thumbnail_side=side)
    assert summary.colour_std == pytest.approx(std, abs=1e-6)
    assert summary.thumbnail == (thumbnail if side else b"")
    if name == "flat":
        assert summary.colour_std == 0.0


def test_the_result_summary_refuses_what_the_float_decode_refuses():
    data = _uploads()["rgb"]
    with pytest.raises(rk.WrongSize):
        rk.result_summary(data, size=(161, 90))
    with pytest.raises(rk.ImageError):
        rk.result_summary(data, max_pixels=160 * 90 - 1)
    with pytest.raises(rk.ImageError):  # truncated mid-pixels: the header reads, the decode does not
        rk.result_summary(data[: len(data) // 2], size=(160, 90), thumbnail_side=64)
    with pytest.raises(rk.ImageError):
        rk.result_summary(b"\xff\xd8\xff\xe0 a jpeg", thumbnail_side=64)
    assert rk.result_summary(data, size=(160, 90)).colour_std > 0.1
