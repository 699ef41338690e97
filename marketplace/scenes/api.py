"""Artist API for scenes: upload (multipart), list, detail, and bundles sent file by file (only the files the
server lacks travel: ask which digests are missing, PUT those, then assemble). Another user's scene is a 404."""
from django.core.exceptions import PermissionDenied
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.scenes import conf, selectors, services, upload_limit
from marketplace.scenes.bundles import check_digests
from marketplace.scenes.models import Scene
from marketplace.scenes.validation import SceneRejected


class SceneSerializer(serializers.ModelSerializer):
    class Meta:
        model = Scene
        fields = ["id", "name", "kind", "sha256", "size", "blend_path", "status", "refusal", "warnings", "report",
                  "created_at", "inspected_at"]
        read_only_fields = fields


class SceneUploadRequest(serializers.Serializer):
    file = serializers.FileField(help_text=f".blend, or .zip with one top-level .blend; at most "
                                           f"{conf.DEFAULTS['MAX_UPLOAD_BYTES']} bytes by default")
    name = serializers.CharField(max_length=200, required=False, default="", help_text="defaults to the file name")


class ErrorResponse(serializers.Serializer):
    error = serializers.CharField()


class UploadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE


class SceneListView(APIView):
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
        if isinstance(exc, UploadTooLarge) or (self.limit is not None and self.limit.exceeded):
            return Response({"error": upload_limit.too_big_message()}, status=UploadTooLarge.status_code)
        return super().handle_exception(exc)

    @extend_schema(responses=SceneSerializer(many=True), summary="The user's scenes, newest first")
    def get(self, request):
        return Response(SceneSerializer(selectors.scenes_of(owner=request.user), many=True).data)

    @extend_schema(request={"multipart/form-data": SceneUploadRequest},
                   responses={201: SceneSerializer, 400: ErrorResponse, 403: ErrorResponse, 413: ErrorResponse},
                   summary="Upload a scene; it is inspected in the background (poll its status)")
    def post(self, request):
        # Before the body is parsed: a provider's or an oversized upload is not spooled to disk first.
        if not services.can_upload(request.user):
            raise PermissionDenied("only artists can upload scenes")
        data = SceneUploadRequest(data=request.data)
        if self.limit.exceeded:
            raise UploadTooLarge()
        data.is_valid(raise_exception=True)
        try:
            scene = services.scene_upload(owner=request.user, uploaded_file=data.validated_data["file"],
                                          name=data.validated_data["name"])
        except SceneRejected as exc:
            return Response({"error": exc.reason}, status=status.HTTP_400_BAD_REQUEST)
        return Response(SceneSerializer(scene).data, status=status.HTTP_201_CREATED)


class SceneDetailView(APIView):
    @extend_schema(responses={200: SceneSerializer, 404: ErrorResponse}, summary="A scene with its inspection")
    def get(self, request, scene_id: int):
        try:
            scene = selectors.scene_of(owner=request.user, scene_id=scene_id)
        except selectors.SceneNotFound as exc:
            return Response({"error": str(exc)}, status=status.HTTP_404_NOT_FOUND)
        return Response(SceneSerializer(scene).data)


class DigestsRequest(serializers.Serializer):
    digests = serializers.ListField(child=serializers.CharField(max_length=80), allow_empty=True,
                                    help_text="SHA-256 hex digests of the bundle's files")


class DigestsResponse(serializers.Serializer):
    missing = serializers.ListField(child=serializers.CharField(), help_text="the digests to upload, in the "
                                                                             "order asked")


class BundleFile(serializers.Serializer):
    path = serializers.CharField(max_length=1000, help_text="posix path inside the bundle, e.g. textures/a.png")
    sha256 = serializers.CharField(max_length=80)


class BundleRequest(serializers.Serializer):
    files = BundleFile(many=True, help_text="every file of the bundle, one top-level .blend among them")
    name = serializers.CharField(max_length=200, required=False, default="")


class BundleIncompleteResponse(serializers.Serializer):
    error = serializers.CharField()
    missing = serializers.ListField(child=serializers.CharField())


def _artist_only(request) -> None:
    if not services.can_upload(request.user):
        raise PermissionDenied("only artists can upload scenes")


class SceneFilesMissingView(APIView):
    @extend_schema(request=DigestsRequest, responses={200: DigestsResponse, 400: ErrorResponse, 403: ErrorResponse},
                   summary="Which of these bundle files (by SHA-256) the server lacks for you")
    def post(self, request):
        _artist_only(request)
        data = DigestsRequest(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            digests = check_digests(data.validated_data["digests"])
        except SceneRejected as exc:
            return Response({"error": exc.reason}, status=status.HTTP_400_BAD_REQUEST)
        return Response({"missing": selectors.scene_files_missing(owner=request.user, digests=digests)})


class SceneFilePutView(APIView):
    parser_classes: list = []  # the body is the file itself, read in chunks below

    @extend_schema(request={"application/octet-stream": bytes}, responses={201: None, 400: ErrorResponse,
                                                                           403: ErrorResponse, 413: ErrorResponse},
                   summary="Upload one bundle file; its bytes must hash to the digest in the URL")
    def put(self, request, sha256: str):
        _artist_only(request)
        raw = request._request
        if int(raw.META.get("CONTENT_LENGTH") or 0) > conf.MAX_UPLOAD_BYTES:  # refused before reading the body
            return Response({"error": upload_limit.too_big_message()}, status=UploadTooLarge.status_code)
        try:
            row = services.scene_file_put(owner=request.user, sha256=sha256,
                                          chunks=iter(lambda: raw.read(1 << 20), b""))
        except SceneRejected as exc:
            return Response({"error": exc.reason}, status=status.HTTP_400_BAD_REQUEST)
        return Response({"sha256": row.sha256, "size": row.size}, status=status.HTTP_201_CREATED)


class SceneBundleView(APIView):
    @extend_schema(request=BundleRequest,
                   responses={201: SceneSerializer, 400: ErrorResponse, 403: ErrorResponse,
                              409: BundleIncompleteResponse},
                   summary="Assemble uploaded files into a scene; checked and inspected like an uploaded zip")
    def post(self, request):
        _artist_only(request)
        data = BundleRequest(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            scene = services.scene_bundle_upload(owner=request.user, files=data.validated_data["files"],
                                                 name=data.validated_data["name"])
        except services.BundleIncomplete as exc:
            return Response({"error": exc.reason, "missing": exc.missing}, status=status.HTTP_409_CONFLICT)
        except SceneRejected as exc:
            return Response({"error": exc.reason}, status=status.HTTP_400_BAD_REQUEST)
        return Response(SceneSerializer(scene).data, status=status.HTTP_201_CREATED)
