"""Download writes frame N where Blender would write it, and nothing outside the output folder, whatever the
zip's member names say."""

import zipfile

import pytest


@pytest.mark.slow
def test_frames_go_to_blenders_paths_and_odd_names_stay_in_the_output_folder(blender, tmp_path):
    archive = tmp_path / "frames.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("job7/frame_000001.png", b"one")
        zf.writestr("job7/frame_000002.exr", b"two")
        zf.writestr("job7/frame_000003_tile0x1.png", b"tile")
        zf.writestr("../../escape.png", b"evil")
        zf.writestr("/etc/evil name.png", b"evil")
    out = tmp_path / "render"
    targets = {1: str(out / "shot_0001.png"), 2: str(out / "shot_0002.png"), 3: str(out / "shot_0003.png")}
    [record] = blender.run([{"do": "extract", "zip": str(archive), "targets": targets, "folder": str(out)}])
    written = record["written"]
    assert written == [
        str(out / "shot_0001.png"),
        str(out / "shot_0002.exr"),
        str(out / "frame_000003_tile0x1.png"),
        str(out / "escape.png"),
        str(out / "evil_name.png"),
    ]
    assert (out / "shot_0001.png").read_bytes() == b"one" and (out / "shot_0002.exr").read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.rglob("*.png") if out not in p.parents) == []
