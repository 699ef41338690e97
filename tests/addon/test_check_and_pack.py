"""The add-on's Check speaks the server's words; Quote packs with blender-asset-tracer, or with Blender's own
pack_all when BAT cannot read the file; the server's errors reach the panel in its own words.

Against pytest-django's live server with inline Celery (the scene's inspection runs in the upload request).
"""

import io
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
import zstandard
from django.utils import timezone

from marketplace import blobs
from marketplace.jobs.models import Job
from marketplace.scenes import policy
from marketplace.scenes.models import Scene, SceneFile
from marketplace.web.templatetags.money import tokens
from tests.addon.conftest import token_of
from workers.blend import inspect_scene

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def textured(demo_source, project) -> dict:
    return {"do": "make_textured", "source": str(demo_source), **project}


def zip_names(scene: Scene) -> list[str]:
    with blobs.blob_open(scene.storage_key) as f, zipfile.ZipFile(f) as zf:
        return sorted(zf.namelist())


def test_check_reports_what_the_server_would_say_of_the_unpacked_folder(blender, demo_source, project):
    [made, checked] = blender.run([textured(demo_source, project), {"do": "press", "button": "check"}])
    folder = Path(project["project"])
    server = policy.judge(inspect_scene(folder / "scene.blend", bundle_root=folder))
    check = checked["state"]["check"]
    assert check["refusals"] == server.refusals and check["warnings"] == server.warnings
    [outside] = check["refusals"]
    assert outside.startswith("the scene reads files outside its upload")
    assert f"image 'sticker.png': {project['outside']}/sticker.png (absolute path)" in outside
    assert "image 'metal.png': //../library/metal.png (escapes the bundle (..))" in outside
    assert "wood.png" not in outside  # the sibling textures/ folder is inside the project
    assert check["fixed_by_packing"] == [outside] and check["blocking"] == []
    assert checked["state"]["status"] == "ready to quote once packed"
    assert made["images"]["sticker.png"] == f"{project['outside']}/sticker.png"


def test_quote_packs_with_bat_and_the_server_accepts_the_bundle(
    blender, demo_source, project, live_server, media, artist
):
    [_, _, pressed, quoted] = blender.run(
        [
            textured(demo_source, project),
            {"do": "prefs", "server_url": live_server.url, "token": token_of(artist), "packing": "AUTO"},
            {"do": "press", "button": "quote", "wait": False},
            {"do": "wait_idle"},
        ]
    )
    # The button returns at once: packing, uploads and the server's inspection run on a thread meanwhile.
    assert pressed["result"] == ["FINISHED"] and [k.split(":")[0] for k in pressed["running"]] == ["quote"]
    assert pressed["returned_in_s"] < 1.0 and pressed["state"]["busy"] == "Quote"
    state = quoted["state"]
    assert state["error"] == "", state
    upload = state["upload"]
    scene = Scene.objects.get(pk=state["scene_id"])
    assert scene.status == Scene.Status.READY and scene.report["outside_paths"] == []
    assert scene.report["missing_files"] == []
    names = zip_names(scene)
    assert "scene.blend" in names and "textures/wood.png" in names
    assert f"_outside_project{project['outside']}/sticker.png" in names
    assert any(n.startswith("_outside_project/") and n.endswith("/library/metal.png") for n in names)
    assert upload["method"] == "bat" and upload["files"] == 4 == len(upload["sent_files"])
    assert upload["sent_bytes"] == upload["total_bytes"] == sum(SceneFile.objects.values_list("size", flat=True))
    job = Job.objects.get(pk=state["job_id"])
    assert state["quote"]["total"] == job.quote["total"] > 0 and job.state == "quoted"
    assert state["status"] == f"quoted: job {job.pk}, accept it with Submit"


def test_quote_falls_back_to_blenders_pack_all_when_bat_cannot_read_the_file(
    blender, demo_source, project, live_server, media, artist
):
    [_, _, _, quoted] = blender.run(
        [
            textured(demo_source, project),
            {"do": "prefs", "server_url": live_server.url, "token": token_of(artist), "packing": "AUTO"},
            {"do": "bat_cannot_read"},
            {"do": "press", "button": "quote"},
        ]
    )
    state = quoted["state"]
    assert state["error"] == "", state
    upload = state["upload"]
    assert upload["method"] == "blender" and [f["path"] for f in upload["sent_files"]] == ["scene.blend"]
    assert upload["notes"][0] == (
        "blender-asset-tracer cannot read scene.blend: unknown file format: packed with Blender's own pack_all instead"
    )
    scene = Scene.objects.get(pk=state["scene_id"])
    assert scene.status == Scene.Status.READY and zip_names(scene) == ["scene.blend"]
    # Everything is packed into the .blend: Blender reads no file path at all, so none is outside.
    assert scene.report["external_files"] == [] and scene.report["outside_paths"] == []
    # The artist's own session reads its files from disk again, as before the quote.
    assert state["images"]["sticker.png"] == [f"{project['outside']}/sticker.png", False]
    assert state["images"]["wood.png"] == ["//textures/wood.png", False]


def test_the_servers_refusals_reach_the_panel_in_its_own_words(
    blender, demo_source, project, live_server, media, artist
):
    token = token_of(artist)
    login = {"do": "prefs", "server_url": live_server.url, "token": token}
    records = blender.run(
        [
            textured(demo_source, project),
            {"do": "prefs", "server_url": live_server.url, "token": "tokdeadbeef.not-a-token"},
            {"do": "press", "button": "quote"},
            login,
            {"do": "press", "button": "quote"},
            {"do": "press", "button": "submit"},  # the wallet is empty
            {"do": "save"},
        ]
    )
    assert records[2]["state"]["error"] == "invalid or revoked API token"
    job = Job.objects.get(pk=records[4]["state"]["job_id"])
    total = job.quote["total"]
    shortfall = records[5]["state"]["error"]
    assert shortfall == f"this job needs {tokens(total)} tokens in your wallet: top up and accept again"
    saved = (Path(project["project"]) / "scene.blend").read_bytes()
    if saved.startswith(b"\x28\xb5\x2f\xfd"):  # zstd, as the demo scene is saved
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(saved), read_across_frames=True) as z:
            saved = z.read()
    assert saved.startswith(b"BLENDER") and b"Scene" in saved
    assert token.encode() not in saved and token.split(".")[1].encode() not in saved  # only in the preferences
    Job.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(days=2))  # the quote grows old

    records = blender.run(
        [
            {"do": "open", "path": str(Path(project["project"]) / "scene.blend")},
            login,
            {"do": "press", "button": "submit"},
            {"do": "remove_camera_and_save"},
            {"do": "press", "button": "quote"},
        ]
    )
    assert records[2]["state"]["job_id"] == job.pk  # the job's id was saved with the .blend, the token was not
    expired = records[2]["state"]["error"]
    assert expired.startswith("this quote expired at ") and expired.endswith("hours): get a new quote")
    refused = Scene.objects.filter(status=Scene.Status.REFUSED).get()
    assert records[4]["state"]["error"] == refused.refusal
    assert "the scene has no camera: add one and make it the active camera" in refused.refusal
