"""The deployment's SECRET_KEY: what counts as unsafe, and the per-purpose keys derived from it.

Imported by settings.py, so it must not import Django settings or apps.

A signed token of one purpose (a blob URL) must never verify as another purpose's token (a session, a password
reset link), even if both payloads were made to look alike: each purpose signs with its own key,
HMAC-SHA256(SECRET_KEY, "marketplace/<purpose>/v1"). That is the extract-free half of HKDF (RFC 5869 section 3.3
allows skipping the extract step for a key that is already uniformly random, which SECRET_KEY must be). Rotating
SECRET_KEY (old value in SECRET_KEY_FALLBACKS) rotates every derived key with it.
"""

from __future__ import annotations

import hashlib
import hmac

# The key `make run` and `make test` use with DEBUG on. Never valid with DEBUG off.
DEV_SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"
# Keys that appear in this repository, its docs or common templates: anyone can sign with them.
KNOWN_KEYS = frozenset({DEV_SECRET_KEY, "change-me", "changeme", "change-me-in-production", "secret"})
# Django's own `check --deploy` threshold (security.W009): at least 50 characters, at least 5 different ones.
MIN_LENGTH = 50
MIN_UNIQUE_CHARS = 5


def secret_key_problem(key: str) -> str | None:
    """Why `key` must not sign anything in production, or None if it may."""
    if not key:
        return "SECRET_KEY is not set"
    if key in KNOWN_KEYS or key.startswith("django-insecure-"):
        return "SECRET_KEY is a published example key"
    if len(key) < MIN_LENGTH:
        return f"SECRET_KEY is {len(key)} characters long; it needs at least {MIN_LENGTH}"
    if len(set(key)) < MIN_UNIQUE_CHARS:
        return f"SECRET_KEY uses fewer than {MIN_UNIQUE_CHARS} different characters"
    return None


def derived_key(purpose: str, *, secret: str) -> str:
    """The signing key for one purpose (e.g. "blobs"), as hex, derived from `secret` (a SECRET_KEY)."""
    if not purpose or "/" in purpose:
        raise ValueError(f"bad key purpose {purpose!r}")
    return hmac.new(secret.encode(), f"marketplace/{purpose}/v1".encode(), hashlib.sha256).hexdigest()
