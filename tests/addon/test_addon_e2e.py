"""From inside Blender to frames on disk, with the whole farm running: the add-on checks a scene whose textures
sit in a sibling folder, at an absolute path and behind `//../` (the outside paths are reported), packs it with
blender-asset-tracer, quotes, submits, watches a real agent render it, the platform verify it and the ledger
settle it, then downloads the frames into the scene's output path. The same scene, edited and quoted again,
sends only its changed .blend.
"""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from marketplace.jobs.models import Frame, Job
from marketplace.jobs.states import FrameState, JobState
from marketplace.ledger import selectors as ledger
from marketplace.scenes.models import Scene, SceneFile
from tests.addon.conftest import token_of
from tests.fixtures.market import make_node
from tests.fixtures.money import fund

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def press(button: str, timeout: float = 600, **options) -> dict:
    return {"do": "press", "button": button, "timeout": timeout, **options}


def test_check_pack_quote_submit_render_settle_download_then_only_the_changed_blend_travels(
    blender, demo_source, project, farm, live_server, media, artist, provider
):
    fund(artist, 1_000 * 1_000_000)
    _, node_token = make_node(provider, name="gus-rig")
    farm.start_celery()
    farm.start_agent("agent-gus", node_token)

    records = blender.run(
        [
            {"do": "make_textured", "source": str(demo_source), **project},
            {"do": "prefs", "server_url": live_server.url, "token": token_of(artist), "packing": "AUTO"},
            press("check"),
            press("quote"),
            press("submit"),  # accepts, then watches the job until it ends
            {"do": "draw_panel"},
            press("download"),
            {"do": "edit_and_save"},
            press("quote"),
            press("submit", until_idle=False),  # the watch goes on in the background
            press("cancel"),
        ],
        timeout=1500,
    )
    check, first, submitted, _, downloaded, _, second, resubmitted, cancelled = (
        r.get("state", {}) for r in records[2:]
    )
    panel = records[5]["panel"]
    logs = farm.logs()

    # Check: the outside paths are reported, in the server's words, and packing takes care of them.
    [outside] = check["check"]["refusals"]
    assert f"image 'sticker.png': {project['outside']}/sticker.png (absolute path)" in outside
    assert "image 'metal.png': //../library/metal.png (escapes the bundle (..))" in outside
    assert check["check"]["fixed_by_packing"] == [outside]

    # Quote: every file travels the first time.
    assert first["error"] == "", logs
    up1 = first["upload"]
    assert up1["method"] == "bat" and up1["files"] == 4 and len(up1["sent_files"]) == 4
    assert up1["sent_bytes"] == up1["total_bytes"] > 0
    job = Job.objects.get(pk=first["job_id"])
    assert first["quote"]["total"] == job.quote["total"] > 0

    # Submit: rendered by the agent, verified, settled; the panel's progress says so.
    assert submitted["error"] == "", logs
    job.refresh_from_db()
    assert job.state == JobState.DONE, logs
    frames = list(Frame.objects.filter(job=job).order_by("number"))
    assert [f.state for f in frames] == [FrameState.SETTLED] * 2 and {f.node.name for f in frames} == {"gus-rig"}
    shown = submitted["job"]
    assert shown["state"] == "done" and shown["cost_so_far"] == sum(f.price for f in frames) == job.quote["total"]
    assert [f["state"] for f in shown["frames"]] == ["settled", "settled"]
    assert submitted["status"] == f"job {job.pk} done"
    # What the artist sees in the panel: the buttons, the quote, and the job's progress box.
    assert {
        "[Server URL]",
        "[API token]",
        "<render_market.check>",
        "<render_market.quote>",
        "<render_market.submit>",
        "<render_market.download>",
    } <= set(panel)
    assert f"Job {job.pk}: done" in panel and "Frames done: 2 / 2 (0 rendering)" in panel
    assert f"Cost so far: {job.quote['total'] / 1_000_000:,.2f} tokens (escrow left 0.00)" in panel
    assert "Nodes: 1    Failures: 0 failed, 0 retried" in panel
    assert f"Uploaded 4 of 4 files, {up1['sent_bytes']:,} of {up1['total_bytes']:,} bytes (bat)" in panel
    assert ledger.ledger_total() == 0 and ledger.ledger_drift() == []

    # Download: into the scene's output path (//render/shot_), named as Blender would name its frames.
    assert downloaded["error"] == "", logs
    render = Path(project["project"]) / "render"
    expected = [str(render / "shot_0001.png"), str(render / "shot_0002.png")]
    assert downloaded["download"]["files"] == expected and downloaded["download"]["folder"] == str(render)
    for path in expected:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == (64, 36)
            assert float(np.asarray(image).std()) > 0  # a real render, not a blank image

    # The edited scene: only its .blend is new to the server, so only it travels.
    assert second["error"] == "", logs
    up2 = second["upload"]
    [sent] = up2["sent_files"]
    assert sent["path"] == "scene.blend" and sent["sha256"] != next(
        f["sha256"] for f in up1["sent_files"] if f["path"] == "scene.blend"
    )
    assert up2["sent_bytes"] == sent["size"] == SceneFile.objects.get(sha256=sent["sha256"]).size
    assert up2["total_bytes"] - up2["sent_bytes"] == sum(
        f["size"] for f in up1["sent_files"] if f["path"] != "scene.blend"
    )
    assert up2["sent_bytes"] < up2["total_bytes"]
    assert Scene.objects.get(pk=second["scene_id"]).status == Scene.Status.READY
    assert SceneFile.objects.filter(owner=artist).count() == 5  # 4 files, then 1 new .blend

    # ... submitted and cancelled from the panel: what was not rendered goes back to the wallet.
    assert resubmitted["error"] == "" and cancelled["error"] == "", logs
    assert Job.objects.get(pk=second["job_id"]).state in (JobState.CANCELLED, JobState.DONE)
    print(
        f"first upload {up1['sent_bytes']} bytes in {len(up1['sent_files'])} files; "
        f"second {up2['sent_bytes']} of {up2['total_bytes']} bytes"
    )
