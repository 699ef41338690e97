"""Path policy (pure Python) and the .blend container pre-check: no bpy involved."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from workers.blend.inspect_scene import check_blend_file
from workers.blend.paths import PathRef, check_external_paths, describe_refs, resolve_path
from workers.blend.sandbox import BlendFileError


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    root = tmp_path / "bundle"
    (root / "textures").mkdir(parents=True)
    (root / "textures" / "wood.png").write_bytes(b"png")
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "secret.png").write_bytes(b"secret")
    os.symlink(tmp_path / "private", root / "linked")
    os.symlink(root / "textures", root / "alias")  # a symlink that stays inside is fine
    return root


def refs(*raw: str, kind: str = "image") -> list[PathRef]:
    return [PathRef(kind=kind, datablock=f"DB{i}", raw_path=r) for i, r in enumerate(raw)]


def test_paths_inside_the_bundle_pass(bundle: Path) -> None:
    ok = refs(
        "//textures/wood.png",
        "//textures/../textures/wood.png",
        "//alias/wood.png",
        "//textures/missing.png",
        "//frames/img_####.png",
        "//tiles/t.<UDIM>.png",
        "",
    )
    assert check_external_paths(ok, bundle_root=bundle) == []


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("/etc/hostname", "absolute path"),
        ("//../../secret.png", "escapes the bundle (..)"),
        ("//textures/../../private/secret.png", "escapes the bundle (..)"),
        ("//linked/secret.png", "symlink leads outside the bundle"),
        ("C:\\Users\\me\\secret.png", "Windows drive path"),
        ("//C:/secret.png", "Windows drive path"),
        ("\\\\server\\share\\secret.png", "UNC/network path"),
        ("//\\server\\share\\x.png", "UNC/network path"),
        ("textures/wood.png", "relative path not anchored to the .blend (must start with //)"),
        ("///etc/passwd", "absolute path after //"),
        ("//..\\..\\secret.png", "escapes the bundle (..)"),
        ("//tex\x00.png", "invalid path (NUL byte)"),
    ],
)
def test_offences_name_datablock_raw_path_and_reason(bundle: Path, raw: str, reason: str) -> None:
    [offence] = check_external_paths([{"kind": "image", "datablock": "Secret", "raw_path": raw}], bundle_root=bundle)
    assert (offence.kind, offence.datablock, offence.raw_path, offence.reason) == (
        "image",
        "Secret",
        raw,
        reason,
    )
    assert offence.as_dict()["raw_path"] == raw


def test_blend_in_a_subdirectory_resolves_relative_to_itself(bundle: Path) -> None:
    scenes = bundle / "scenes"
    scenes.mkdir()
    assert check_external_paths(refs("//../textures/wood.png"), bundle_root=bundle, blend_dir=scenes) == []
    [o] = check_external_paths(refs("//../../x.png"), bundle_root=bundle, blend_dir=scenes)
    assert o.reason == "escapes the bundle (..)"


def test_linked_data_resolves_against_its_library(bundle: Path) -> None:
    lib_dir = bundle / "libs"
    lib_dir.mkdir()
    ref = PathRef("image", "Wood [lib.blend]", "//../textures/wood.png", base_dir=str(lib_dir))
    assert check_external_paths([ref], bundle_root=bundle) == []
    outside = PathRef("image", "X [lib.blend]", "//x.png", base_dir=str(bundle.parent / "private"))
    [o] = check_external_paths([outside], bundle_root=bundle)
    assert o.reason == "the referencing .blend is outside the bundle"


def test_packed_data_and_builtin_font_are_not_references(bundle: Path) -> None:
    data = [PathRef("image", "Packed", "/etc/passwd", packed=True), PathRef("font", "Bfont", "<builtin>")]
    assert check_external_paths(data, bundle_root=bundle) == []


def test_describe_refs_reports_relative_path_and_existence_without_probing_outside(bundle: Path) -> None:
    rows = describe_refs(refs("//textures/wood.png", "//textures/gone.png", "/etc/hostname"), bundle_root=bundle)
    assert [(r["resolved"], r["inside_bundle"], r["exists"]) for r in rows] == [
        ("textures/wood.png", True, True),
        ("textures/gone.png", True, False),
        (None, False, False),  # never probed: a report must not reveal the inspecting machine's files
    ]


def test_resolve_path_normalises(bundle: Path) -> None:
    res = resolve_path("//textures/./wood.png", bundle_root=bundle)
    assert res.inside_bundle and res.relative == "textures/wood.png" and res.exists


# ------------------------------------------------------------------ container pre-check


def test_precheck_accepts_blender_containers(tmp_path: Path) -> None:
    body = b"BLENDER17-01v0500" + b"\x00" * 100 + b"ENDB" + b"\x00" * 28
    plain = tmp_path / "plain.blend"
    plain.write_bytes(body)
    gz = tmp_path / "old.blend"
    gz.write_bytes(gzip.compress(b"BLENDER-v279" + b"\x00" * 100 + b"ENDB" + b"\x00" * 20))
    assert check_blend_file(plain) == "uncompressed"
    assert check_blend_file(gz) == "gzip"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a Blender file"),
        (b"PK\x03\x04zipfile" * 10, "not a Blender file"),
        (b"BLEND", "corrupt or truncated .blend"),
        (b"BLENDER17-01v0500" + b"\x00" * 200, "corrupt or truncated .blend"),
        (gzip.compress(b"BLENDER-v279" + b"\x00" * 1000)[:40], "corrupt or truncated .blend"),
        (gzip.compress(b"hello world" * 10), "not a Blender file"),
    ],
)
def test_precheck_rejects(tmp_path: Path, data: bytes, message: str) -> None:
    f = tmp_path / "x.blend"
    f.write_bytes(data)
    with pytest.raises(BlendFileError, match=message):
        check_blend_file(f)


def test_precheck_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BlendFileError, match="not a Blender file"):
        check_blend_file(tmp_path / "nope.blend")
