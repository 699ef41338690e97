from django.urls import path

from marketplace.disputes import views

app_name = "disputes"
urlpatterns = [
    path("", views.my_disputes, name="mine"),
    path("new/<int:frame_id>/", views.dispute_new, name="new"),
    path("<int:dispute_id>/", views.dispute_detail, name="detail"),
    path("review/", views.review_queue, name="review"),
    path("review/<int:dispute_id>/", views.review_detail, name="review_detail"),
    path("review/<int:dispute_id>/decide/", views.review_decide, name="decide"),
    path("review/<int:dispute_id>/evidence/frame.png", views.evidence_frame, name="evidence_frame"),
    path("review/<int:dispute_id>/evidence/<int:crop_id>/<str:view>.png", views.evidence_crop, name="evidence_crop"),
]
