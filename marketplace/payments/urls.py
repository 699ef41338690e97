from django.urls import path

from marketplace.payments import views

app_name = "payments"
urlpatterns = [
    path("wallet/", views.wallet, name="wallet"),
    path("topup/", views.topup_create, name="topup"),
    path("topup/<uuid:ref>/", views.topup_return, name="topup_return"),
    path("dev/checkout/<uuid:ref>/", views.dev_checkout, name="dev_checkout"),
    path("stripe/webhook/", views.stripe_webhook, name="stripe_webhook"),
    path("earnings/", views.earnings, name="earnings"),
    path("payouts/", views.payout_create, name="payout"),
    path("connect/onboard/", views.connect_onboard, name="connect_onboard"),
    path("connect/return/", views.connect_return, name="connect_return"),
]
