from django.conf import settings
from django.db import models
from django.db.models import Q


class Dispute(models.Model):
    """An artist's claim that a settled frame is wrong. While open, the frame's pay cannot mature.

    What was disputed is copied when the dispute opens (result, node, provider, price, settlement time):
    an upheld dispute sends the frame back to be rendered again, which replaces those fields on the frame.
    """

    class State(models.TextChoices):
        OPEN = "open", "Open"
        UPHELD = "upheld", "Upheld"
        REJECTED = "rejected", "Rejected"

    frame = models.ForeignKey("jobs.Frame", on_delete=models.PROTECT, related_name="disputes")
    artist = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="disputes")
    reason = models.TextField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.OPEN, db_index=True)
    # the disputed settlement
    frame_settled_at = models.DateTimeField()
    node = models.ForeignKey("nodes.WorkerNode", null=True, on_delete=models.SET_NULL, related_name="disputes")
    provider = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="disputes_against")
    amount_micro = models.BigIntegerField(help_text="the frame's price when it settled")
    result_key = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.TextField(blank=True, default="")

    class Meta:
        constraints = [
            # One dispute per settlement: a rejected claim cannot be re-opened to freeze the pay again.
            models.UniqueConstraint(fields=["frame", "frame_settled_at"], name="dispute_one_per_settlement"),
            models.CheckConstraint(
                condition=Q(state="open", decided_at=None)
                | (~Q(state="open") & Q(decided_at__isnull=False, decided_by__isnull=False)),
                name="dispute_decided_fields",
            ),
            models.CheckConstraint(condition=Q(amount_micro__gte=0), name="dispute_amount_nonnegative"),
        ]
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"dispute {self.pk} of frame {self.frame_id} ({self.state})"


class AuditLog(models.Model):
    """Who did what to which object, append-only by convention (no service updates or deletes it)."""

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    details = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["object_type", "object_id"])]
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_id} {self.action} {self.object_type}:{self.object_id}"
