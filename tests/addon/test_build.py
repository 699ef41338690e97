"""`make addon`: an extension zip (manifest + BAT wheel) and a legacy zip (bl_info + BAT unpacked), both carrying
the server's inspection and policy code; the extension installs through Blender's own extension installer."""

import re
import tomllib
import zipfile
from pathlib import Path

import pytest

from marketplace.scenes import conf

BAT_WHEEL = "wheels/blender_asset_tracer-1.23-py3-none-any.whl"


def test_the_extension_zip_declares_the_bat_wheel_it_carries(addon_zips):
    extension, _ = addon_zips
    with zipfile.ZipFile(extension) as zf:
        names = set(zf.namelist())
        manifest = tomllib.loads(zf.read("blender_manifest.toml").decode())
    assert manifest["id"] == "render_market" and manifest["blender_version_min"] == "4.2.0"
    assert manifest["wheels"] == [f"./{BAT_WHEEL}"] and BAT_WHEEL in names
    assert {"__init__.py", "ops.py", "shared/policy.py", "shared/inspect_scene.py", "shared/conf.py"} <= names
    assert "network" in manifest["permissions"] and "files" in manifest["permissions"]


def test_the_legacy_zip_carries_bat_unpacked_and_no_manifest(addon_zips):
    _, legacy = addon_zips
    with zipfile.ZipFile(legacy) as zf:
        names = set(zf.namelist())
        init = zf.read("render_market/__init__.py").decode()
    assert "render_market/_vendor/blender_asset_tracer/pack/__init__.py" in names
    assert "render_market/blender_manifest.toml" not in names and "bl_info = {" in init


def test_the_shared_code_imports_nothing_from_the_server_and_has_its_limits(addon_zips):
    extension, _ = addon_zips
    with zipfile.ZipFile(extension) as zf:
        shared = {n: zf.read(n).decode() for n in zf.namelist() if n.startswith("shared/")}
        namespace: dict = {}
        exec(shared["shared/conf.py"], namespace)
    for name, text in shared.items():
        assert not re.findall(r"^\s*(?:from|import)\s+(?:workers|marketplace|django)\b", text, re.M), name
    assert namespace["MAX_SIDE"] == conf.DEFAULTS["MAX_SIDE"] and namespace["MAX_FRAMES"] == conf.DEFAULTS["MAX_FRAMES"]


@pytest.mark.slow
def test_the_extension_installs_with_its_wheel_and_checks_a_scene(blender, addon_zips, demo_source, project, tmp_path):
    extension, _ = addon_zips
    [_, checked] = blender.run(
        [{"do": "make_textured", "source": str(demo_source), **project}, {"do": "press", "button": "check"}],
        install="extension",
        addon_zip=extension,
    )
    site = tmp_path / "blender-user" / "extensions" / ".local" / "lib"
    assert [p for p in site.glob("python3*/site-packages/blender_asset_tracer/pack/__init__.py")]
    assert checked["state"]["check"]["refusals"][0].startswith("the scene reads files outside its upload")
    assert Path(project["project"], "scene.blend").exists()
