"""REST API: artist/provider endpoints (API token or session) and the agent API (node token)."""

from django.urls import include, path

urlpatterns = [
    # First: agents' calls are most of the farm's requests, and Django tries patterns in order (each of the
    # includes below under "" is tried whole before a later pattern).
    path("agent/", include("marketplace.dispatch.agent_urls")),
    path("", include("marketplace.scenes.api_urls")),
    path("", include("marketplace.jobs.api_urls")),
    path("", include("marketplace.nodes.api_urls")),
    path("", include("marketplace.payments.api_urls")),
    path("", include("marketplace.disputes.api_urls")),
    path("", include("marketplace.verification.api_urls")),
]
