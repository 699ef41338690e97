"""Artist pages for jobs. Another user's job or scene is a 404, never a 403 that confirms it exists."""

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from marketplace import blobs
from marketplace.jobs import extensions, live, selectors, services
from marketplace.jobs.downloads import settled_frames_zip
from marketplace.jobs.errors import JobNotFound, JobRefused
from marketplace.jobs.forms import JobQuoteForm
from marketplace.jobs.models import Job
from marketplace.jobs.states import JobState
from marketplace.money import tokens

T = TypeVar("T")


def _job_or_404(request: HttpRequest, job_id: int) -> Job:
    try:
        return selectors.job_of(owner=request.user, job_id=job_id)
    except JobNotFound as exc:
        raise Http404(str(exc)) from exc


@login_required
def job_list(request: HttpRequest) -> HttpResponse:
    return render(request, "jobs/list.html", {"jobs": selectors.jobs_of(owner=request.user)})


@login_required
def job_new(request: HttpRequest) -> HttpResponse:
    """`?scene=<id>`: the render settings (defaults from the scene's inspection); POST asks for a quote."""
    try:
        scene = selectors.scene_of(owner=request.user, scene_id=request.GET.get("scene", ""))
    except JobNotFound as exc:
        raise Http404(str(exc)) from exc
    form = JobQuoteForm(request.POST or None, initial=JobQuoteForm.initial_from_scene(scene))
    error, status = "", 400 if request.method == "POST" else 200  # a POST still here was refused
    if request.method == "POST" and form.is_valid():
        try:
            job = services.job_quote(owner=request.user, scene=scene.pk, **form.quote_kwargs())
        except JobRefused as exc:
            error, status = str(exc), exc.status
        else:
            return redirect("jobs:detail", job.pk)
    return render(request, "jobs/new.html", {"scene": scene, "form": form, "error": error}, status=status)


def _live_context(job: Job, *, page: str | int = 1, frames_since: datetime | None = None) -> dict:
    """Everything the job page shows that can change, for one page of frames. `frames_since`: only that page's
    frame rows changed since then. The waiting notice and the frames' checks are dispatch's and verification's
    parts (jobs.extensions)."""
    counts = selectors.frame_counts(job=job)
    frame_page = selectors.frame_page(job=job, page=page)
    return {
        "job": job,
        "counts": counts,
        "frames_total": sum(counts.values()),
        "money": selectors.job_money(job=job),
        "page": frame_page,
        "page_size": selectors.FRAMES_PER_PAGE,
        "page_frames": selectors.page_frames(job=job, page=frame_page, changed_since=frames_since),
        "state_legend": [(state.value, state.label) for state in selectors.STATE_CODES],
        "state_runs": selectors.frame_state_runs(job=job),
        "preview": selectors.last_finished_frame(job=job),
        "stills": selectors.stills_of(job=job),
        "live": selectors.job_is_live(job=job),
        **extensions.page_parts(job=job, frame_ids=frame_page.frame_ids),
    }


@login_required
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _job_or_404(request, job_id)
    now = timezone.now()
    context = _live_context(job, page=request.GET.get("page", 1))
    if job.state == JobState.QUOTED:
        wallet = selectors.wallet_balance(user=request.user)
        context.update(wallet=wallet, shortfall=max(job.quote.get("total", 0) - wallet, 0))
    else:
        context["cursor"] = live.cursor_of(live.render_parts(request, context), now=now)
    return render(request, "jobs/detail.html", context)


@login_required
def job_fragment(request: HttpRequest, job_id: int) -> HttpResponse:
    """The job page's poll. `?cursor=…` (what the page got last): JSON with only the parts and frame rows that
    changed since, and the next cursor (see `jobs.live`). Without a cursor: the live part as HTML."""
    job = _job_or_404(request, job_id)
    page = request.GET.get("page", 1)
    if "cursor" not in request.GET:
        return render(request, "jobs/_live.html", _live_context(job, page=page))
    now = timezone.now()
    seen = live.Cursor.parse(request.GET["cursor"])
    context = _live_context(job, page=page, frames_since=seen.frames_since if seen else None)
    return JsonResponse(live.changes(request, context, seen=seen, now=now))


@login_required
@require_POST
def job_allow_refused_nodes(request: HttpRequest, job_id: int) -> HttpResponse:
    """The artist's choice for frames no other node can take: let the nodes refused on this job render them."""
    return _job_action(
        request,
        job_id,
        lambda: services.job_allow_refused_nodes(job_id=job_id, owner=request.user),
        lambda n: f"{n} node{'s' if n != 1 else ''} may render this job's frames again.",
    )


def _job_action(request: HttpRequest, job_id: int, act: Callable[[], T], success: Callable[[T], str]) -> HttpResponse:
    """Run a job service for the page: a refusal becomes an error message, someone else's job a 404."""
    try:
        outcome = act()
    except JobNotFound as exc:
        raise Http404(str(exc)) from exc
    except JobRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, success(outcome))
    return redirect("jobs:detail", job_id)


def _accepted(job: Job) -> str:
    pieces = f"{job.frames.count()} tiles" if job.tile_side > 1 else f"{job.frames.count()} frames"
    return f"Accepted: {tokens(job.quote.get('total'))} tokens are held in escrow for {pieces}."


def _retried(outcome: services.JobRetried) -> str:
    held = f"; {tokens(outcome.held)} tokens are held in escrow again" if outcome.held else ""
    n = outcome.frames_requeued
    return f"{n} failed frame{'s' if n != 1 else ''} sent back to the queue{held}."


def _cancelled(outcome: services.JobCancelled) -> str:
    if outcome.job.accepted_at is None:  # a quote: nothing was queued or held
        return "Quote discarded."
    return (
        f"Job cancelled: {outcome.frames_cancelled} frames stopped, {tokens(outcome.refunded)} tokens refunded "
        "to your wallet."
    )


@login_required
@require_POST
def job_accept(request: HttpRequest, job_id: int) -> HttpResponse:
    return _job_action(request, job_id, lambda: services.job_accept(job_id=job_id, owner=request.user), _accepted)


@login_required
@require_POST
def job_retry_failed(request: HttpRequest, job_id: int) -> HttpResponse:
    return _job_action(request, job_id, lambda: services.job_retry_failed(job_id=job_id, owner=request.user), _retried)


@login_required
def job_cancel(request: HttpRequest, job_id: int) -> HttpResponse:
    """GET: say what cancelling would stop and refund, and ask to confirm; POST: cancel."""
    if request.method != "POST":
        job = _job_or_404(request, job_id)
        return render(
            request,
            "jobs/cancel.html",
            {"job": job, "preview": selectors.cancel_preview(job=job), "money": selectors.job_money(job=job)},
        )
    return _job_action(request, job_id, lambda: services.job_cancel(job_id=job_id, owner=request.user), _cancelled)


def _thumbnail(key: str) -> HttpResponseBase:
    # A few tens of kilobytes, read in one storage request (on S3 one GET, where a look first and the storage's
    # file object asked three HEADs before it): a job page asks one per frame it shows.
    try:
        data = blobs.blob_read(key) if key else None
    except FileNotFoundError:
        data = None
    if data is None:
        raise Http404("no thumbnail yet")
    response = HttpResponse(data, content_type="image/png")
    response["Cache-Control"] = "private, max-age=300"
    return response


@login_required
def frame_thumb(request: HttpRequest, job_id: int, frame_id: int) -> HttpResponseBase:
    try:
        frame = selectors.frame_of(owner=request.user, job_id=job_id, frame_id=frame_id)
    except JobNotFound as exc:
        raise Http404(str(exc)) from exc
    return _thumbnail(frame.thumbnail_key)


@login_required
def frame_image(request: HttpRequest, job_id: int, frame_id: int) -> HttpResponse:
    """The frame at full size (up to VIEWER_MAX_SIDE) as a PNG, for the page's viewer; EXR is tone-mapped."""
    try:
        frame = selectors.frame_of(owner=request.user, job_id=job_id, frame_id=frame_id)
        data = selectors.frame_viewer_png(frame=frame)
    except JobNotFound as exc:
        raise Http404(str(exc)) from exc
    response = HttpResponse(data, content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    return response


@login_required
def still_thumb(request: HttpRequest, job_id: int, number: int) -> HttpResponseBase:
    """The thumbnail of a tiled still assembled from its current tiles."""
    still = selectors.current_assemblies(job=_job_or_404(request, job_id)).get(number)
    return _thumbnail(still.thumbnail_key if still else "")


@login_required
def job_download(request: HttpRequest, job_id: int) -> HttpResponseBase:
    """The finished (settled) frames as a zip, streamed while it is written."""
    response = settled_frames_zip(_job_or_404(request, job_id))
    if response is None:
        raise Http404("no finished frames to download yet")
    return response
