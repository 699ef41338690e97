"""Wallet and top-ups for artists, earnings and payouts for providers (API token or session).

Thin over `payments.services`, `payments.payouts` and the selectors: every rule, and every refusal's wording,
is the services'. Their refusals carry their status (`marketplace.errors`) and become problem details in the API's
one handler.
"""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.ledger import selectors as ledger_selectors
from marketplace.ledger.models import Account
from marketplace.payments import conf, payouts, selectors, services
from marketplace.payments.models import Payout
from marketplace.payments.serializers import (
    EarningsSerializer,
    PayoutRequest,
    PayoutSerializer,
    TopUpSerializer,
    TopUpStartRequest,
    TopUpStartResponse,
    WalletSerializer,
)

Kind = Account.Kind


class IsArtist(BasePermission):
    message = "Wallets and top-ups are for artist accounts."

    def has_permission(self, request, view) -> bool:
        return request.user.is_artist


class IsProvider(BasePermission):
    message = "Earnings and payouts are for GPU provider accounts."

    def has_permission(self, request, view) -> bool:
        return request.user.is_provider


REFUSED = OpenApiResponse(description="Refused: `detail` says why; nothing moved.")
UNAVAILABLE = OpenApiResponse(description="The payment provider is not configured or not answering.")


class PaymentsView(APIView):
    """Wallets, top-ups, earnings and payouts of the signed-in user. Amounts must arrive as JSON numbers: the
    API's parser (settings) takes JSON only, never a form body."""


class ArtistView(PaymentsView):
    permission_classes = [IsAuthenticated, IsArtist]


class ProviderView(PaymentsView):
    permission_classes = [IsAuthenticated, IsProvider]


class WalletView(ArtistView):
    @extend_schema(
        responses=WalletSerializer,
        summary="Get your wallet (artists)",
        description="Spendable tokens, tokens held in escrow for accepted jobs, any debt left by a "
        "refunded or disputed card payment, and your recent top-ups.",
    )
    def get(self, request):
        user = request.user
        return Response(
            WalletSerializer(
                {
                    "wallet_micro": ledger_selectors.user_balances(user=user).get(Kind.ARTIST_WALLET, 0),
                    "escrow_micro": ledger_selectors.user_escrow_total(user=user),
                    "debt_micro": selectors.wallet_debt_micro(user=user),
                    "frozen": selectors.wallet_frozen(user=user),
                    "topups": selectors.topups_of(user=user),
                }
            ).data
        )


class TopUpListView(ArtistView):
    @extend_schema(
        request=TopUpStartRequest,
        summary="Buy tokens (artists)",
        description="Starts a top-up and returns the payment page to send the buyer to. Tokens are "
        "credited once the payment provider confirms the payment: poll the top-up.",
        responses={201: TopUpStartResponse, 400: REFUSED, 503: UNAVAILABLE},
    )
    def post(self, request):
        data = TopUpStartRequest(data=request.data)
        data.is_valid(raise_exception=True)
        topup, url = services.topup_start(user=request.user, amount_cents=data.validated_data["amount_cents"])
        # The simulated provider's page is a local path; Stripe's is absolute already.
        started = {"checkout_url": request.build_absolute_uri(url), "topup": topup}
        return Response(TopUpStartResponse(started).data, status=status.HTTP_201_CREATED)


class TopUpDetailView(ArtistView):
    @extend_schema(
        responses={200: TopUpSerializer, 404: OpenApiResponse(description="No such top-up of yours.")},
        summary="Get a top-up (artists)",
        description="One of your top-ups: poll its `state` after paying; `credited_micro` is what reached your wallet.",
    )
    def get(self, request, ref):
        return Response(TopUpSerializer(selectors.topup_of(user=request.user, ref=ref)).data)


class EarningsView(ProviderView):
    @extend_schema(
        responses=EarningsSerializer,
        summary="Get your earnings (providers)",
        description="Earnings still inside the dispute window (pending), earnings you can pay out "
        "(available), the frames your nodes were paid for recently, and your payouts.",
    )
    def get(self, request):
        user = request.user
        balances = ledger_selectors.user_balances(user=user)
        connect = selectors.connect_account_of(user=user)
        return Response(
            EarningsSerializer(
                {
                    "pending_micro": balances.get(Kind.PROVIDER_PENDING, 0),
                    "available_micro": balances.get(Kind.PROVIDER_AVAILABLE, 0),
                    "payout_min_micro": conf.payout_min_micro(),
                    "payouts_ready": connect is not None and connect.onboarded,
                    "frames": selectors.provider_frame_earnings(provider=user),
                    "payouts": selectors.payouts_of(user=user),
                }
            ).data
        )


class PayoutListView(ProviderView):
    @extend_schema(
        responses=PayoutSerializer(many=True),
        summary="List your payouts (providers)",
        description="Your payouts, newest first, with what the payment provider answered.",
    )
    def get(self, request):
        return Response(PayoutSerializer(selectors.payouts_of(user=request.user), many=True).data)

    @extend_schema(
        request=PayoutRequest,
        summary="Request a payout (providers)",
        description="Pays available tokens out to your payout account. 201 for a new payout, whose "
        "`state` says what the payment provider answered (`failed` gave the tokens back). "
        "Sending the same `request_key` again returns the first payout (200) and pays "
        "nothing twice. Refused requests (400) move nothing.",
        responses={200: PayoutSerializer, 201: PayoutSerializer, 400: REFUSED, 503: UNAVAILABLE},
    )
    def post(self, request):
        data = PayoutRequest(data=request.data)
        data.is_valid(raise_exception=True)
        request_key = data.validated_data["request_key"]
        # Only the status code rests on this read; payout_request decides, under its lock, whether the key is new.
        repeated = Payout.objects.filter(user=request.user, request_key=request_key).exists()
        payout = payouts.payout_request(
            user=request.user, amount_micro=data.validated_data["amount_micro"], request_key=request_key
        )
        code = status.HTTP_200_OK if repeated else status.HTTP_201_CREATED
        return Response(PayoutSerializer(payout).data, status=code)
