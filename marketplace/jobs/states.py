"""The job and frame state machines, in one place. Every state change goes through `transition`.

A frame change is a conditional UPDATE (`WHERE state = <from>`): if another worker moved the frame first,
the row count is 0 and the caller learns it lost the race instead of overwriting.
"""

from django.db import models
from django.utils import timezone


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

FRAME_OPEN = (FrameState.QUEUED, FrameState.LEASED, FrameState.RENDERED, FrameState.VERIFYING)
# What cancelling a job stops (and refunds); rendered frames are work done and stay payable.
FRAME_CANCELLABLE = (FrameState.QUEUED, FrameState.LEASED)


class IllegalTransition(Exception):
    pass


def check_transition(table: dict[str, frozenset[str]], current: str, target: str) -> None:
    if target not in table.get(current, frozenset()):
        raise IllegalTransition(f"{current} -> {target} is not allowed")


def transition(model, *, pk: int, current: str, target: str, table: dict[str, frozenset[str]], **fields) -> bool:
    """Move one row from `current` to `target` if it is still in `current`. Raises on an illegal edge."""
    check_transition(table, current, target)
    if any(f.name == "updated_at" for f in model._meta.fields):
        fields.setdefault("updated_at", timezone.now())  # update() skips auto_now
    return model.objects.filter(pk=pk, state=current).update(state=target, **fields) == 1
