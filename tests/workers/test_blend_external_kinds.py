"""Every kind of external path Blender knows is judged by the path policy, in the marketplace's inspection
and in the agent's render server alike: Geometry Nodes bakes, external point caches, simulation caches,
media, fonts, volumes, Alembic, OSL/IES files, sequencer strips and proxies.

`external_kinds` (tests/fixtures/_blend_cases.py) holds one datablock of each kind reading outside its
bundle; `external_kinds_inside` the same datablocks with every path inside. The RNA audit fails when a
Blender upgrade adds a path property nobody has judged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.blend_factory import BlendFactory
from workers.blend import Renderer, RenderRefused, _landlock, inspect_scene
from workers.blend.paths import PATH_PROPERTIES, UI_STRUCT_PREFIXES
from workers.blend.sandbox import run_bpy_module

pytest_plugins = ["tests.fixtures.blend_fixtures"]
pytestmark = pytest.mark.slow

# (kind, datablock, raw path) of every reference outside the bundle; {private}: the case's private dir.
# The geometry bake directory points at another bundle of the agent's cache: another job's bake.
OUTSIDE = {
    "geometry_bake": {
        ("Baked / modifier 'Bakes'", "//../../other-job/bundle/gn_bake/"),
        ("Baked / modifier 'Bakes' / bake {bake_id}", "{private}/gn_custom_bake/"),
    },
    "point_cache": {
        ("Cloth / modifier 'Cloth'", "{private}/cloth_cache/"),
        ("Soft / modifier 'Softbody'", "{private}/softbody_cache/"),
        ("Emitter / particles 'Particles'", "{private}/particle_cache/"),
        ("Canvas / modifier 'Paint' / surface 'Surface'", "{private}/dynamic_paint_cache/"),
        ("Scene / rigid body world", "{private}/rigid_body_cache/"),
    },
    "fluid_cache": {("Domain", "{private}/fluid_cache")},
    "ocean_cache": {("Ocean", "{private}/ocean_cache")},
    "mesh_cache": {("Ocean", "{private}/mesh.mdd")},
    "cache_file": {("cache.abc", "//../../external_kinds/private/cache.abc")},
    "volume": {("Smoke", "{private}/vol.vdb")},
    "image": {("FrameSequence", "{private}/frames/f_####.png")},
    "movie_clip": {("Clip", "{private}/clip.mp4"), ("Clip proxy", "{private}/clip_proxy/")},
    "sound": {("Sound", "{private}/sound.wav"), ("sound.wav", "{private}/sound.wav")},
    "font": {("DejaVu Sans Mono Book", "{private}/font.woff2")},
    "osl_script": {("CubeNoise", "{private}/steal.osl"), ("OSLCamera", "{private}/camera.osl")},
    "ies": {("IESLight", "{private}/light.ies")},
    "sequencer": {
        ("Scene", "{private}/clip.mp4"),
        ("Scene", "{private}/frames/f_0001.png"),
        ("Scene", "{private}/sound.wav"),
        ("Scene / sequencer proxies", "{private}/project_proxy/"),
        ("Scene / strip 'Stills' proxy", "{private}/"),  # a custom proxy file sets the directory too
        ("Scene / strip 'Stills' proxy", "{private}/strip_proxy.avi"),
    },
}


@pytest.fixture(scope="module")
def reports(blend_factory: BlendFactory) -> dict[str, Any]:
    blend_factory.prebuild(["external_kinds", "external_kinds_inside"])
    return {
        kind: inspect_scene(case.blend, bundle_root=case.bundle_root)
        for kind in ("external_kinds", "external_kinds_inside")
        for case in [blend_factory.get(kind)]
    }


def expected(kind: str, private: Path, report: dict[str, Any]) -> set[tuple[str, str, str]]:
    bake_ids = [o["datablock"].rsplit(" ", 1)[1] for o in report["outside_paths"] if "/ bake " in o["datablock"]]
    return {
        (kind, where.format(bake_id=bake_ids[0] if bake_ids else "?"), raw.format(private=private))
        for where, raw in OUTSIDE[kind]
    }


def test_every_path_property_of_blender_is_judged() -> None:
    found = run_bpy_module("tests.fixtures._rna_paths").result
    unjudged = [p for p in found if p not in PATH_PROPERTIES and not p.startswith(UI_STRUCT_PREFIXES)]
    assert unjudged == [], "new path properties: add them to paths.PATH_PROPERTIES (and read them)"
    assert [p for p in PATH_PROPERTIES if p not in found] == []  # no stale rows
    assert {"NodesModifier.bake_directory", "NodesModifierBake.directory", "PointCache.filepath"} <= {
        p for p, how in PATH_PROPERTIES.items() if how == "walked"
    }


@pytest.mark.parametrize("kind", sorted(OUTSIDE))
def test_inspection_refuses_each_kind_outside_the_bundle(
    reports: dict[str, Any], blend_factory: BlendFactory, kind: str
) -> None:
    report = reports["external_kinds"]
    private = blend_factory.get("external_kinds").private
    got = {(o["kind"], o["datablock"], o["raw_path"]) for o in report["outside_paths"] if o["kind"] == kind}
    assert got == expected(kind, private, report)
    assert all(
        o["reason"] in ("absolute path", "escapes the bundle (..)")
        for o in report["outside_paths"]
        if o["kind"] == kind
    )


def test_inspection_lists_nothing_else(reports: dict[str, Any]) -> None:
    report = reports["external_kinds"]
    assert sorted({o["kind"] for o in report["outside_paths"]}) == sorted(OUTSIDE)
    assert len(report["outside_paths"]) == sum(len(v) for v in OUTSIDE.values())
    assert not any(row["exists"] for row in report["external_files"] if not row["inside_bundle"])  # never probed


def test_the_same_kinds_inside_the_bundle_pass(reports: dict[str, Any]) -> None:
    report = reports["external_kinds_inside"]
    assert report["outside_paths"] == []
    rows = report["external_files"]
    assert {r["kind"] for r in rows} == set(OUTSIDE)  # every kind was seen, and judged inside
    assert all(r["inside_bundle"] and r["resolved"].startswith("ext") for r in rows)
    bakes = {r["raw_path"] for r in rows if r["kind"] == "geometry_bake"}
    assert bakes == {"//ext/gn_bake/", "//ext/gn_custom_bake/"}


@pytest.mark.parametrize("landlock", ["on", "simulated off, --allow-unsandboxed"])
def test_the_render_server_refuses_every_kind(
    blend_factory: BlendFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, landlock: str
) -> None:
    # Without Landlock only the path policy stands between a scene and another job's bake: it must hold.
    if landlock == "on" and _landlock.abi_version() < 1:
        pytest.skip("kernel without Landlock")
    if landlock != "on":
        monkeypatch.setenv(_landlock.SIMULATE_UNAVAILABLE_ENV, "1")
    case = blend_factory.get("external_kinds")
    with Renderer(allow_unsandboxed=landlock != "on") as r:
        with pytest.raises(RenderRefused) as err:
            r.load(case.blend, case.bundle_root)
        kinds = {o["kind"] for o in err.value.offences}
        assert kinds == set(OUTSIDE)
        assert len(err.value.offences) == sum(len(v) for v in OUTSIDE.values())
        assert "//../../other-job/bundle/gn_bake/" in str(err.value)
        assert r.loaded is None
        inside = blend_factory.get("external_kinds_inside")
        info = r.load(inside.blend, inside.bundle_root)  # no false refusal, same render server kind
        assert info["blend_path"] == str(inside.blend)


def test_a_point_cache_name_that_climbs_out_of_its_folder_is_refused(blend_factory: BlendFactory) -> None:
    # Cache files are <folder>/<name>_<frame>_<index>.bphys: Blender's UI strips "/" from the name, a
    # hand-edited .blend keeps it (and Blender reads it as written).
    case = blend_factory.get("point_cache_name_escape")
    report = inspect_scene(case.blend, bundle_root=case.bundle_root)
    assert [(o["kind"], o["datablock"], o["raw_path"], o["reason"]) for o in report["outside_paths"]] == [
        (
            "point_cache",
            "Soft / modifier 'Softbody' / cache name",
            "//blendcache_scene/../../private/steal",
            "escapes the bundle (..)",
        )
    ]
    with Renderer() as r, pytest.raises(RenderRefused, match=r"blendcache_scene/\.\./\.\./private/steal"):
        r.load(case.blend, case.bundle_root)
