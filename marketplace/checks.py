"""Checks of the market's own settings, run by `python manage.py check` (the deploy ones with `--deploy`)."""

from __future__ import annotations

from urllib.parse import urlparse

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from marketplace.dispatch import conf as dispatch_conf
from marketplace.jobs import conf as jobs_conf
from marketplace.scenes import conf as scenes_conf
from workers.contract import LIMITS


@register()
def agent_contract_checks(app_configs, **kwargs) -> list[Error]:
    """The market's limits lie inside the agent contract's (workers.contract.LIMITS): a job the market takes must
    give a manifest every agent renders, or each of its leases would fail on the node."""
    limits = [
        ("SCENE_MAX_SIDE", scenes_conf.MAX_SIDE, LIMITS.side),
        ("JOBS_MAX_SAMPLES", jobs_conf.MAX_SAMPLES, LIMITS.samples),
        ("DISPATCH_MAX_RENDER_SECONDS", dispatch_conf.MAX_RENDER_SECONDS, LIMITS.render_seconds),
    ]
    return [
        Error(
            f"{name} is {value}: agents take only {lo} to {hi} (workers.contract.LIMITS), so every lease past "
            "the contract would fail on its node.",
            id="market.E001",
        )
        for name, value, (lo, hi) in limits
        if not lo <= value <= hi
    ]


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
