from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from marketplace.ledger.views import ledger_page
from marketplace.ops import views as ops_views
from marketplace.web.blob_views import blob
from marketplace.web.views import home

urlpatterns = [
    path("", home, name="home"),
    path("accounts/", include("marketplace.accounts.urls")),
    path("ledger/", ledger_page, name="ledger"),
    path("admin/", admin.site.urls),
    path("blobs/<str:token>", blob, name="blob"),
    path("scenes/", include("marketplace.scenes.urls")),
    path("jobs/", include("marketplace.jobs.urls")),
    path("nodes/", include("marketplace.nodes.urls")),
    path("payments/", include("marketplace.payments.urls")),
    path("disputes/", include("marketplace.disputes.urls")),
    path("verification/", include("marketplace.verification.urls")),
    path("api/v1/", include("marketplace.api.urls")),
    path("ops/", include("marketplace.ops.urls")),
    path("metrics", ops_views.metrics, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path(
        "api/redoc/",
        SpectacularRedocView.as_view(url_name="api-schema", template_name="web/redoc.html"),
        name="api-redoc",
    ),
]

# API paths answer problem details (RFC 9457) even when no route matches or the server fails.
handler404 = "marketplace.api.errors.not_found"
handler500 = "marketplace.api.errors.server_error"
