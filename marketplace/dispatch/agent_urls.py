from django.urls import path

from marketplace.dispatch import agent_api

urlpatterns = [
    path("hello/", agent_api.HelloView.as_view(), name="agent-hello"),
    path("heartbeat/", agent_api.HeartbeatView.as_view(), name="agent-heartbeat"),
    path("goodbye/", agent_api.GoodbyeView.as_view(), name="agent-goodbye"),
    path("bench/", agent_api.BenchView.as_view(), name="agent-bench"),
    path("leases/<int:lease_id>/", agent_api.LeaseView.as_view(), name="agent-lease"),
    path("leases/<int:lease_id>/report/", agent_api.ReportView.as_view(), name="agent-report"),
    path("leases/<int:lease_id>/next/", agent_api.NextView.as_view(), name="agent-next"),
    path("leases/<int:lease_id>/release/", agent_api.ReleaseView.as_view(), name="agent-release"),
]
