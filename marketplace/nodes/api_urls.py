from django.urls import path

from marketplace.nodes import api

urlpatterns = [
    path("nodes/", api.NodeListView.as_view(), name="api-nodes"),
    path("nodes/<int:node_id>/", api.NodeDetailView.as_view(), name="api-node"),
]
