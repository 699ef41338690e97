"""Artist API for scenes: upload (multipart), list, detail, delete, and bundles sent file by file (only the files
the server lacks travel: ask which digests are missing, PUT those, then assemble). Another user's scene is a 404."""

from django.core.exceptions import PermissionDenied
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.scenes import conf, selectors, services, upload_limit
from marketplace.scenes.bundles import check_digests
from marketplace.scenes.models import Scene
from marketplace.scenes.upload_limit import UploadTooLarge


class SceneSerializer(serializers.ModelSerializer):
    class Meta:
        model = Scene
        fields = [
            "id",
            "name",
            "kind",
            "sha256",
            "size",
            "blend_path",
            "status",
            "refusal",
            "warnings",
            "report",
            "created_at",
            "inspected_at",
        ]
        read_only_fields = fields


@extend_schema_field(OpenApiTypes.BINARY)
class UploadField(serializers.FileField):
    """The uploaded file's bytes (a multipart part): `format: binary` in the schema, not a URL."""


class SceneUploadRequest(serializers.Serializer):
    file = UploadField(
        help_text=f".blend, or .zip with one top-level .blend; at most "
        f"{conf.DEFAULTS['MAX_UPLOAD_BYTES']} bytes by default"
    )
    name = serializers.CharField(max_length=200, required=False, default="", help_text="defaults to the file name")


NOT_FOUND = OpenApiResponse(description="No such scene of yours.")


class ScenesView(APIView):
    """Scenes of the signed-in user."""


class SceneListView(ScenesView):
    parser_classes = [MultiPartParser, FormParser]
    limit: upload_limit.UploadSizeLimit | None = None

    def initial(self, request, *args, **kwargs) -> None:
        # Before authentication: DRF's CSRF check for session users parses the form, so the size limit must
        # already stand between the body and the disk (a script's token needs no CSRF check, a browser's does).
        if request.method == "POST":
            if upload_limit.declared_too_big(request):
                raise UploadTooLarge()
            self.limit = upload_limit.install(request._request)
        super().initial(request, *args, **kwargs)

    def handle_exception(self, exc: Exception) -> Response:
        # Also when the CSRF check failed because the form was cut off at the limit before its token.
        if self.limit is not None and self.limit.exceeded:
            exc = UploadTooLarge()
        return super().handle_exception(exc)

    @extend_schema(
        responses=SceneSerializer(many=True),
        summary="List your scenes",
        description="Your scenes, newest first, with their inspection status (deleted ones are gone).",
    )
    def get(self, request):
        return Response(SceneSerializer(selectors.scenes_of(owner=request.user), many=True).data)

    @extend_schema(
        request={"multipart/form-data": SceneUploadRequest},
        responses={
            201: SceneSerializer,
            400: OpenApiResponse(description="The file is not a scene we can render: `detail` says why."),
            403: OpenApiResponse(description="Only artist accounts can upload scenes."),
            413: OpenApiResponse(description="The file is over the upload limit."),
        },
        summary="Upload a scene",
        description="Send a `.blend`, or a `.zip` holding one top-level `.blend` and its textures, as "
        "`multipart/form-data`. The file is stored and inspected in the background (no code "
        "in it ever runs): poll the scene until `status` is `ready` (then quote a job with "
        "it) or `refused` (`refusal` says why).",
    )
    def post(self, request):
        # Before the body is parsed: a provider's or an oversized upload is not spooled to disk first.
        if not services.can_upload(request.user):
            raise PermissionDenied("only artists can upload scenes")
        data = SceneUploadRequest(data=request.data)
        if self.limit.exceeded:
            raise UploadTooLarge()
        data.is_valid(raise_exception=True)
        scene = services.scene_upload(
            owner=request.user, uploaded_file=data.validated_data["file"], name=data.validated_data["name"]
        )
        return Response(SceneSerializer(scene).data, status=status.HTTP_201_CREATED)


class SceneDetailView(ScenesView):
    @extend_schema(
        responses={200: SceneSerializer, 404: NOT_FOUND},
        summary="Get a scene",
        description="One of your scenes with its inspection report: engine, frame range, resolution, "
        "samples, warnings, or why it was refused.",
    )
    def get(self, request, scene_id: int):
        return Response(SceneSerializer(selectors.scene_of(owner=request.user, scene_id=scene_id)).data)

    @extend_schema(
        responses={
            204: None,
            404: NOT_FOUND,
            409: OpenApiResponse(description="A quoted, queued or running job still uses it."),
        },
        summary="Delete a scene",
        description="Removes one of your scenes from your lists; it can no longer be quoted. Refused "
        "(409) while a quoted, queued or running job uses it. Finished jobs keep their "
        "frames and downloads.",
    )
    def delete(self, request, scene_id: int):
        services.scene_delete(owner=request.user, scene_id=scene_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class DigestsRequest(serializers.Serializer):
    digests = serializers.ListField(
        child=serializers.CharField(max_length=80),
        allow_empty=True,
        help_text="SHA-256 hex digests of the bundle's files",
    )


class DigestsResponse(serializers.Serializer):
    missing = serializers.ListField(
        child=serializers.CharField(), help_text="the digests to upload, in the order asked"
    )


class BundleFile(serializers.Serializer):
    path = serializers.CharField(max_length=1000, help_text="posix path inside the bundle, e.g. textures/a.png")
    sha256 = serializers.CharField(max_length=80)


class BundleRequest(serializers.Serializer):
    files = BundleFile(many=True, help_text="every file of the bundle, one top-level .blend among them")
    name = serializers.CharField(max_length=200, required=False, default="")


def _artist_only(request) -> None:
    if not services.can_upload(request.user):
        raise PermissionDenied("only artists can upload scenes")


class SceneFilesMissingView(ScenesView):
    @extend_schema(
        request=DigestsRequest,
        responses={200: DigestsResponse},
        summary="Which bundle files you have not uploaded yet",
        description="Send the SHA-256 of every file of a bundle; the answer lists those the server does "
        "not hold for you, in the order asked. Only those need uploading (as Flamenco's "
        "Shaman does); a file counts as yours only once you uploaded its bytes.",
    )
    def post(self, request):
        _artist_only(request)
        data = DigestsRequest(data=request.data)
        data.is_valid(raise_exception=True)
        digests = check_digests(data.validated_data["digests"])
        return Response({"missing": selectors.scene_files_missing(owner=request.user, digests=digests)})


class SceneFilePutView(ScenesView):
    parser_classes: list = []  # the body is the file itself, read in chunks below

    @extend_schema(
        request={"application/octet-stream": bytes},
        responses={201: None},
        summary="Upload one bundle file",
        description="The raw bytes of one file; they must hash to the SHA-256 in the URL. Refused (413) "
        "above the upload limit before the body is read.",
    )
    def put(self, request, sha256: str):
        _artist_only(request)
        raw = request._request
        if int(raw.META.get("CONTENT_LENGTH") or 0) > conf.MAX_UPLOAD_BYTES:  # refused before reading the body
            raise UploadTooLarge()
        row = services.scene_file_put(owner=request.user, sha256=sha256, chunks=iter(lambda: raw.read(1 << 20), b""))
        return Response({"sha256": row.sha256, "size": row.size}, status=status.HTTP_201_CREATED)


class SceneBundleView(ScenesView):
    @extend_schema(
        request=BundleRequest,
        responses={201: SceneSerializer},
        summary="Assemble uploaded files into a scene",
        description="Builds the bundle from files you uploaded; it is checked and inspected like an "
        "uploaded zip. A file not uploaded yet: 409 with `missing`, the digests to upload.",
    )
    def post(self, request):
        _artist_only(request)
        data = BundleRequest(data=request.data)
        data.is_valid(raise_exception=True)
        scene = services.scene_bundle_upload(
            owner=request.user, files=data.validated_data["files"], name=data.validated_data["name"]
        )
        return Response(SceneSerializer(scene).data, status=status.HTTP_201_CREATED)
