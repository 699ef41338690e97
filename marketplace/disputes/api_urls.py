from django.urls import path

from marketplace.disputes import api

urlpatterns = [
    path("disputes/", api.DisputeListView.as_view(), name="api-disputes"),
    path("disputes/<int:dispute_id>/", api.DisputeDetailView.as_view(), name="api-dispute"),
    path("disputes/against-me/", api.DisputesAgainstView.as_view(), name="api-disputes-against"),
    path("disputes/review/", api.ReviewQueueView.as_view(), name="api-dispute-review"),
    path("disputes/<int:dispute_id>/decide/", api.DisputeDecideView.as_view(), name="api-dispute-decide"),
]
