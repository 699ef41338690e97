"""Serving local-storage signed URLs (with S3 the agent talks to S3 directly)."""

import io

from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from marketplace import blobs
from marketplace.dispatch.services import lease_upload_refusal


@csrf_exempt
def blob(request: HttpRequest, token: str) -> HttpResponse:
    if request.method not in ("GET", "PUT"):
        return JsonResponse({"error": "method not allowed"}, status=405)
    try:
        key, max_bytes, lease_id = blobs.signed_token_read(token, method=request.method)
    except blobs.BadBlobToken as exc:
        return JsonResponse({"error": str(exc)}, status=403)
    if request.method == "GET":
        if not blobs.blob_exists(key):
            return JsonResponse({"error": "not found"}, status=404)
        return FileResponse(blobs.blob_open(key), content_type="application/octet-stream")
    # An upload URL belongs to one lease: it works while that lease is active, and only once.
    if lease_id is None:
        return JsonResponse({"error": "this link does not allow uploads"}, status=403)
    refusal = lease_upload_refusal(lease_id=lease_id, key=key)
    if refusal:
        return JsonResponse({"error": refusal}, status=409)
    limit = max_bytes or settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    length = int(request.headers.get("Content-Length") or 0)
    if length > limit:
        return JsonResponse({"error": f"upload is larger than the {limit} byte limit"}, status=413)
    body = request.read(limit + 1)
    if len(body) > limit:
        return JsonResponse({"error": f"upload is larger than the {limit} byte limit"}, status=413)
    if not blobs.blob_put_new(key=key, fileobj=io.BytesIO(body)):
        return JsonResponse({"error": "this upload link was already used: a result is written once"}, status=409)
    return JsonResponse({"stored": len(body)}, status=201)
