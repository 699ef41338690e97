from django.urls import path

from marketplace.verification import views

app_name = "verification"
urlpatterns = [
    path("nodes/<int:node_id>/", views.node_verification, name="node"),
]
