"""jobs.lifecycle is the only writer of Frame/Job state, and its events reach their subscribers only after commit."""

import ast
from pathlib import Path

import pytest
from celery import shared_task
from django.db import transaction

from marketplace.celery import app
from marketplace.jobs import events, lifecycle
from marketplace.jobs.models import Frame
from marketplace.jobs.states import FrameState
from tests.fixtures.market import make_queued_job

MARKETPLACE = Path(__file__).resolve().parents[2] / "marketplace"
WRITES = {"update", "create", "get_or_create", "update_or_create", "bulk_create"}


# --- the guard: nobody else writes state ------------------------------------------------------


def _chain(node: ast.AST) -> list[str]:
    """The names along a call's receiver: `job.frames.filter(...).update` -> ["update", "filter", "frames", "job"]."""
    names = []
    while True:
        if isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Attribute):
            names.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Name):
            names.append(node.id)
            return names
        else:
            return names


def _on_frames_or_jobs(names: list[str]) -> bool:
    return any(name in ("Frame", "Job", "frames", "jobs") for name in names[1:])


def _names_state(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value == "state"


def state_writes(source: str) -> list[int]:
    """Lines of `source` that write a Frame's or a Job's state: a `transition(` call, `state=` given to a write
    (update, create, ...) on Frame/Job rows or to the Frame/Job constructor, `defaults={"state": ...}`,
    `bulk_update(..., ["state"])`, or `frame.state = ...` / `job.state = ...`."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            names = _chain(node)
            if names and names[0] == "transition":
                lines.append(node.lineno)
                continue
            keywords = {kw.arg for kw in node.keywords}
            constructor = isinstance(node.func, ast.Name) and node.func.id in ("Frame", "Job")
            write = bool(names) and names[0] in WRITES and _on_frames_or_jobs(names)
            defaults = [kw.value for kw in node.keywords if kw.arg == "defaults" and isinstance(kw.value, ast.Dict)]
            if (constructor or write) and (
                "state" in keywords or any(_names_state(key) for d in defaults for key in d.keys)
            ):
                lines.append(node.lineno)
            elif names and names[0] == "bulk_update" and _on_frames_or_jobs(names):
                if any(_names_state(n) for arg in node.args[1:] for n in ast.walk(arg)):
                    lines.append(node.lineno)
        elif isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if (
                    isinstance(target, ast.Attribute)
                    and target.attr == "state"
                    and isinstance(target.value, ast.Name)
                    and any(word in target.value.id.lower() for word in ("frame", "job"))
                ):
                    lines.append(node.lineno)
    return lines


@pytest.mark.parametrize(
    "source",
    [
        "transition(Frame, pk=1, current='a', target='b', table=T)",
        "states.transition(Job, pk=1, current='a', target='b', table=T)",
        "Frame.objects.filter(pk=1, state='leased').update(state='queued')",
        "job.frames.filter(state='queued').update(state='cancelled', last_error='x')",
        "Job.objects.filter(pk=1).update(state=JobState.DONE)",
        "Job.objects.create(owner=o, state=JobState.QUEUED)",
        "Frame(job=job, number=1, price=0, state=FrameState.QUEUED)",
        "Frame.objects.update_or_create(pk=1, defaults={'state': 'settled'})",
        "Frame.objects.bulk_update(frames, ['state', 'attempts'])",
        "frame.state = FrameState.SETTLED",
        "job.state = 'done'",
    ],
)
def test_the_guard_sees_each_way_of_writing_state(source):
    assert state_writes(source) == [1]


@pytest.mark.parametrize(
    "source",
    [
        "Frame.objects.filter(state='queued').exclude(job__state='cancelled').count()",
        "FrameLease.objects.filter(pk=1, state='active').update(state='expired')",
        "Frame.objects.filter(pk=1).update(thumbnail_key=key)",
        "Frame(job=job, number=1, price=0)",
        "lease.state = 'done'",
    ],
)
def test_the_guard_lets_reads_and_other_models_be(source):
    assert state_writes(source) == []


def test_only_the_lifecycle_module_writes_frame_or_job_state():
    found = []
    for path in sorted(MARKETPLACE.rglob("*.py")):
        relative = path.relative_to(MARKETPLACE.parent)
        if "migrations" in path.parts or (path.parent.name == "jobs" and path.name.startswith("lifecycle")):
            continue
        found += [f"{relative}:{line}" for line in state_writes(path.read_text())]
    assert found == [], "Frame/Job state is written outside marketplace/jobs/lifecycle*.py: call a lifecycle move"


# --- events after commit -----------------------------------------------------------------------

received: list[dict] = []


@shared_task(name="tests.event_received")
def event_received(**kwargs) -> None:
    received.append(kwargs)


@pytest.fixture
def listening(monkeypatch):
    """Every event goes to `tests.event_received` alone (the real subscribers would match and verify)."""
    received.clear()
    for event in list(events._subscribers):
        monkeypatch.setitem(events._subscribers, event, ["tests.event_received"])
    yield received
    received.clear()


@pytest.fixture
def leased(funded_artist) -> Frame:
    frame = make_queued_job(funded_artist, frames=1).frames.get()
    # leasing emits nothing: dispatch sends the lease itself
    assert lifecycle.frames_lease(frame_ids=[frame.pk]) == [frame.pk]
    return frame


@pytest.mark.django_db(transaction=True)
def test_a_move_emits_its_event_only_once_committed(leased, listening):
    with transaction.atomic():
        assert lifecycle.frame_requeue(frame_id=leased.pk, reason="lease expired")
        assert listening == []  # not yet: the move could still roll back
        assert Frame.objects.get(pk=leased.pk).state == FrameState.QUEUED
    assert listening == [{"frame_ids": [leased.pk]}]


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_move_emits_nothing(leased, listening):
    with pytest.raises(RuntimeError), transaction.atomic():
        assert lifecycle.frame_rendered(
            frame_id=leased.pk, node_id=None, result_key="results/x.png", result_sha256="0" * 64, render_seconds=1.0
        )
        raise RuntimeError("the report's transaction fails after the move")
    assert listening == []
    assert Frame.objects.get(pk=leased.pk).state == FrameState.LEASED


@pytest.mark.django_db(transaction=True)
def test_a_move_that_lost_the_race_writes_and_emits_nothing(leased, listening):
    assert lifecycle.frame_requeue(frame_id=leased.pk) is True
    listening.clear()
    assert lifecycle.frame_requeue(frame_id=leased.pk, reason="late reaper") is False  # it is QUEUED already
    assert listening == []
    assert Frame.objects.get(pk=leased.pk).last_error == ""


@pytest.mark.django_db(transaction=True)
def test_requeueing_many_frames_moves_only_the_leased_ones_in_one_event(funded_artist, listening):
    job = make_queued_job(funded_artist, frames=3)
    first, second, third = job.frames.order_by("number")
    assert lifecycle.frames_lease(frame_ids=[first.pk, second.pk]) == [first.pk, second.pk]
    lifecycle.frame_rendered(
        frame_id=second.pk, node_id=None, result_key="results/x.png", result_sha256="0" * 64, render_seconds=1.0
    )
    listening.clear()
    moved = lifecycle.frames_requeue(frame_ids=[first.pk, second.pk, third.pk], reason="node gone", count_attempt=False)
    assert moved == [first.pk]  # the rendered one and the queued one are not leased
    assert listening == [{"frame_ids": [first.pk]}]
    first.refresh_from_db()
    assert (first.state, first.attempts, first.last_error) == (FrameState.QUEUED, 0, "node gone")
    assert Frame.objects.get(pk=second.pk).state == FrameState.RENDERED


@pytest.mark.django_db(transaction=True)
def test_cancelling_many_frames_moves_only_those_still_cancellable(funded_artist, listening):
    job = make_queued_job(funded_artist, frames=3)
    first, second, third = job.frames.order_by("number")
    assert lifecycle.frames_lease(frame_ids=[second.pk]) == [second.pk]
    assert lifecycle.frame_rendered(
        frame_id=second.pk, node_id=None, result_key="results/x.png", result_sha256="0" * 64, render_seconds=1.0
    )
    assert lifecycle.frames_lease(frame_ids=[third.pk]) == [third.pk]
    listening.clear()
    cancelled = lifecycle.frames_cancel(
        frame_ids=[first.pk, second.pk, third.pk], current=(FrameState.QUEUED, FrameState.LEASED), reason="stop"
    )
    assert cancelled == [first.pk, third.pk]  # the rendered frame is work done: it stays payable
    assert listening == []  # their leases end in the cancel's own transaction (jobs.extensions), not after it
    assert dict(job.frames.values_list("pk", "state")) == {
        first.pk: FrameState.CANCELLED,
        second.pk: FrameState.RENDERED,
        third.pk: FrameState.CANCELLED,
    }


def test_every_event_reaches_the_tasks_that_react_to_it():
    assert events.subscribers(events.FRAMES_QUEUED) == ("dispatch.frames_queued", "verification.platform_prewarm")
    assert events.subscribers(events.FRAME_RENDERED) == ("verification.frame_rendered",)
    assert events.subscribers(events.FRAME_SETTLED) == ("jobs.job_check",)
    assert events.subscribers(events.FRAME_FAILED) == ("jobs.job_check",)
    for event in events._subscribers:
        assert all(name in app.tasks for name in events.subscribers(event))
    with pytest.raises(KeyError):
        events.emit("frame_misspelt", frame_id=1)
