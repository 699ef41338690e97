import pytest

from marketplace.jobs.lifecycle import jobs_mark_running, transition
from marketplace.jobs.models import Frame, Job
from marketplace.jobs.states import (
    FRAME_TRANSITIONS,
    JOB_TRANSITIONS,
    FrameState,
    IllegalTransition,
    JobState,
    check_transition,
)
from tests.fixtures.market import make_queued_job

pytestmark = pytest.mark.django_db

ALLOWED_FRAME = [(a, b) for a, targets in FRAME_TRANSITIONS.items() for b in targets]
ILLEGAL_FRAME = [(a, b) for a in FrameState.values for b in FrameState.values if b not in FRAME_TRANSITIONS[a]]
ILLEGAL_JOB = [(a, b) for a in JobState.values for b in JobState.values if b not in JOB_TRANSITIONS[a]]


def test_every_state_has_a_row_in_its_table():
    assert set(FRAME_TRANSITIONS) == set(FrameState.values)
    assert set(JOB_TRANSITIONS) == set(JobState.values)


def test_terminal_states_have_no_way_out_but_an_artists_retry():
    assert FRAME_TRANSITIONS[FrameState.CANCELLED] == JOB_TRANSITIONS[JobState.CANCELLED] == frozenset()
    # Failed is final unless the artist sends the failed frames back (`job_retry_failed`).
    assert FRAME_TRANSITIONS[FrameState.FAILED] == frozenset({FrameState.QUEUED})
    assert JOB_TRANSITIONS[JobState.FAILED] == frozenset({JobState.RUNNING})


@pytest.mark.parametrize(("current", "target"), ALLOWED_FRAME)
def test_it_moves_a_frame_along_an_allowed_edge(funded_artist, current, target):
    frame = make_queued_job(funded_artist, frames=1).frames.get()
    Frame.objects.filter(pk=frame.pk).update(state=current)
    assert transition(Frame, pk=frame.pk, current=current, target=target, table=FRAME_TRANSITIONS) is True
    frame.refresh_from_db()
    assert frame.state == target


@pytest.mark.parametrize(("current", "target"), ILLEGAL_FRAME)
def test_it_refuses_an_illegal_frame_edge_and_changes_nothing(funded_artist, current, target):
    frame = make_queued_job(funded_artist, frames=1).frames.get()
    Frame.objects.filter(pk=frame.pk).update(state=current)
    with pytest.raises(IllegalTransition, match=f"{current} -> {target}"):
        transition(Frame, pk=frame.pk, current=current, target=target, table=FRAME_TRANSITIONS)
    frame.refresh_from_db()
    assert frame.state == current


@pytest.mark.parametrize(("current", "target"), ILLEGAL_JOB)
def test_it_refuses_an_illegal_job_edge(current, target):
    with pytest.raises(IllegalTransition):
        check_transition(JOB_TRANSITIONS, current, target)


def test_the_loser_of_a_race_gets_false_and_the_winner_stands(funded_artist):
    frame = make_queued_job(funded_artist, frames=1).frames.get()
    assert transition(
        Frame, pk=frame.pk, current=FrameState.QUEUED, target=FrameState.LEASED, table=FRAME_TRANSITIONS, attempts=1
    )
    # A second claimer still believes the frame is QUEUED.
    assert (
        transition(Frame, pk=frame.pk, current=FrameState.QUEUED, target=FrameState.CANCELLED, table=FRAME_TRANSITIONS)
        is False
    )
    frame.refresh_from_db()
    assert frame.state == FrameState.LEASED and frame.attempts == 1


def test_a_job_moves_along_an_allowed_edge(funded_artist):
    job = make_queued_job(funded_artist, frames=1)
    assert transition(Job, pk=job.pk, current=JobState.QUEUED, target=JobState.RUNNING, table=JOB_TRANSITIONS)
    assert Job.objects.get(pk=job.pk).state == JobState.RUNNING


def test_marking_a_job_running_happens_once_and_only_from_queued(funded_artist):
    job = make_queued_job(funded_artist, frames=1)
    assert jobs_mark_running(job_ids=[job.pk]) == 1
    assert jobs_mark_running(job_ids=[job.pk]) == 0  # the second leased frame finds it running already
    assert Job.objects.get(pk=job.pk).state == JobState.RUNNING
    Job.objects.filter(pk=job.pk).update(state=JobState.CANCELLED)
    assert jobs_mark_running(job_ids=[job.pk]) == 0
    assert Job.objects.get(pk=job.pk).state == JobState.CANCELLED
