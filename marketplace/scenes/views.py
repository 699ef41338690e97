"""Artist pages for scenes: upload (with a size limit enforced while the body streams in), list, detail.

Another user's scene is a 404, never a 403 that confirms it exists.
"""
from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from marketplace.scenes import conf, selectors, services
from marketplace.scenes.models import Scene
from marketplace.scenes.validation import SceneRejected, mib

# Room for the multipart framing and the other form fields around the file.
FORM_OVERHEAD_BYTES = 64 * 1024


class SceneUploadForm(forms.Form):
    file = forms.FileField(label="Scene (.blend, or .zip with the .blend and its textures)")
    name = forms.CharField(max_length=200, required=False, help_text="defaults to the file name")


class UploadSizeLimit(FileUploadHandler):
    """Stops keeping an upload's bytes once it passes the limit, instead of spooling all of it to disk."""

    def __init__(self, request: HttpRequest, max_bytes: int) -> None:
        super().__init__(request)
        self.max_bytes = max_bytes
        self.exceeded = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        if start + len(raw_data) > self.max_bytes:
            self.exceeded = True
            raise StopUpload(connection_reset=False)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


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
    limit = UploadSizeLimit(request, conf.MAX_UPLOAD_BYTES)
    request.upload_handlers.insert(0, limit)
    return _scene_upload(request, limit)


@csrf_protect
def _scene_upload(request: HttpRequest, limit: UploadSizeLimit) -> HttpResponse:
    too_big = f"the file is over the upload limit of {mib(conf.MAX_UPLOAD_BYTES)}"
    error, status = "", 200
    if request.method == "POST":
        if int(request.META.get("CONTENT_LENGTH") or 0) > conf.MAX_UPLOAD_BYTES + FORM_OVERHEAD_BYTES:
            error, status = too_big, 413  # refused before reading the body
            form = SceneUploadForm()
        else:
            form = SceneUploadForm(request.POST, request.FILES)
            if limit.exceeded:
                error, status = too_big, 413
            elif form.is_valid():
                try:
                    scene = services.scene_upload(owner=request.user, uploaded_file=form.cleaned_data["file"],
                                                  name=form.cleaned_data["name"])
                except SceneRejected as exc:
                    error, status = exc.reason, 400
                else:
                    url = reverse("scenes:detail", args=[scene.pk])
                    return JsonResponse({"id": scene.pk, "url": url}, status=201) if _wants_json(request) \
                        else redirect(url)
            else:
                error, status = "choose a .blend or .zip file to upload", 400
        if _wants_json(request):
            return JsonResponse({"error": error}, status=status)
    else:
        form = SceneUploadForm()
    return render(request, "scenes/upload.html", {"form": form, "error": error,
                                                  "max_bytes": conf.MAX_UPLOAD_BYTES,
                                                  "max_size": mib(conf.MAX_UPLOAD_BYTES)}, status=status)


@login_required
def scene_list(request: HttpRequest) -> HttpResponse:
    return render(request, "scenes/list.html", {"scenes": selectors.scenes_of(owner=request.user),
                                                "can_upload": services.can_upload(request.user)})


@login_required
def scene_detail(request: HttpRequest, scene_id: int) -> HttpResponse:
    return render(request, "scenes/detail.html", {"scene": _scene_or_404(request, scene_id)})


@login_required
def scene_fragment(request: HttpRequest, scene_id: int) -> HttpResponse:
    """The live part of the scene page (inspection status and result), polled while it is inspecting."""
    return render(request, "scenes/_inspection.html", {"scene": _scene_or_404(request, scene_id)})
