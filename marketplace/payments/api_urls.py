from django.urls import path

from marketplace.payments import api

urlpatterns = [
    path("wallet/", api.WalletView.as_view(), name="api-wallet"),
    path("topups/", api.TopUpListView.as_view(), name="api-topups"),
    path("topups/<uuid:ref>/", api.TopUpDetailView.as_view(), name="api-topup"),
    path("earnings/", api.EarningsView.as_view(), name="api-earnings"),
    path("payouts/", api.PayoutListView.as_view(), name="api-payouts"),
]
