"""The whole farm for real: live web server, real Celery worker (+beat) subprocess, real Redis, agent
subprocesses rendering the demo scene with bpy, on Postgres. Then chaos: SIGKILL an agent mid-render,
stop and restart Redis, SIGKILL the Celery worker. Every frame must finish and be paid exactly once.
"""

import os
import time
from pathlib import Path

import pytest

from marketplace.dispatch.models import FrameLease
from marketplace.jobs.models import Frame
from marketplace.jobs.states import FrameState
from marketplace.ledger import selectors
from marketplace.ledger.models import LedgerTransaction
from tests.fixtures.farm import demo_job, wait_for
from tests.fixtures.market import make_node
from tests.fixtures.money import fund

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
FRAMES = 6


@pytest.fixture(scope="module")
def demo_blend(tmp_path_factory) -> Path:
    from workers.blend import make_demo_scene

    path = tmp_path_factory.mktemp("demo") / "demo.blend"
    make_demo_scene(path, frames=FRAMES, resolution=(64, 36), samples=8)
    return path


def all_settled(job) -> bool:
    return not Frame.objects.filter(job=job).exclude(state=FrameState.SETTLED).exists()


def assert_paid_exactly_once(job) -> None:
    frames = list(Frame.objects.filter(job=job))
    assert len(frames) == FRAMES and all(f.state == FrameState.SETTLED for f in frames)
    for frame in frames:
        keys = list(
            LedgerTransaction.objects.filter(idempotency_key__startswith=f"settle:frame:{frame.pk}").values_list(
                "idempotency_key", flat=True
            )
        )
        assert len(keys) == 1, (frame.number, keys)
    assert selectors.ledger_total() == 0
    assert selectors.ledger_drift() == []


def test_the_demo_job_renders_end_to_end_with_two_agents(farm, demo_blend, artist, provider, admin_user):
    fund(artist, 100_000_000)
    job = demo_job(artist, demo_blend, frames=FRAMES)
    _, token_a = make_node(provider, name="a")
    _, token_b = make_node(admin_user, name="b")  # a second provider, so crops verify across providers
    farm.start_celery()
    farm.start_agent("agent-a", token_a)
    farm.start_agent("agent-b", token_b)
    wait_for(lambda: all_settled(job), timeout=240, farm=farm, what="all frames settled")
    assert_paid_exactly_once(job)
    assert {f.node_id for f in Frame.objects.filter(job=job)} <= {n.pk for n in provider.nodes.all()} | {
        n.pk for n in admin_user.nodes.all()
    }


def test_chaos_agent_redis_and_celery_die_mid_job(farm, demo_blend, artist, provider, admin_user):
    fund(artist, 100_000_000)
    job = demo_job(artist, demo_blend, frames=FRAMES)
    node_a, token_a = make_node(provider, name="a")
    _, token_b = make_node(admin_user, name="b")
    farm.start_celery()
    farm.start_agent("agent-a", token_a)
    farm.start_agent("agent-b", token_b)
    a_busy = FrameLease.objects.filter(node=node_a, state=FrameLease.State.ACTIVE)
    wait_for(a_busy.exists, timeout=60, farm=farm, what="agent a rendering a frame")
    killed_lease = a_busy.first()
    farm.kill("agent-a")  # SIGKILL mid-render: its lease must expire and the frame be rendered elsewhere
    wait_for(
        lambda: Frame.objects.filter(job=job, state=FrameState.SETTLED).count() >= 1,
        timeout=120,
        farm=farm,
        what="a first settled frame",
    )
    farm.redis.stop()  # the broker dies: queued messages and ACL users are gone
    time.sleep(3)
    farm.redis.start()
    farm.kill("celery")
    farm.start_celery()
    farm.start_agent("agent-a2", token_a)
    wait_for(lambda: all_settled(job), timeout=300, farm=farm, what="all frames settled after chaos")
    assert_paid_exactly_once(job)
    killed_lease.refresh_from_db()
    assert killed_lease.state in (FrameLease.State.EXPIRED, FrameLease.State.DONE), killed_lease.state
