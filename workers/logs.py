"""Structured logs: one JSON object a line in production, key=value for people; the ids a line concerns come
from context bound once at an entry point (a request, a Celery task, the lease an agent renders).

The agent and the market both use this module (the market adds its entry points in `marketplace.logs`). Every
`logging` call keeps working: structlog's ProcessorFormatter renders stdlib records, merging the bound context
(contextvars) and any `extra=` fields, so a call site passes ids as fields, never formatted into the text.
Secrets are scrubbed from every line, whatever field or message they arrive in.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache

import structlog
from structlog.contextvars import bind_contextvars, clear_contextvars, get_contextvars
from structlog.typing import EventDict, WrappedLogger

FORMATS = ("json", "console")
REDACTED = "[redacted]"

# A field whose name says it holds a secret (`token`, `lease_token`; not `amount_tokens`, the currency) is
# redacted whole, whatever its value.
_SECRET_FIELD = re.compile(
    r"(?:^|_)(?:token|csrftoken|password|passwd|secret|authorization|signature|cookie|sessionid|api_?key"
    r"|credentials?)$",
    re.I,
)
# Secrets inside text (messages, exceptions, URLs in error strings): keep the name, drop the value.
_SECRET_TEXT = [
    # API and node tokens (`<kind><8 hex>.<secret>`, accounts/tokens.py): the prefix names the token, keep it.
    (re.compile(r"\b([a-z]{1,4}[0-9a-f]{8})\.[A-Za-z0-9_-]{16,}"), r"\1." + REDACTED),
    # An Authorization header's value, whatever its scheme (`Node …`, `Bearer …`, `Basic …`).
    (re.compile(r"(authorization[\"']?\s*[:=]\s*[\"']?)(?:\w+ )?[^\s\"',]+", re.I), r"\1" + REDACTED),
    # Presigned S3 URLs and any query parameter that carries a credential.
    (
        re.compile(
            r"([?&](?:X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature|AWSAccessKeyId|sig|token"
            r"|access_token)=)[^&\s\"'<>]+",
            re.I,
        ),
        r"\1" + REDACTED,
    ),
    # The market's local signed URLs carry their token in the path (marketplace/urls.py: blobs/<token>).
    (re.compile(r"(/blobs/)[^/?\s\"'<>]+"), r"\1" + REDACTED),
    # `password=…`, `token: …` written into a message by hand.
    (
        re.compile(r"(?<![A-Za-z])((?:password|passwd|secret|token|api_?key)[\"']?\s*[=:]\s*[\"']?)[^\s\"',&]+", re.I),
        r"\1" + REDACTED,
    ),
]


# Every pattern above needs one of these characters: most values (names, states, numbers) skip the patterns.
_MAYBE_SECRET = re.compile(r"[.:=/]")
# Fields this module writes itself, never a secret.
_OWN_FIELDS = frozenset({"timestamp", "level", "logger"})


def scrub(text: str) -> str:
    if not _MAYBE_SECRET.search(text):
        return text
    for pattern, replacement in _SECRET_TEXT:
        text = pattern.sub(replacement, text)
    return text


@lru_cache(maxsize=1024)
def _secret_name(key: str) -> bool:
    return bool(_SECRET_FIELD.search(key))


def _clean(value: object) -> object:
    if isinstance(value, str):
        return scrub(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {k: REDACTED if _secret_name(str(k)) else _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_clean(v) for v in value]
    return scrub(str(value))  # an object (Django's `request` extra): its text, scrubbed like any other


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: no token, password, Authorization header or URL signature reaches a log line."""
    for key, value in event_dict.items():
        if key not in _OWN_FIELDS:
            event_dict[key] = REDACTED if _secret_name(key) else _clean(value)
    return event_dict


_EVENT_NAME = re.compile(r"[\w.-]+")


def event_name(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """`log.info("event=lease_granted", extra=...)`, this code base's way to name an event, logs the event
    "lease_granted"; words for people after a colon (`"event=goodbye: the node is offline"`) go to `detail`, so
    the event stays a name to count and alert on."""
    event = event_dict.get("event")
    if isinstance(event, str) and event.startswith("event="):
        event = event.removeprefix("event=")
        name, _, detail = event.partition(": ")
        if detail and _EVENT_NAME.fullmatch(name):
            event_dict["event"], event_dict["detail"] = name, detail
        else:
            event_dict["event"] = event
    return event_dict


def formatter(fmt: str) -> structlog.stdlib.ProcessorFormatter:
    """A logging.Formatter for `fmt`: "json" (one object a line, for collectors) or "console" (key=value)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: use one of {', '.join(FORMATS)}")
    renderer = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(
            colors=False, pad_event_to=0, exception_formatter=structlog.dev.plain_traceback
        )
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.ExtraAdder(),  # `log.info("...", extra={"frame_id": 3})`
            event_name,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
    )


def configure(*, level: int | str = logging.INFO, fmt: str = "console") -> None:
    """Route every stdlib logger of this process through one stderr handler in `fmt` (the agent's set-up)."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def bind(**ids: object) -> None:
    """Bind ids for every later line of this context (request, task, thread); None values are skipped."""
    bind_contextvars(**{k: v for k, v in ids.items() if v is not None})


@contextmanager
def scope(**ids: object) -> Iterator[None]:
    """Bind ids for a block, then put the context back as it was (nested scopes and eager tasks stay intact)."""
    saved = get_contextvars()
    bind(**ids)
    try:
        yield
    finally:
        context_restore(saved)


def context_restore(saved: Mapping[str, object]) -> None:
    clear_contextvars()
    bind_contextvars(**saved)
