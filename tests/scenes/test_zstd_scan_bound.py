"""The web request's scan of a zstd .blend is bounded: a ~2 MB zstd bomb that expands to 64 GiB costs at most the
configured seconds (or bytes) of decompression, never the whole stream."""

import time

import pytest
import zstandard

from marketplace.scenes import conf, validation

FRAME_BYTES = 64 << 20


@pytest.fixture(scope="module")
def zstd_bomb(tmp_path_factory):
    """A .blend-looking zstd stream of 1024 frames of 64 MiB of zeros each (64 GiB), about 2 MB on disk."""
    compress = zstandard.ZstdCompressor(level=3).compress
    head = compress(b"BLENDER-v500" + b"\0" * FRAME_BYTES)
    zeros = compress(b"\0" * FRAME_BYTES)
    path = tmp_path_factory.mktemp("zstd") / "bomb.blend"
    with open(path, "wb") as f:
        f.write(head)
        for _ in range(1023):
            f.write(zeros)
    assert path.stat().st_size < 4 << 20
    return path


def timed_check(path) -> float:
    start = time.monotonic()
    checked = validation.check_upload(path, filename="bomb.blend")
    assert checked.kind == "blend"  # past the bound the sandboxed inspection judges the rest
    return time.monotonic() - start


def test_the_bounds_default_to_1_gib_and_2_seconds():
    assert conf.ZSTD_SCAN_BYTES == 1 << 30 and conf.ZSTD_SCAN_SECONDS == 2.0


def test_a_zstd_bomb_costs_the_request_at_most_a_few_seconds(zstd_bomb):
    assert timed_check(zstd_bomb) < conf.ZSTD_SCAN_SECONDS + 1.0


def test_the_time_bound_holds_whatever_the_byte_bound(zstd_bomb, settings):
    settings.SCENE_ZSTD_SCAN_BYTES = 1 << 50
    settings.SCENE_ZSTD_SCAN_SECONDS = 0.5
    assert timed_check(zstd_bomb) < 1.5


def test_a_short_zstd_blend_without_its_end_block_is_still_refused(tmp_path):
    path = tmp_path / "cut.blend"
    path.write_bytes(zstandard.ZstdCompressor().compress(b"BLENDER-v500" + b"\0" * 1000))
    with pytest.raises(validation.SceneRejected, match="end-of-file block is missing"):
        validation.check_upload(path, filename="cut.blend")
