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
