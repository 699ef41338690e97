"""The upload size limit, enforced while the request body streams in (upload page and API alike).

Install it before anything reads the body; `scene_upload` checks the size again whatever the caller did.
"""

from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpRequest

from marketplace.errors import TooLarge
from marketplace.scenes import conf
from marketplace.scenes.validation import mib

# Room for the multipart framing and the other form fields around the file.
FORM_OVERHEAD_BYTES = 64 * 1024


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


def install(request: HttpRequest) -> UploadSizeLimit:
    """Put the limit first among the request's upload handlers."""
    limit = UploadSizeLimit(request, conf.MAX_UPLOAD_BYTES)
    request.upload_handlers.insert(0, limit)
    return limit


def declared_too_big(request: HttpRequest) -> bool:
    """The Content-Length alone passes the limit: refuse without reading the body."""
    return int(request.META.get("CONTENT_LENGTH") or 0) > conf.MAX_UPLOAD_BYTES + FORM_OVERHEAD_BYTES


def too_big_message() -> str:
    return f"the file is over the upload limit of {mib(conf.MAX_UPLOAD_BYTES)}"


class UploadTooLarge(TooLarge):
    """The upload passes the limit (declared, or found while it streamed in)."""

    def __init__(self) -> None:
        super().__init__(too_big_message())
