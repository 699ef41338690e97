"""API shapes for wallets, top-ups, earnings and payouts. Amounts are integers (micro-tokens or cents); each
micro-token amount also comes as an exact decimal string of tokens in the matching `*_tokens` field."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from marketplace.money import TokensField
from marketplace.payments.models import Payout, TopUp


@extend_schema_field(OpenApiTypes.INT)
class AmountAsSentField(serializers.Field):
    """The amount exactly as sent. DRF's IntegerField would turn "12", 12.0 and true into 12; here the
    service's own check refuses anything but a whole JSON number in range, with the words the web pages use."""

    def to_internal_value(self, data: object) -> object:
        return data

    def to_representation(self, value: int) -> int:
        return value


class TopUpSerializer(serializers.ModelSerializer):
    dispute_status = serializers.ChoiceField(
        choices=TopUp.DisputeStatus.choices,
        allow_blank=True,
        read_only=True,
        help_text="the furthest card-dispute status the payment provider reported; empty: never disputed",
    )
    tokens = TokensField(source="tokens_micro")
    credited_tokens = TokensField(source="credited_micro")
    clawed_back_tokens = TokensField(source="clawed_back_micro")
    unrecovered_tokens = TokensField(source="unrecovered_micro")

    class Meta:
        model = TopUp
        fields = [
            "ref",
            "state",
            "amount_cents",
            "currency",
            "tokens_micro",
            "tokens",
            "credited_micro",
            "credited_tokens",
            "refunded_cents",
            "disputed_cents",
            "dispute_status",
            "reversed_cents",
            "clawed_back_micro",
            "clawed_back_tokens",
            "unrecovered_micro",
            "unrecovered_tokens",
            "provider",
            "created_at",
            "completed_at",
        ]
        read_only_fields = fields


class TopUpStartRequest(serializers.Serializer):
    amount_cents = AmountAsSentField(help_text="whole cents of the fiat currency, within the top-up limits")


class TopUpStartResponse(serializers.Serializer):
    checkout_url = serializers.URLField(help_text="send the buyer here to pay")
    topup = TopUpSerializer(help_text="poll /api/v1/topups/{ref}/ for its state after paying")


class WalletSerializer(serializers.Serializer):
    wallet_micro = serializers.IntegerField(help_text="spendable tokens")
    escrow_micro = serializers.IntegerField(help_text="tokens held for accepted jobs")
    debt_micro = serializers.IntegerField(
        help_text="tokens a refund or card dispute took back that the wallet no longer held"
    )
    wallet_tokens = TokensField(source="wallet_micro")
    escrow_tokens = TokensField(source="escrow_micro")
    debt_tokens = TokensField(source="debt_micro")
    frozen = serializers.BooleanField(help_text="true while there is a debt: no new work until an admin settles it")
    topups = TopUpSerializer(many=True)


class FrameEarningSerializer(serializers.Serializer):
    frame = serializers.IntegerField(source="frame.pk")
    job = serializers.IntegerField(source="frame.job_id")
    frame_number = serializers.IntegerField(source="frame.number")
    settled_at = serializers.DateTimeField(source="frame.settled_at")
    share_micro = serializers.IntegerField(help_text="what the settlement paid into pending (price minus the fee)")
    share_tokens = TokensField(source="share_micro")
    matures_at = serializers.DateTimeField(help_text="end of the dispute window: the share becomes available")
    matured = serializers.BooleanField()
    disputed = serializers.BooleanField(help_text="an open dispute freezes the share until an admin decides")


class PayoutSerializer(serializers.ModelSerializer):
    amount_tokens = TokensField(source="amount_micro")

    class Meta:
        model = Payout
        fields = [
            "id",
            "state",
            "amount_micro",
            "amount_tokens",
            "amount_cents",
            "currency",
            "request_key",
            "transfer_id",
            "error",
            "created_at",
            "sent_at",
            "returned_at",
        ]
        read_only_fields = fields


class EarningsSerializer(serializers.Serializer):
    pending_micro = serializers.IntegerField(help_text="settled frames still inside the dispute window")
    available_micro = serializers.IntegerField(help_text="can be paid out now")
    payout_min_micro = serializers.IntegerField(help_text="the smallest payout")
    pending_tokens = TokensField(source="pending_micro")
    available_tokens = TokensField(source="available_micro")
    payout_min_tokens = TokensField(source="payout_min_micro")
    payouts_ready = serializers.BooleanField(help_text="payout onboarding (Stripe Connect) is finished")
    frames = FrameEarningSerializer(many=True)
    payouts = PayoutSerializer(many=True)


class PayoutRequest(serializers.Serializer):
    amount_micro = AmountAsSentField(help_text="whole cents' worth of micro-tokens, at least the payout minimum")
    request_key = serializers.CharField(
        min_length=8,
        max_length=64,
        help_text="the client's key for this request: sending it again returns the same payout and pays nothing twice",
    )
