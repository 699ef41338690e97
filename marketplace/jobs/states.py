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


F, J = FrameState, JobState

FRAME_TRANSITIONS: dict[str, frozenset[str]] = {
    F.QUEUED: frozenset({F.LEASED, F.CANCELLED}),
    # back to QUEUED: lease expired, agent failed or released it; FAILED: too many nodes failed it
    F.LEASED: frozenset({F.QUEUED, F.RENDERED, F.FAILED, F.CANCELLED}),
    # a rendered frame is paid for work already done, so cancelling the job no longer touches it
    F.RENDERED: frozenset({F.VERIFYING, F.SETTLED, F.QUEUED, F.FAILED}),
    F.VERIFYING: frozenset({F.SETTLED, F.QUEUED, F.FAILED}),
    F.SETTLED: frozenset({F.QUEUED}),  # an upheld dispute sends the frame back to be rendered elsewhere
    F.FAILED: frozenset({F.QUEUED}),  # the artist retries it
    F.CANCELLED: frozenset(),
}

JOB_TRANSITIONS: dict[str, frozenset[str]] = {
    J.QUOTED: frozenset({J.QUEUED, J.CANCELLED}),
    J.QUEUED: frozenset({J.RUNNING, J.DONE, J.FAILED, J.CANCELLED}),
    J.RUNNING: frozenset({J.DONE, J.FAILED, J.CANCELLED}),
    J.DONE: frozenset({J.RUNNING}),  # an upheld dispute re-opens the job
    J.FAILED: frozenset({J.RUNNING}),  # the artist retries its failed frames
    J.CANCELLED: frozenset(),
}

FRAME_OPEN = (F.QUEUED, F.LEASED, F.RENDERED, F.VERIFYING)
# What cancelling a job stops (and refunds); rendered frames are work done and stay payable.
FRAME_CANCELLABLE = (F.QUEUED, F.LEASED)


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
