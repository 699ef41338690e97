"""The agent's scene cache: the same bytes uploaded under two names are two bundles, never one."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from workers.agent import Agent
from workers.bundle import BundleError, bundle_key
from workers.config import AgentConfig
from workers.contract import Lease, RenderManifest

BLEND = b"BLENDER17-01v0500" + b"\x00" * 100 + b"ENDB" + b"\x00" * 28


def agent(tmp_path: Path) -> Agent:
    return Agent(
        AgentConfig(server="http://127.0.0.1:9", token="t", cache_dir=str(tmp_path / "cache")),
        renderer_factory=lambda **_: None,
        devices=[],
        blender_version="5.0.1",
    )


def details(sha: str, kind: str, blend_path: str) -> Lease:
    # scene_url is never fetched: the archive is already in the download cache.
    manifest = RenderManifest(
        frame=1,
        samples=1,
        seed=0,
        resolution_x=4,
        resolution_y=4,
        scene_sha256=sha,
        scene_kind=kind,
        blend_path=blend_path,
    )
    return Lease(
        id=1,
        kind="render",
        expires_at="",
        manifest=manifest,
        scene_url="http://127.0.0.1:9/never",
        upload_url="http://127.0.0.1:9/never",
    )


def seed_download(a: Agent, data: bytes, kind: str) -> str:
    sha = hashlib.sha256(data).hexdigest()
    archive = a.cache / "downloads" / f"{sha}.{kind}"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(data)
    return sha


def test_same_blend_bytes_under_two_names_are_two_bundles(tmp_path: Path) -> None:
    a = agent(tmp_path)
    sha = seed_download(a, BLEND, "blend")
    first, first_root = a._scene(details(sha, "blend", "a.blend"))
    # Today's cache kept one directory per hash: this raised "the bundle has no 'x.blend'".
    second, second_root = a._scene(details(sha, "blend", "x.blend"))
    assert (first.name, second.name) == ("a.blend", "x.blend")
    assert first_root != second_root
    assert first.read_bytes() == second.read_bytes() == BLEND
    # Each bundle holds only its own file: a scene never sees another upload's name in its bundle.
    assert sorted(p.name for p in first_root.iterdir()) == [".complete", "a.blend"]
    assert sorted(p.name for p in second_root.iterdir()) == [".complete", "x.blend"]
    # Asking again reuses each bundle.
    assert a._scene(details(sha, "blend", "a.blend")) == (first, first_root)


def test_one_zip_serves_every_blend_inside_it(tmp_path: Path) -> None:
    a = agent(tmp_path)
    zpath = tmp_path / "scene.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("shots/one.blend", BLEND)
        zf.writestr("shots/two.blend", BLEND + b"2")
        zf.writestr("textures/wood.png", b"png")
    sha = seed_download(a, zpath.read_bytes(), "zip")
    one, root_one = a._scene(details(sha, "zip", "shots/one.blend"))
    two, root_two = a._scene(details(sha, "zip", "shots/two.blend"))
    assert root_one == root_two and (root_one / "textures" / "wood.png").exists()
    assert (one.read_bytes(), two.read_bytes()) == (BLEND, BLEND + b"2")
    with pytest.raises(BundleError, match=r"the bundle has no 'shots/three\.blend'"):
        a._scene(details(sha, "zip", "shots/three.blend"))


@pytest.mark.parametrize("sha", ["../../etc", "A" * 64, "0" * 63, "0" * 64 + "/x"])
def test_a_manifest_hash_that_is_not_a_digest_is_refused(sha: str) -> None:
    with pytest.raises(BundleError, match="not a SHA-256 hex digest"):
        bundle_key(sha256=sha, kind="blend", blend_path="scene.blend")
