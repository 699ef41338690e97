from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

import render_kernels
from marketplace.disputes import evidence, selectors, services
from marketplace.disputes.forms import DecisionForm, DisputeForm
from marketplace.disputes.selectors import dispute_deadline


def _admin_only(request: HttpRequest) -> None:
    if not request.user.is_market_admin:
        raise PermissionDenied("dispute review is for admins")


@login_required
def dispute_new(request: HttpRequest, frame_id: int) -> HttpResponse:
    frame = selectors.frame_of_artist(artist=request.user, frame_id=frame_id)
    already = selectors.dispute_of_settlement(frame=frame)
    if already is not None:  # this result is disputed: show that dispute rather than a form that must fail
        messages.info(request, "You have already disputed this frame.")
        return redirect("disputes:detail", already.pk)
    form = DisputeForm(request.POST or None)
    error, status = "", 400 if request.method == "POST" else 200  # a POST still here was refused
    if request.method == "POST" and form.is_valid():
        try:
            dispute = services.dispute_open(artist=request.user, frame_id=frame.pk, reason=form.cleaned_data["reason"])
        except services.DisputeNotFound as exc:
            raise Http404(str(exc)) from exc
        except services.DisputeRefused as exc:
            error, status = str(exc), exc.status
        else:
            messages.success(
                request, "Dispute sent. The provider's pay for this frame is frozen until an admin decides."
            )
            return redirect("disputes:detail", dispute.pk)
    return render(
        request,
        "disputes/new.html",
        {"frame": frame, "form": form, "error": error, "deadline": dispute_deadline(frame=frame)},
        status=status,
    )


@login_required
def my_disputes(request: HttpRequest) -> HttpResponse:
    return render(request, "disputes/mine.html", {"disputes": selectors.disputes_of_artist(artist=request.user)})


@login_required
def dispute_detail(request: HttpRequest, dispute_id: int) -> HttpResponse:
    return render(
        request, "disputes/detail.html", {"dispute": selectors.dispute_for(user=request.user, dispute_id=dispute_id)}
    )


@login_required
def review_queue(request: HttpRequest) -> HttpResponse:
    _admin_only(request)
    return render(
        request,
        "disputes/review_queue.html",
        {"open": selectors.review_queue(), "decided": selectors.recently_decided()},
    )


@login_required
def review_detail(request: HttpRequest, dispute_id: int) -> HttpResponse:
    _admin_only(request)
    dispute = selectors.dispute_for(user=request.user, dispute_id=dispute_id)
    crops = selectors.verification_crops(dispute=dispute)
    return render(
        request,
        "disputes/review_detail.html",
        {
            "dispute": dispute,
            "crops": evidence.crop_evidence(crops=crops),
            "crop_views": evidence.CROP_VIEWS,
            "trust": selectors.trust_history(node_id=dispute.node_id),
            "audit": selectors.audit_entries(dispute=dispute),
            "form": DecisionForm(),
        },
    )


@login_required
@require_POST
def review_decide(request: HttpRequest, dispute_id: int) -> HttpResponse:
    _admin_only(request)
    form = DecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(e for errors in form.errors.values() for e in errors))
        return redirect("disputes:review_detail", dispute_id)
    try:
        dispute = services.dispute_decide(
            admin=request.user,
            dispute_id=dispute_id,
            decision=form.cleaned_data["decision"],
            note=form.cleaned_data["note"],
        )
    except services.DisputeNotFound as exc:
        raise Http404(str(exc)) from exc
    except services.DisputeRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Dispute {dispute.pk} {dispute.get_state_display().lower()}.")
    return redirect("disputes:review_detail", dispute_id)


def _png(data: bytes) -> HttpResponse:
    response = HttpResponse(data, content_type="image/png")
    response["Cache-Control"] = "private, max-age=300"
    return response


@login_required
def evidence_frame(request: HttpRequest, dispute_id: int) -> HttpResponse:
    _admin_only(request)
    dispute = selectors.dispute_for(user=request.user, dispute_id=dispute_id)
    try:
        image = evidence.image_load(dispute.result_key)
        return _png(render_kernels.thumbnail_png(image, max_side=evidence.PREVIEW_MAX_SIDE))
    except evidence.EvidenceUnavailable as exc:
        raise Http404(str(exc)) from exc


@login_required
def evidence_crop(request: HttpRequest, dispute_id: int, crop_id: int, view: str) -> HttpResponse:
    _admin_only(request)
    dispute = selectors.dispute_for(user=request.user, dispute_id=dispute_id)
    crop = next((c for c in selectors.verification_crops(dispute=dispute) if c.pk == crop_id), None)
    if crop is None or view not in evidence.CROP_VIEWS:
        raise Http404("no such crop")
    try:
        return _png(evidence.crop_view_png(crop=crop, view=view))
    except evidence.EvidenceUnavailable as exc:
        raise Http404(str(exc)) from exc
