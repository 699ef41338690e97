from django.urls import path

from marketplace.scenes import api

urlpatterns = [
    path("scenes/", api.SceneListView.as_view(), name="api-scenes"),
    path("scenes/<int:scene_id>/", api.SceneDetailView.as_view(), name="api-scene"),
]
