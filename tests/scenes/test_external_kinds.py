"""The marketplace refuses an upload whose Geometry Nodes bakes, point caches or proxies read outside it."""

import pytest

from marketplace.scenes.models import Scene

pytest_plugins = ["tests.fixtures.blend_fixtures"]
pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def test_bakes_caches_and_proxies_outside_the_upload_are_refused(upload, artist, blend_factory):
    case = blend_factory.get("external_kinds")
    scene = upload(artist, case.blend)
    assert scene.status == Scene.Status.REFUSED
    assert "the scene reads files outside its upload" in scene.refusal
    for kind, where, raw, why in (
        ("geometry_bake", "Baked / modifier 'Bakes'", "//../../other-job/bundle/gn_bake/", "escapes the bundle (..)"),
        ("point_cache", "Cloth / modifier 'Cloth'", f"{case.private}/cloth_cache/", "absolute path"),
        ("point_cache", "Scene / rigid body world", f"{case.private}/rigid_body_cache/", "absolute path"),
        ("fluid_cache", "Domain", f"{case.private}/fluid_cache", "absolute path"),
        ("sequencer", "Scene / sequencer proxies", f"{case.private}/project_proxy/", "absolute path"),
        ("movie_clip", "Clip proxy", f"{case.private}/clip_proxy/", "absolute path"),
    ):
        assert f"{kind} {where!r}: {raw} ({why})" in scene.refusal
    kinds = {o["kind"] for o in scene.report["outside_paths"]}
    assert {"geometry_bake", "point_cache", "fluid_cache", "ocean_cache", "mesh_cache", "sequencer"} <= kinds
