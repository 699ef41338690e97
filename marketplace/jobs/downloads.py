"""A zip of a job's finished frames, streamed as it is written: no temp file, no whole archive in memory."""
from __future__ import annotations

import zipfile
from collections.abc import Iterable, Iterator

from django.http import StreamingHttpResponse

from marketplace import blobs
from marketplace.jobs import selectors
from marketplace.jobs.models import Frame, Job


class _Pipe:
    """A write-only, non-seekable sink: zipfile then writes data descriptors instead of seeking back."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        """What was written since the last drain (possibly nothing)."""
        data, self.chunks = b"".join(self.chunks), []
        return data


def member_name(frame: Frame, *, folder: str) -> str:
    ext = frame.result_key.rsplit(".", 1)[-1] if "." in frame.result_key else "png"
    tile = f"_tile{frame.tile_x}x{frame.tile_y}" if frame.tile_x is not None else ""
    return f"{folder}/frame_{frame.number:06d}{tile}.{ext}"


def zip_stream(frames: Iterable[Frame], *, folder: str) -> Iterator[bytes]:
    """Yield a ZIP_STORED archive (images are already compressed) of the frames' results, chunk by chunk."""
    pipe = _Pipe()
    with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for frame in frames:
            with archive.open(member_name(frame, folder=folder), "w", force_zip64=True) as member:
                for chunk in blobs.blob_chunks(frame.result_key):
                    member.write(chunk)
                    yield pipe.drain()
            yield pipe.drain()  # the member's data descriptor
    yield pipe.drain()  # the central directory


def settled_frames_zip(job: Job) -> StreamingHttpResponse | None:
    """The job's settled frames as a streamed zip download, or None when none is settled yet."""
    frames = list(selectors.settled_results(job=job))
    if not frames:
        return None
    folder = f"job{job.pk}"
    response = StreamingHttpResponse(zip_stream(frames, folder=folder), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{folder}-frames.zip"'
    return response
