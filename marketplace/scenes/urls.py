from django.urls import path

from marketplace.scenes import views

app_name = "scenes"
urlpatterns = [
    path("", views.scene_list, name="list"),
    path("upload/", views.scene_upload, name="upload"),
    path("<int:scene_id>/", views.scene_detail, name="detail"),
    path("<int:scene_id>/inspection/", views.scene_fragment, name="fragment"),
    path("<int:scene_id>/delete/", views.scene_delete, name="delete"),
]
