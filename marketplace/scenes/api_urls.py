from django.urls import path

from marketplace.scenes import api

urlpatterns = [
    path("scenes/", api.SceneListView.as_view(), name="api-scenes"),
    path("scenes/<int:scene_id>/", api.SceneDetailView.as_view(), name="api-scene"),
    path("scenes/files/missing/", api.SceneFilesMissingView.as_view(), name="api-scene-files-missing"),
    path("scenes/files/<str:sha256>/", api.SceneFilePutView.as_view(), name="api-scene-file"),
    path("scenes/bundle/", api.SceneBundleView.as_view(), name="api-scene-bundle"),
]
