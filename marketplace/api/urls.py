"""REST API: artist/provider endpoints (API token or session) and the agent API (node token)."""

from django.urls import include, path

urlpatterns = [
    path("", include("marketplace.scenes.api_urls")),
    path("", include("marketplace.jobs.api_urls")),
    path("", include("marketplace.nodes.api_urls")),
    path("", include("marketplace.payments.api_urls")),
    path("", include("marketplace.disputes.api_urls")),
    path("", include("marketplace.verification.api_urls")),
    path("agent/", include("marketplace.dispatch.agent_urls")),
]
