"""The live job page: one poll endpoint answers with only what changed since the client's cursor (issue 12).

The page is made of parts (the action buttons and download link, the waiting notice, the summary) and one row
per frame. A cursor says what the client has: when it was served, and a short digest of each part. A poll renders
the parts again and sends those whose digest differs, plus the rows of frames changed since the cursor's time
(`Frame.updated_at`, moved by every state transition). Rows are looked up `SLACK_SECONDS` further back, so a
transaction that committed just after the last poll but stamped its rows just before is not missed; a row sent
twice is harmless. Every `FULL_EVERY` polls the client drops its cursor and gets everything (time-only changes,
such as a dispute window closing, touch no row).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.http import HttpRequest
from django.template.loader import render_to_string

PARTS = {
    "actions": "jobs/_actions.html",
    "waiting": "jobs/_waiting.html",
    "summary": "jobs/_summary.html",
    "strip": "jobs/_strip.html",
}
SLACK_SECONDS = 5
FULL_EVERY = 20  # polls; read by the page script from the answer


def _digest(html: str) -> str:
    return hashlib.blake2s(html.encode(), digest_size=6).hexdigest()


@dataclass(frozen=True)
class Cursor:
    served_at: datetime
    digests: dict[str, str]

    @property
    def frames_since(self) -> datetime:
        return self.served_at - timedelta(seconds=SLACK_SECONDS)

    @classmethod
    def parse(cls, raw: str) -> Cursor | None:
        """None for a missing or malformed cursor (the client then gets everything)."""
        pieces = raw.split(".")
        if len(pieces) != 2 + len(PARTS) or pieces[0] != "v1" or not pieces[1].isdigit():
            return None
        try:
            served = datetime.fromtimestamp(int(pieces[1]) / 1000, tz=UTC)
        except (OverflowError, ValueError, OSError):
            return None
        return cls(served, dict(zip(PARTS, pieces[2:], strict=True)))


def render_parts(request: HttpRequest, context: dict) -> dict[str, str]:
    return {name: render_to_string(template, context, request=request) for name, template in PARTS.items()}


def cursor_of(parts: dict[str, str], *, now: datetime) -> str:
    return ".".join(["v1", str(int(now.timestamp() * 1000)), *(_digest(parts[name]) for name in PARTS)])


def changes(request: HttpRequest, context: dict, *, seen: Cursor | None, now: datetime) -> dict:
    """The poll answer: changed parts, changed frame rows (all of them as one `frames` part without a cursor),
    whether the page should keep polling, and the next cursor."""
    parts = render_parts(request, context)
    answer: dict = {
        "cursor": cursor_of(parts, now=now),
        "live": context["live"],
        "state": context["job"].state,
        "full_every": FULL_EVERY,
    }
    answer["parts"] = {
        name: html for name, html in parts.items() if seen is None or seen.digests.get(name) != _digest(html)
    }
    if seen is None:
        answer["parts"]["frames"] = render_to_string("jobs/_frame_rows.html", context, request=request)
        answer["parts"]["cards"] = render_to_string("jobs/_frame_cards.html", context, request=request)
        answer["rows"] = {}
    else:  # by element id: the frame's table row and its card in the grid
        answer["rows"] = {}
        for frame in context["page_frames"]:
            row_context = {**context, "frame": frame}
            answer["rows"][f"frame-row-{frame.pk}"] = render_to_string(
                "jobs/_frame_row.html", row_context, request=request
            )
            answer["rows"][f"frame-card-{frame.pk}"] = render_to_string(
                "jobs/_frame_card.html", row_context, request=request
            )
    return answer
