"""Failed bearer-token authentications (API tokens, node tokens) counted and locked out by django-axes.

The login form goes through axes' authentication backend; bearer tokens never reach a backend, so they report
their failures through the same `user_login_failed` signal axes listens to, and ask axes before checking a token.
A failure is counted per (token prefix, client IP) (AXES_LOCKOUT_PARAMETERS): guessing the secret of one token
stops after AXES_FAILURE_LIMIT tries, and a dead token an agent keeps retrying locks out only that token.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.http import HttpRequest
from rest_framework import exceptions

from marketplace.accounts.tokens import secret_split


def bearer_credentials(*, kind: str, plaintext: str) -> dict[str, str]:
    """What axes counts a failure against: the token's public prefix (never its secret)."""
    parts = secret_split(plaintext)
    prefix = parts[0] if parts else "malformed"
    return {"username": f"{kind}:{prefix}"}


def bearer_allowed(request: HttpRequest, credentials: dict[str, str]) -> None:
    """Raise 429 if this token prefix has failed too often from this client."""
    if not settings.AXES_ENABLED:
        return
    from axes.handlers.proxy import AxesProxyHandler  # imports models: only once apps are loaded

    if not AxesProxyHandler.is_allowed(request, credentials):
        raise exceptions.Throttled(detail="Too many failed attempts with this token; try again later.")


def bearer_failed(request: HttpRequest, credentials: dict[str, str]) -> None:
    user_login_failed.send(sender=__name__, credentials=credentials, request=request)


def client_ip(request: HttpRequest) -> str | None:
    """The client's address for lockouts (AXES_CLIENT_IP_CALLABLE).

    Behind TRUSTED_PROXY_COUNT proxies, each appends the address it saw to X-Forwarded-For, so the client is the
    entry that many places from the right; anything further left was written by the client and is ignored.
    Without a proxy (or with a header shorter than that) it is REMOTE_ADDR.
    """
    count = getattr(settings, "TRUSTED_PROXY_COUNT", 0)
    forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
    if count > 0 and len(forwarded) >= count:
        return forwarded[-count]
    return request.META.get("REMOTE_ADDR")
