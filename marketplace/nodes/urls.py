from django.urls import path

from marketplace.nodes import views

app_name = "nodes"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("new/", views.node_create, name="create"),
    path("<int:node_id>/pause/", views.node_pause, name="pause"),
]
