"""Issue 12: no path leaves a node Busy without a lease (or idle with one).

A hypothesis state machine drives random sequences of what happens to a farm (jobs arrive, the matcher leases,
agents report, fail, release, heartbeat (written at once, or gathered and flushed later), pause themselves or say
goodbye, the owner pauses and resumes from the web, an artist cancels, an admin bans, agents die, heartbeats grow
old while the heartbeat pace, and with it the silence window, moves, and the reaper runs) against the real services
on the real
database, and after every step checks each node's stored status against a derivation written here,
independently of `node_status_sync`, from the raw facts.
"""

import io
from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from marketplace import blobs
from marketplace.accounts.models import User
from marketplace.accounts.services import user_create
from marketplace.dispatch import conf, heartbeats, services
from marketplace.dispatch.models import FrameLease
from marketplace.jobs import services as job_services
from marketplace.jobs.errors import JobRefused
from marketplace.jobs.models import Frame
from marketplace.jobs.states import FrameState
from marketplace.nodes import conf as node_conf
from marketplace.nodes.models import HeartbeatPace, WorkerNode
from marketplace.nodes.selectors import pace_remember, silence_seconds
from marketplace.nodes.services import node_set_paused, node_status_sync, nodes_with_wrong_status
from tests.fixtures.market import make_node, make_queued_job, png_bytes
from tests.fixtures.money import fund

# About 30 s on 2 cores: `-m "not slow"` skips it; `make test` runs it.
pytestmark = [pytest.mark.django_db, pytest.mark.slow]
S = WorkerNode.Status
NODES = 3


def expected_status(node: WorkerNode, now) -> tuple[str, int | None]:
    """The rule of issue 12, restated from the facts (not calling the code under test)."""
    # The current frame is its oldest active lease's: the one it owes first (a lease taken ahead shows next).
    active = list(FrameLease.objects.filter(node=node, state=FrameLease.State.ACTIVE).order_by("created_at", "pk"))
    if active:
        return S.BUSY, active[0].frame_id
    if node.banned_at or node.owner.banned_at or not node.owner.is_active:
        return S.BANNED, None
    # Three beats of the longest pace in force, at least OFFLINE_AFTER_SECONDS (`silence_seconds`).
    silent = now - timedelta(seconds=max(node_conf.OFFLINE_AFTER_SECONDS, 3 * _longest_pace()))
    if node.last_heartbeat is None or node.last_heartbeat < silent or node.agent_state == "offline":
        return S.OFFLINE, None
    if node.paused_by_owner or node.agent_state == "paused":
        return S.PAUSED, None
    return S.IDLE, None


def _longest_pace() -> int:
    row = HeartbeatPace.objects.filter(pk=1).first()
    return max(row.seconds, row.longest) if row else node_conf.HEARTBEAT_SECONDS


class Farm(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        Farm.run += 1
        # Earlier examples share the database (one test transaction): take their frames and nodes out of play.
        Frame.objects.filter(state=FrameState.QUEUED).update(state=FrameState.CANCELLED)
        WorkerNode.objects.update(agent_state=WorkerNode.AgentState.OFFLINE)
        HeartbeatPace.objects.all().delete()
        pace_remember(None)
        FrameLease.objects.filter(state=FrameLease.State.ACTIVE).update(state=FrameLease.State.REVOKED)
        self.artist = user_create(username=f"artist{Farm.run}", password="x" * 12, role=User.Role.ARTIST)
        fund(self.artist, 10_000_000_000)
        self.provider = user_create(username=f"prov{Farm.run}", password="x" * 12, role=User.Role.PROVIDER)
        self.nodes = [make_node(self.provider, name=f"n{i}", unchecked=True) for i in range(NODES)]
        self.tokens: dict[int, str] = {}  # lease id -> lease token, as the agent got it from its queue
        self.jobs: list[int] = []
        node_status_sync()
        # Every run starts mid-render (a job with a frame leased to node 0): the state the bugs began from.
        self.a_job_arrives(frames=2)
        self.the_matcher_offers_a_frame(i=0)

    run = 0

    # --- helpers --------------------------------------------------------------------------
    def node(self, i: int) -> WorkerNode:
        return WorkerNode.objects.get(pk=self.nodes[i][0].pk)

    def active(self, i: int | None = None):
        qs = FrameLease.objects.filter(state=FrameLease.State.ACTIVE, node__owner=self.provider)
        return qs.filter(node_id=self.nodes[i][0].pk) if i is not None else qs

    def pick_lease(self, data) -> FrameLease | None:
        leases = list(self.active().order_by("pk"))
        return data.draw(st.sampled_from(leases)) if leases else None

    # --- rules ----------------------------------------------------------------------------
    @rule(frames=st.integers(1, 3))
    def a_job_arrives(self, frames: int) -> None:
        self.jobs.append(make_queued_job(self.artist, frames=frames).pk)

    @rule(i=st.integers(0, NODES - 1))
    def the_matcher_offers_a_frame(self, i: int) -> None:
        delivery = services.lease_create_for_node(node=self.nodes[i][0])
        if delivery is not None:
            self.tokens[delivery.lease_id] = delivery.token

    @rule(data=st.data(), ok=st.booleans())
    def an_agent_reports(self, data, ok: bool) -> None:
        lease = self.pick_lease(data)
        if lease is None or lease.pk not in self.tokens:
            return
        if ok:
            blobs.blob_put(key=lease.result_key, fileobj=io.BytesIO(png_bytes(32, 24)))
        services.lease_report(
            node=lease.node, lease_id=lease.pk, token=self.tokens[lease.pk], ok=ok, error="" if ok else "boom"
        )

    @rule(data=st.data())
    def an_agent_releases(self, data) -> None:
        lease = self.pick_lease(data)
        if lease is not None and lease.pk in self.tokens:
            services.lease_release(node=lease.node, lease_id=lease.pk, token=self.tokens[lease.pk])

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def the_artist_cancels(self, data) -> None:
        # Mostly a job with a frame being rendered: cancelling mid-render is the case that used to jam a node.
        running = sorted(set(self.active().filter(frame__job_id__in=self.jobs).values_list("frame__job_id", flat=True)))
        pool = running if running and data.draw(st.integers(0, 3)) else self.jobs
        try:
            job_services.job_cancel(job_id=data.draw(st.sampled_from(pool)), owner=self.artist)
        except JobRefused:
            pass  # already done: changes nothing

    @rule(i=st.integers(0, NODES - 1), paused=st.booleans())
    def an_agent_heartbeats(self, i: int, paused: bool) -> None:
        leases = list(self.active(i).values_list("pk", flat=True))
        services.node_heartbeat(node=self.node(i), lease_ids=leases, paused=paused)

    @rule()
    def the_gathered_heartbeats_are_written(self) -> None:
        heartbeats.heartbeats_flush()

    @rule(i=st.integers(0, NODES - 1), mode=st.sampled_from(WorkerNode.PauseMode.values))
    def the_owner_pauses(self, i: int, mode: str) -> None:
        assert node_set_paused(owner=self.provider, node_id=self.nodes[i][0].pk, paused=True, mode=mode)

    @rule(i=st.integers(0, NODES - 1))
    def the_owner_resumes(self, i: int) -> None:
        assert node_set_paused(owner=self.provider, node_id=self.nodes[i][0].pk, paused=False)

    @rule(i=st.integers(0, NODES - 1), banned=st.booleans())
    def an_admin_bans(self, i: int, banned: bool) -> None:
        services.node_ban(node_id=self.nodes[i][0].pk, banned=banned)

    @rule(i=st.integers(0, NODES - 1))
    def the_agent_says_goodbye(self, i: int) -> None:
        services.node_goodbye(node=self.node(i))
        assert not self.active(i).exists()

    @rule(i=st.integers(0, NODES - 1))
    def the_agent_says_hello(self, i: int) -> None:
        from marketplace.nodes.services import Capabilities, node_hello

        node_hello(
            node=self.node(i), capabilities=Capabilities(devices=[], cpu_cores=2, ram_mb=1, blender_version="5.0.1")
        )

    @rule(data=st.data())
    def a_lease_runs_out_and_the_reaper_runs(self, data) -> None:
        lease = self.pick_lease(data)
        if lease is not None:
            FrameLease.objects.filter(pk=lease.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        services.leases_reap()

    @rule(i=st.integers(0, NODES - 1))
    def an_agent_is_killed_and_the_reaper_runs(self, i: int) -> None:
        long_ago = timezone.now() - timedelta(seconds=node_conf.OFFLINE_AFTER_SECONDS + conf.LEASE_SECONDS + 1)
        WorkerNode.objects.filter(pk=self.nodes[i][0].pk).update(last_heartbeat=long_ago)
        self.active(i).update(expires_at=long_ago)
        services.leases_reap()

    @rule(i=st.integers(0, NODES - 1), age=st.integers(0, 240), pace=st.sampled_from([10, 20, 60]))
    def a_heartbeat_grows_old_the_pace_moves_and_the_reaper_runs(self, i: int, age: int, pace: int) -> None:
        # No write of the node's changes its status here: silence comes or goes as its heartbeat ages and as the
        # silence window grows or shrinks with the pace (60 s at 10 and 20 s, 180 s at 60). The reaper syncs only
        # the nodes time may have made wrong (`node_status_sync_due`), and every node must come out right.
        now = timezone.now()
        WorkerNode.objects.filter(pk=self.nodes[i][0].pk).update(last_heartbeat=now - timedelta(seconds=age))
        pace_row = {"seconds": pace, "longest": pace, "longest_until": now, "online": NODES, "updated_at": now}
        HeartbeatPace.objects.update_or_create(pk=1, defaults=pace_row)
        pace_remember(None)
        assert silence_seconds() == max(node_conf.OFFLINE_AFTER_SECONDS, 3 * pace)
        services.leases_reap()

    # --- invariants -----------------------------------------------------------------------
    @invariant()
    def every_node_status_follows_from_the_facts(self) -> None:
        now = timezone.now()
        for registered, _ in self.nodes:
            node = WorkerNode.objects.select_related("owner", "trust").get(pk=registered.pk)
            assert (node.status, node.current_frame_id) == expected_status(node, now), node.pk
        assert nodes_with_wrong_status(now) == []

    @invariant()
    def a_node_holds_at_most_one_lease_and_every_leased_frame_one_lease(self) -> None:
        for i in range(NODES):
            assert self.active(i).count() <= 1
        leased = Frame.objects.filter(state=FrameState.LEASED, job_id__in=self.jobs)
        for frame in leased:
            assert FrameLease.objects.filter(frame=frame, state="active", kind="render").count() == 1, frame.pk
        assert not self.active().filter(kind="render").exclude(frame__state=FrameState.LEASED).exists()

    @invariant()
    def an_idle_node_is_offered_work_and_no_other_is(self) -> None:
        matchable = set(services.matchable_nodes().values_list("pk", flat=True))
        for node, _ in self.nodes:
            status = WorkerNode.objects.get(pk=node.pk).status
            assert (node.pk in matchable) == (status == S.IDLE), (node.pk, status)


def test_node_status_is_right_after_any_sequence_of_farm_events():
    run_state_machine_as_test(
        Farm,
        settings=settings(
            max_examples=30,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
