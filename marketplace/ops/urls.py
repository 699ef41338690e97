from django.urls import path

from marketplace.ops import views

app_name = "ops"
urlpatterns = [path("farm/", views.farm, name="farm")]
