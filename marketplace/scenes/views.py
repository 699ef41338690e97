"""Artist pages for scenes: upload (with a size limit enforced while the body streams in), list, detail.

Another user's scene is a 404, never a 403 that confirms it exists.
"""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from marketplace.scenes import conf, selectors, services, upload_limit
from marketplace.scenes.models import Scene
from marketplace.scenes.validation import SceneRejected, mib


class SceneUploadForm(forms.Form):
    file = forms.FileField(label="Scene (.blend, or .zip with the .blend and its textures)")
    name = forms.CharField(max_length=200, required=False, help_text="defaults to the file name")


def _scene_or_404(request: HttpRequest, scene_id: int) -> Scene:
    try:
        return selectors.scene_of(owner=request.user, scene_id=scene_id)
    except selectors.SceneNotFound as exc:
        raise Http404(str(exc)) from exc


def _wants_json(request: HttpRequest) -> bool:
    return request.headers.get("X-Requested-With") == "XMLHttpRequest"


@login_required
@csrf_exempt  # the upload handler must be installed before the body is read; CSRF is checked just below
def scene_upload(request: HttpRequest) -> HttpResponse:
    if not services.can_upload(request.user):
        raise PermissionDenied("only artists can upload scenes")
    return _scene_upload(request, upload_limit.install(request))


@csrf_protect
def _scene_upload(request: HttpRequest, limit: upload_limit.UploadSizeLimit) -> HttpResponse:
    too_big = upload_limit.UploadTooLarge()
    error, status = "", 200
    if request.method == "POST":
        if upload_limit.declared_too_big(request):
            error, status = str(too_big), too_big.status  # refused before reading the body
            form = SceneUploadForm()
        else:
            form = SceneUploadForm(request.POST, request.FILES)
            if limit.exceeded:
                error, status = str(too_big), too_big.status
            elif form.is_valid():
                try:
                    scene = services.scene_upload(
                        owner=request.user, uploaded_file=form.cleaned_data["file"], name=form.cleaned_data["name"]
                    )
                except SceneRejected as exc:
                    error, status = exc.reason, exc.status
                else:
                    url = reverse("scenes:detail", args=[scene.pk])
                    return (
                        JsonResponse({"id": scene.pk, "url": url}, status=201)
                        if _wants_json(request)
                        else redirect(url)
                    )
            else:
                error, status = "choose a .blend or .zip file to upload", 400
        if _wants_json(request):
            return JsonResponse({"error": error}, status=status)
    else:
        form = SceneUploadForm()
    return render(
        request,
        "scenes/upload.html",
        {"form": form, "error": error, "max_bytes": conf.MAX_UPLOAD_BYTES, "max_size": mib(conf.MAX_UPLOAD_BYTES)},
        status=status,
    )


@login_required
def scene_list(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "scenes/list.html",
        {"scenes": selectors.scenes_of(owner=request.user), "can_upload": services.can_upload(request.user)},
    )


@login_required
def scene_detail(request: HttpRequest, scene_id: int) -> HttpResponse:
    return render(request, "scenes/detail.html", {"scene": _scene_or_404(request, scene_id)})


@login_required
@require_POST
def scene_delete(request: HttpRequest, scene_id: int) -> HttpResponse:
    try:
        scene = services.scene_delete(owner=request.user, scene_id=scene_id)
    except selectors.SceneNotFound as exc:
        raise Http404(str(exc)) from exc
    except services.SceneInUse as exc:
        messages.error(request, str(exc))
        return redirect("scenes:detail", scene_id)
    messages.success(request, f"Scene “{scene.name}” deleted.")
    return redirect("scenes:list")


@login_required
def scene_fragment(request: HttpRequest, scene_id: int) -> HttpResponse:
    """The live part of the scene page (inspection status and result), polled while it is inspecting."""
    return render(request, "scenes/_inspection.html", {"scene": _scene_or_404(request, scene_id)})
