"""/metrics for Prometheus (an admin's session or the scrape token) and the admins' farm page."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django_prometheus.exports import ExportToDjangoView

from marketplace.ops.selectors import farm_snapshot


def _scrape_token_matches(request: HttpRequest) -> bool:
    token = getattr(settings, "OPS_METRICS_TOKEN", "")
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    return bool(token) and bool(given) and hmac.compare_digest(given.encode(), token.encode())


def metrics(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not (_scrape_token_matches(request) or (user.is_authenticated and user.is_market_admin)):
        # Not 401 with a challenge: nothing here for anyone else to log in for.
        raise PermissionDenied("metrics are for admins and the scrape token (OPS_METRICS_TOKEN)")
    return ExportToDjangoView(request)


@login_required
def farm(request: HttpRequest) -> HttpResponse:
    if not request.user.is_market_admin:
        raise PermissionDenied("the farm page is for admins")
    return render(request, "ops/farm.html", {"snap": farm_snapshot()})
