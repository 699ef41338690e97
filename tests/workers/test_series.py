"""Blender series: the version a file was saved with, the series chosen for it, the agent's runtimes."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest
import zstandard
from click.testing import CliRunner

from workers import runtimes
from workers.blend.version import UnknownBlendVersion, saved_version
from workers.cli import cli
from workers.runtimes import BY_NAME, SeriesRefused, pick_series

SAVE = "import bpy, sys; bpy.ops.wm.save_as_mainfile(filepath=sys.argv[-1], compress={compress})"


@pytest.fixture(scope="module")
def saved_files(tmp_path_factory) -> dict[str, Path]:
    """A file saved by this bpy (5.0) plain and compressed (zstd), and its gzip twin."""
    root = tmp_path_factory.mktemp("saved")
    files = {"plain": root / "plain.blend", "zstd": root / "zstd.blend"}
    for kind, path in files.items():
        code = SAVE.format(compress=kind == "zstd")
        subprocess.run([sys.executable, "-c", code, path], check=True, capture_output=True)
    files["gzip"] = root / "gzip.blend"
    files["gzip"].write_bytes(gzip.compress(files["plain"].read_bytes()))
    return files


@pytest.mark.parametrize("kind", ["plain", "zstd", "gzip"])
def test_it_reads_the_version_this_blender_saved_with(saved_files, kind):
    assert saved_files["zstd"].read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
    assert saved_version(saved_files[kind]) == (5, 0)


@pytest.mark.parametrize(
    ("header", "version"),
    [
        (b"BLENDER-v405REND", (4, 5)),
        (b"BLENDER_v279REND", (2, 79)),
        (b"BLENDER-V402REND", (4, 2)),
        (b"BLENDER17-01v0503", (5, 3)),
    ],
)
def test_it_reads_legacy_and_large_headers(tmp_path, header, version):
    path = tmp_path / "x.blend"
    path.write_bytes(header + b"\0" * 64)
    assert saved_version(path) == version
    path.write_bytes(zstandard.ZstdCompressor().compress(header + b"\0" * 64))
    assert saved_version(path) == version


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 a zip", b"BLENDERxyz", b"\x28\xb5\x2f\xfdgarbage"])
def test_it_refuses_what_has_no_blender_header(tmp_path, content):
    path = tmp_path / "x.blend"
    path.write_bytes(content)
    with pytest.raises(UnknownBlendVersion):
        saved_version(path)


def test_a_supported_series_renders_its_own_files():
    for series in runtimes.SUPPORTED:
        assert pick_series(series.key) == runtimes.SeriesChoice(series)


def test_an_unsupported_series_between_two_goes_to_the_nearest_newer_with_a_warning():
    choice = pick_series((4, 3))
    assert choice.series is BY_NAME["4.5"]
    assert "saved with Blender 4.3" in choice.warning and "Blender 4.5 LTS" in choice.warning
    assert pick_series((5, 1)).series is BY_NAME["5.3"]


def test_a_file_newer_than_every_series_renders_with_the_newest_and_says_what_may_be_lost():
    choice = pick_series((9, 1))
    assert choice.series is runtimes.SUPPORTED[-1]
    assert "may be lost" in choice.warning


def test_a_file_older_than_the_oldest_series_is_refused_with_what_to_do():
    with pytest.raises(SeriesRefused, match=r"saved with Blender 2\.79.*open it in Blender 4\.2 LTS or newer"):
        pick_series((2, 79))


def test_runtimes_list_shows_the_built_in_series_and_the_missing_ones(tmp_path):
    result = CliRunner().invoke(cli, ["runtimes", "list", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()}
    assert lines.keys() == BY_NAME.keys()
    assert "built in" in lines["5.0"]
    assert "not installed" in lines["4.5"]


def test_runtimes_refuses_an_unknown_series_and_removing_what_is_not_there(tmp_path):
    runner = CliRunner()
    unknown = runner.invoke(cli, ["runtimes", "install", "3.6", "--cache-dir", str(tmp_path)])
    assert unknown.exit_code != 0 and "unknown series 3.6" in unknown.output
    absent = runner.invoke(cli, ["runtimes", "remove", "4.5", "--cache-dir", str(tmp_path)])
    assert absent.exit_code != 0 and "no runtime for 4.5" in absent.output


def test_an_incomplete_runtime_does_not_count_as_installed(tmp_path):
    venv = runtimes.runtimes_dir(tmp_path) / "4.5"
    (venv / "bin").mkdir(parents=True)  # an install that died half-way: no .complete marker
    assert "4.5" not in runtimes.installed(tmp_path)
    (venv / ".complete").write_text("4.5.15")
    assert runtimes.installed(tmp_path)["4.5"].python == venv / "bin" / "python"
