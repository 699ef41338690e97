from django.urls import path

from marketplace.jobs import views

app_name = "jobs"
urlpatterns = [
    path("", views.job_list, name="list"),
    path("new/", views.job_new, name="new"),
    path("<int:job_id>/", views.job_detail, name="detail"),
    path("<int:job_id>/live/", views.job_fragment, name="fragment"),
    path("<int:job_id>/accept/", views.job_accept, name="accept"),
    path("<int:job_id>/cancel/", views.job_cancel, name="cancel"),
    path("<int:job_id>/allow-refused-nodes/", views.job_allow_refused_nodes, name="allow_refused_nodes"),
    path("<int:job_id>/retry-failed/", views.job_retry_failed, name="retry_failed"),
    path("<int:job_id>/download.zip", views.job_download, name="download"),
    path("<int:job_id>/frames/<int:frame_id>/thumb.png", views.frame_thumb, name="thumb"),
    path("<int:job_id>/frames/<int:frame_id>/image.png", views.frame_image, name="image"),
    path("<int:job_id>/stills/<int:number>/thumb.png", views.still_thumb, name="still_thumb"),
]
