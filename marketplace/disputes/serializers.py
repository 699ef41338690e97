"""API shapes for disputes: what the artist sees, and what admins review. Amounts are integer micro-tokens."""

from rest_framework import serializers

from marketplace.disputes import conf
from marketplace.disputes.models import Dispute
from marketplace.money import TokensField


class DisputeSerializer(serializers.ModelSerializer):
    job = serializers.IntegerField(source="frame.job_id", read_only=True)
    frame_number = serializers.IntegerField(source="frame.number", read_only=True)
    amount_tokens = TokensField(source="amount_micro")

    class Meta:
        model = Dispute
        fields = [
            "id",
            "state",
            "frame",
            "job",
            "frame_number",
            "reason",
            "amount_micro",
            "amount_tokens",
            "frame_settled_at",
            "created_at",
            "decided_at",
            "decision_note",
        ]
        read_only_fields = fields


class DisputeReviewSerializer(serializers.ModelSerializer):
    """For admins: the dispute as its artist sees it, and who is involved."""

    dispute = DisputeSerializer(source="*", read_only=True)
    artist = serializers.CharField(source="artist.username", read_only=True)
    provider = serializers.CharField(source="provider.username", read_only=True)
    node = serializers.CharField(source="node.name", default=None, allow_null=True, read_only=True)
    decided_by = serializers.CharField(source="decided_by.username", default=None, allow_null=True, read_only=True)

    class Meta:
        model = Dispute
        fields = ["dispute", "artist", "provider", "node", "result_key", "decided_by"]
        read_only_fields = fields


class DisputeOpenRequest(serializers.Serializer):
    frame_id = serializers.IntegerField()
    reason = serializers.CharField(
        min_length=conf.REASON_MIN_CHARS, max_length=conf.REASON_MAX_CHARS, help_text="what is wrong with the frame"
    )


class DisputeDecideRequest(serializers.Serializer):
    decision = serializers.ChoiceField(choices=[Dispute.State.UPHELD, Dispute.State.REJECTED])
    note = serializers.CharField(max_length=conf.NOTE_MAX_CHARS, help_text="shown to the artist")
