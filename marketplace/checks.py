"""Deployment checks of the market's own settings, run by `python manage.py check --deploy` beside Django's."""

from __future__ import annotations

from urllib.parse import urlparse

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def market_deploy_checks(app_configs, **kwargs) -> list[Warning]:
    problems = []
    broker = urlparse(settings.AGENT_BROKER_URL)
    if not broker.password:
        problems.append(
            Warning(
                "AGENT_BROKER_URL has no password: the marketplace must connect to the agent broker as its own ACL "
                "user, with the broker's `default` user off (see compose.yaml).",
                id="market.W001",
            )
        )
    if getattr(settings, "PAYMENTS_DEV_PROVIDER", False) and not settings.DEBUG:
        problems.append(
            Warning(
                "PAYMENTS_DEV_PROVIDER is on: the simulated payment provider lets anyone mint tokens.", id="market.W002"
            )
        )
    if urlparse(settings.PUBLIC_URL).scheme != "https":
        problems.append(
            Warning(
                "PUBLIC_URL is not https: agents' tokens, session cookies and signed blob URLs travel in clear.",
                id="market.W003",
            )
        )
    return problems
