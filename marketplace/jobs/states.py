"""The job and frame state machines: the states and the allowed moves. `jobs.lifecycle` makes every move,
checked against these tables."""

from django.db import models


class FrameState(models.TextChoices):
    QUEUED = "queued", "Queued"
    LEASED = "leased", "Rendering"
    RENDERED = "rendered", "Rendered, awaiting verification"
    VERIFYING = "verifying", "Verifying"
    SETTLED = "settled", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class JobState(models.TextChoices):
    QUOTED = "quoted", "Quoted"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FRAME_TRANSITIONS: dict[str, frozenset[str]] = {
    FrameState.QUEUED: frozenset({FrameState.LEASED, FrameState.CANCELLED}),
    # back to QUEUED: lease expired, agent failed or released it; FAILED: too many nodes failed it
    FrameState.LEASED: frozenset({FrameState.QUEUED, FrameState.RENDERED, FrameState.FAILED, FrameState.CANCELLED}),
    # a rendered frame is paid for work already done, so cancelling the job no longer touches it
    FrameState.RENDERED: frozenset({FrameState.VERIFYING, FrameState.SETTLED, FrameState.QUEUED, FrameState.FAILED}),
    FrameState.VERIFYING: frozenset({FrameState.SETTLED, FrameState.QUEUED, FrameState.FAILED}),
    # An upheld dispute sends a settled frame back to be rendered elsewhere.
    FrameState.SETTLED: frozenset({FrameState.QUEUED}),
    FrameState.FAILED: frozenset({FrameState.QUEUED}),  # the artist retries it
    FrameState.CANCELLED: frozenset(),
}

JOB_TRANSITIONS: dict[str, frozenset[str]] = {
    JobState.QUOTED: frozenset({JobState.QUEUED, JobState.CANCELLED}),
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.DONE, JobState.FAILED, JobState.CANCELLED}),
    JobState.RUNNING: frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED}),
    JobState.DONE: frozenset({JobState.RUNNING}),  # an upheld dispute re-opens the job
    JobState.FAILED: frozenset({JobState.RUNNING}),  # the artist retries its failed frames
    JobState.CANCELLED: frozenset(),
}

# A job whose queued frames may be leased.
JOB_LIVE = (JobState.QUEUED, JobState.RUNNING)

FRAME_OPEN = (FrameState.QUEUED, FrameState.LEASED, FrameState.RENDERED, FrameState.VERIFYING)
# What cancelling a job stops (and refunds); rendered frames are work done and stay payable.
FRAME_CANCELLABLE = (FrameState.QUEUED, FrameState.LEASED)


class IllegalTransition(Exception):
    pass


def check_transition(table: dict[str, frozenset[str]], current: str, target: str) -> None:
    if target not in table.get(current, frozenset()):
        raise IllegalTransition(f"{current} -> {target} is not allowed")
