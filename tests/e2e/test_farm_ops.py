"""Issue 12 in real Chromium against a real farm (live server, Celery worker + beat, a real agent rendering with
bpy): cancelling mid-render frees the node for the next job, a pause from the web survives heartbeats, Ctrl-C on
the agent drops the quote's idle count at once, and the job page header follows the job without a reload."""

import os
import re
import signal
import time
from pathlib import Path

import pytest

from marketplace.dispatch.services import match_frames
from marketplace.jobs.models import Frame, Job
from marketplace.jobs.states import FrameState, JobState
from marketplace.nodes import conf as node_conf
from marketplace.nodes.models import WorkerNode
from tests.fixtures.farm import demo_job, demo_scene, wait_for
from tests.fixtures.market import make_node
from tests.fixtures.money import fund

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


@pytest.fixture
def fast_heartbeats(monkeypatch):
    # The live server answers the agent's hello in this process: heartbeats every 2 s, as the farm's own env asks.
    monkeypatch.setattr(node_conf, "HEARTBEAT_SECONDS", 2)


@pytest.fixture
def slow_blend(tmp_path_factory):
    """Frames that take long enough on one thread to be cancelled mid-render."""
    from workers.blend import make_demo_scene

    return make_demo_scene(tmp_path_factory.mktemp("slow") / "slow.blend", frames=2, resolution=(200, 150), samples=512)


@pytest.fixture
def quick_blend(tmp_path_factory):
    from workers.blend import make_demo_scene

    return make_demo_scene(tmp_path_factory.mktemp("quick") / "quick.blend", frames=2, resolution=(64, 36), samples=8)


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def node_status(node) -> str:
    return WorkerNode.objects.get(pk=node.pk).status


def test_cancel_mid_render_frees_the_node_and_the_next_job_renders_with_a_live_header(
    login, farm, live_server, fast_heartbeats, slow_blend, quick_blend, artist, provider
):
    fund(artist, 1_000_000_000)
    node, token = make_node(provider, unchecked=True)
    farm.start_celery()
    farm.start_agent("agent", token)
    slow = demo_job(artist, slow_blend, frames=2, width=200, height=150, samples=512)
    wait_for(
        lambda: Frame.objects.filter(job=slow, state=FrameState.LEASED).exists(),
        timeout=60,
        farm=farm,
        what="a frame of the slow job leased",
    )
    assert node_status(node) == WorkerNode.Status.BUSY

    page = login(artist, timeout_ms=60_000)
    page.goto(f"{live_server.url}/jobs/{slow.pk}/")
    page.click("#cancel-job")
    page.click("text=Yes, cancel the job")
    page.wait_for_selector(".messages")
    assert page.inner_text("#job-state") == "Cancelled"
    # The node is free at once (it used to stay "Busy, frame 1 of job N" with nothing to render).
    assert node_status(node) == WorkerNode.Status.IDLE and WorkerNode.objects.get(pk=node.pk).current_frame is None

    quick = demo_job(artist, quick_blend, frames=2)
    page.goto(f"{live_server.url}/jobs/{quick.pk}/")
    assert page.is_visible("#cancel-job") and not page.is_visible("#download")
    # No reload from here: the header (state, buttons, download link) must follow the job by polling.
    page.wait_for_function("() => document.getElementById('job-state').innerText === 'Done'", timeout=180_000)
    assert Job.objects.get(pk=quick.pk).state == JobState.DONE
    assert not page.is_visible("#cancel-job")
    assert page.inner_text("#download") == "Download 2 finished frames (zip)"
    assert page.inner_text("#job-done") == "2 of 2"
    assert page.locator('tr[data-state="settled"]').count() == 2
    shot(page, "job-done-live")


def test_a_pause_from_the_web_survives_heartbeats_until_resumed(
    login, farm, live_server, fast_heartbeats, quick_blend, artist, provider
):
    fund(artist, 1_000_000_000)
    node, token = make_node(provider, unchecked=True)
    farm.start_celery()
    farm.start_agent("agent", token)
    dash = login(provider)
    dash.goto(f"{live_server.url}/nodes/")
    dash.click(f'tr[data-node="{node.pk}"] button[value="finish"]')
    dash.wait_for_selector(f'tr[data-node="{node.pk}"] button:has-text("Resume")')
    first_beat = WorkerNode.objects.get(pk=node.pk).last_heartbeat
    wait_for(
        lambda: WorkerNode.objects.get(pk=node.pk).last_heartbeat > first_beat,
        timeout=30,
        farm=farm,
        what="a heartbeat after the pause",
    )
    time.sleep(5)  # two more heartbeats: each one used to set the node back to idle
    assert node_status(node) == WorkerNode.Status.PAUSED
    dash.reload()
    assert "Paused until you resume" in dash.inner_text(f'tr[data-node="{node.pk}"] .node-status')

    job = demo_job(artist, quick_blend, frames=2)
    art = login(artist)
    art.goto(f"{live_server.url}/jobs/{job.pk}/")
    time.sleep(4)
    assert not Frame.objects.filter(job=job).exclude(state=FrameState.QUEUED).exists()
    assert "paused by their owners" in art.inner_text("#waiting-reason")
    shot(art, "job-waiting-paused")

    dash.click(f'tr[data-node="{node.pk}"] button:has-text("Resume")')
    art.wait_for_function("() => document.getElementById('job-state').innerText === 'Done'", timeout=180_000)
    assert art.inner_text("#job-waiting") == ""


def test_ctrl_c_on_the_agent_drops_the_quotes_idle_count_at_once(
    login, farm, live_server, fast_heartbeats, quick_blend, artist, provider
):
    fund(artist, 1_000_000_000)
    node, token = make_node(provider, unchecked=True)
    WorkerNode.objects.filter(pk=node.pk).update(bench_score=1000.0)
    scene = demo_scene(artist, quick_blend)
    farm.start_agent("agent", token)
    wait_for(
        lambda: WorkerNode.objects.get(pk=node.pk).agent_state == "online"
        and "agent running" in (farm.tmp / "agent.log").read_text(),
        timeout=60,
        farm=farm,
        what="agent up",
    )

    page = login(artist)

    def quote_note() -> str:
        page.goto(f"{live_server.url}/jobs/new/?scene={scene.pk}")
        page.click("text=Get a quote")
        page.wait_for_selector("#quote-time")
        return page.inner_text("#quote-time")

    assert "1 node idle right now" in quote_note()
    signalled = time.monotonic()
    os.kill(farm.procs["agent"].pid, signal.SIGINT)  # Ctrl-C: no frame in hand, so it exits at once
    assert farm.procs["agent"].wait(30) == 0
    # Not after its wait for a delivery times out (workers.agent.BROKER_WAIT_SECONDS, 10 s): the signal ends it.
    assert time.monotonic() - signalled < 5
    assert "goodbye" in farm.events("agent")
    assert "broker_unavailable" not in (farm.tmp / "agent.log").read_text()
    started = time.monotonic()
    note = quote_note()
    assert "no idle capacity right now" in note, note
    assert time.monotonic() - started < 10  # not the 60 s it took the heartbeats to go stale
    assert node_status(node) == WorkerNode.Status.OFFLINE
    assert re.search(r"Offline: the agent stopped", login(provider).goto(f"{live_server.url}/nodes/").text())


def test_pause_now_gives_the_frame_in_hand_back_at_the_next_heartbeat(
    login, farm, live_server, fast_heartbeats, slow_blend, artist, provider
):
    fund(artist, 1_000_000_000)
    node, token = make_node(provider, unchecked=True)
    farm.start_agent("agent", token)
    slow = demo_job(artist, slow_blend, frames=1, width=200, height=150, samples=512)
    wait_for(
        lambda: match_frames() or Frame.objects.filter(job=slow, state=FrameState.LEASED).exists(),
        timeout=60,
        farm=farm,
        what="the slow frame leased",
    )
    time.sleep(3)  # the agent takes the delivery and starts rendering (a 512-sample frame: far longer than this)
    dash = login(provider)
    dash.goto(f"{live_server.url}/nodes/")
    dash.click(f'tr[data-node="{node.pk}"] button[value="release"]')
    wait_for(
        lambda: Frame.objects.get(job=slow).state == FrameState.QUEUED,
        timeout=20,
        farm=farm,
        what="the frame given back",
    )
    frame = Frame.objects.get(job=slow)
    assert frame.attempts == 0 and node_status(node) == WorkerNode.Status.PAUSED
    wait_for(
        lambda: "lease_lost" in farm.events("agent"),
        timeout=20,
        farm=farm,
        what="the agent stopping the render",
    )
    time.sleep(5)  # heartbeats keep coming: the node stays paused and takes nothing
    assert node_status(node) == WorkerNode.Status.PAUSED
    assert Frame.objects.get(job=slow).state == FrameState.QUEUED
