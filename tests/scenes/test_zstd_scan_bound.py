"""The web request's scan of a zstd .blend is bounded: a ~2 MB zstd bomb that expands to 64 GiB costs at most the
configured bytes (1 GiB) or seconds (2 s) of decompression, whichever comes first, never the whole stream.

Zero-filled frames decompress at memory speed, so the bounds are checked by counting what the scan reads (and,
for the time bound, by making each read slow), not by timing a fast machine."""

import time

import pytest
import zstandard

from marketplace.scenes import validation

FRAME_BYTES = 64 << 20
GIB = 1 << 30


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


class Meter:
    """Counts what the scan decompresses; `delay` slows each read; past `stop` bytes the scan is unbounded."""

    def __init__(self, monkeypatch, *, delay: float = 0.0, stop: int = 2 * GIB) -> None:
        self.read, self.delay, self.stop = 0, delay, stop
        real = zstandard.ZstdDecompressor
        meter = self

        class Reader:
            def __init__(self, inner) -> None:
                self.inner = inner

            def __enter__(self):
                self.inner.__enter__()
                return self

            def __exit__(self, *exc):
                return self.inner.__exit__(*exc)

            def read(self, size: int) -> bytes:
                data = self.inner.read(size)
                meter.read += len(data)
                time.sleep(meter.delay)
                if meter.read > meter.stop:
                    raise AssertionError(f"the scan read {meter.read} bytes and was still going")
                return data

        class Decompressor:
            def stream_reader(self, f, **kwargs):
                return Reader(real().stream_reader(f, **kwargs))

        monkeypatch.setattr(zstandard, "ZstdDecompressor", Decompressor)


def check(path) -> float:
    start = time.monotonic()
    checked = validation.check_upload(path, filename="bomb.blend")
    assert checked.kind == "blend"  # past the bound the sandboxed inspection judges the rest
    return time.monotonic() - start


def test_the_scan_of_a_zstd_bomb_stops_at_1_gib(zstd_bomb, monkeypatch):
    meter = Meter(monkeypatch)
    elapsed = check(zstd_bomb)
    assert GIB <= meter.read <= GIB + (1 << 20)
    assert elapsed < 3.0


def test_the_scan_stops_after_its_seconds_however_slow_each_read(zstd_bomb, monkeypatch, settings):
    settings.SCENE_ZSTD_SCAN_SECONDS = 0.5
    meter = Meter(monkeypatch, delay=0.01, stop=256 << 20)  # 10 ms per MiB: 256 MiB would take 2.6 s
    assert check(zstd_bomb) < 1.5
    assert meter.read < 100 << 20


def test_a_short_zstd_blend_without_its_end_block_is_still_refused(tmp_path):
    path = tmp_path / "cut.blend"
    path.write_bytes(zstandard.ZstdCompressor().compress(b"BLENDER-v500" + b"\0" * 1000))
    with pytest.raises(validation.SceneRejected, match="end-of-file block is missing"):
        validation.check_upload(path, filename="cut.blend")
