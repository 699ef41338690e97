from django.urls import path

from marketplace.jobs import api

urlpatterns = [
    path("jobs/", api.JobListView.as_view(), name="api-jobs"),
    path("jobs/<int:job_id>/", api.JobDetailView.as_view(), name="api-job"),
    path("jobs/<int:job_id>/accept/", api.JobAcceptView.as_view(), name="api-job-accept"),
    path("jobs/<int:job_id>/cancel/", api.JobCancelView.as_view(), name="api-job-cancel"),
    path("jobs/<int:job_id>/retry-failed/", api.JobRetryFailedView.as_view(), name="api-job-retry-failed"),
    path(
        "jobs/<int:job_id>/allow-refused-nodes/",
        api.JobAllowRefusedNodesView.as_view(),
        name="api-job-allow-refused-nodes",
    ),
    path("jobs/<int:job_id>/download/", api.JobDownloadView.as_view(), name="api-job-download"),
]
