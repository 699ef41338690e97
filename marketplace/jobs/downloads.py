"""A zip of a job's finished frames, streamed as it is written: no temp file, no whole archive in memory."""

from __future__ import annotations

import hashlib
import logging
import zipfile
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import NamedTuple

from django.http import StreamingHttpResponse
from django.utils import timezone

from marketplace import blobs
from marketplace.jobs import selectors
from marketplace.jobs.models import Frame, Job

log = logging.getLogger("jobs")
WITHHELD = "WITHHELD.txt"


class _Pipe:
    """A write-only, non-seekable sink: zipfile then writes data descriptors instead of seeking back."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        """Part of the file protocol zipfile takes; it closes only files it opened itself, never this one."""

    def drain(self) -> bytes:
        """What was written since the last drain (possibly nothing)."""
        data, self.chunks = b"".join(self.chunks), []
        return data


# A regular file, rw-r--r--: what the artist unpacks is theirs to read, not private to one user (zipfile's
# default for a member written through open() is 0600).
MEMBER_MODE = 0o100644
# The oldest time a zip entry can carry (MS-DOS dates start in 1980).
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class Member(NamedTuple):
    name: str  # in the zip
    key: str  # in storage
    sha256: str  # recorded when it was frozen ("" for results older than freezing)
    when: datetime | None  # when it was made: the frame's report (its render), else its settlement; a still's assembly


def member_info(member: Member) -> zipfile.ZipInfo:
    """The zip entry of a member: its name, the time it was rendered (in the server's time zone, as zip times are
    local) and mode 0644."""
    when = timezone.localtime(member.when).timetuple()[:6] if member.when else ZIP_EPOCH
    info = zipfile.ZipInfo(member.name, date_time=max(when, ZIP_EPOCH))
    info.external_attr = MEMBER_MODE << 16
    info.compress_type = zipfile.ZIP_STORED
    return info


def _extension(key: str) -> str:
    return key.rsplit(".", 1)[-1] if "." in key else "png"


def member_name(frame: Frame, *, folder: str) -> str:
    tile = f"_tile{frame.tile_x}x{frame.tile_y}" if frame.tile_x is not None else ""
    return f"{folder}/frame_{frame.number:06d}{tile}.{_extension(frame.result_key)}"


def members(job: Job, *, folder: str) -> list[Member]:
    """What the artist has received, as members (name in the zip, storage key, recorded digest, time made): each
    settled frame, and a tiled still as its assembled image once every tile is settled and stitched; until then its
    settled tiles, one by one (what is paid for is never withheld, e.g. when the job was cancelled with some tiles
    unrendered)."""
    assembled = selectors.current_assemblies(job=job)
    found: list[Member] = []
    stitched: set[int] = set()
    for frame in selectors.settled_results(job=job):
        still = assembled.get(frame.number) if frame.tile_x is not None else None
        if still is None:
            found.append(
                Member(
                    member_name(frame, folder=folder),
                    frame.result_key,
                    frame.result_sha256,
                    frame.rendered_at or frame.settled_at,
                )
            )
        elif frame.number not in stitched:  # the still's first tile brings the whole image, the others are in it
            stitched.add(frame.number)
            found.append(
                Member(
                    f"{folder}/frame_{frame.number:06d}.{_extension(still.result_key)}",
                    still.result_key,
                    still.result_sha256,
                    still.assembled_at,
                )
            )
    return found


def _digest(key: str) -> str:
    h = hashlib.sha256()
    for chunk in blobs.blob_chunks(key):
        h.update(chunk)
    return h.hexdigest()


def zip_stream(entries: Iterable[Member]) -> Iterator[bytes]:
    """Yield a ZIP_STORED archive (images are already compressed) of the members, chunk by chunk. Each member's
    digest is checked before a byte of it is sent: one whose stored bytes no longer match the digest recorded when
    it was frozen is left out (logged as an event), and WITHHELD.txt names it. A member that changes while it is
    being sent breaks the download (DigestMismatch) rather than deliver it."""
    pipe = _Pipe()
    withheld: list[str] = []
    with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for entry in entries:
            expected = blobs.expected_digests(entry.key, entry.sha256)
            actual = _digest(entry.key) if expected else ""
            if expected and expected != {actual}:
                log.error(
                    "event=download_withheld",
                    extra={"member": entry.name, "reason": blobs.digest_refused(entry.key, expected, actual)},
                )
                withheld.append(f"{entry.name}: its stored image does not match the verified one; it was not delivered")
                continue
            sent = hashlib.sha256()
            with archive.open(member_info(entry), "w", force_zip64=True) as member:
                for chunk in blobs.blob_chunks(entry.key):
                    sent.update(chunk)
                    member.write(chunk)
                    yield pipe.drain()
            if expected and expected != {sent.hexdigest()}:
                raise blobs.digest_refused(entry.key, expected, sent.hexdigest())
            yield pipe.drain()  # the member's data descriptor
        if withheld:
            archive.writestr(WITHHELD, "\n".join(withheld) + "\n")
    yield pipe.drain()  # the central directory


def settled_frames_zip(job: Job) -> StreamingHttpResponse | None:
    """The job's settled frames (a tiled still as one image) as a streamed zip download, or None when none is
    settled yet."""
    folder = f"job{job.pk}"
    found = members(job, folder=folder)
    if not found:
        return None
    response = StreamingHttpResponse(zip_stream(found), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{folder}-frames.zip"'
    return response
