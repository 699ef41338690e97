from django.db import models
from django.db.models import Q


class NodeTrust(models.Model):
    """BOINC-style adaptive replication state of one node (policy in verification.policy)."""

    node = models.OneToOneField("nodes.WorkerNode", on_delete=models.CASCADE, related_name="trust")
    consecutive_passes = models.IntegerField(default=0)
    checks_passed = models.IntegerField(default=0)
    checks_failed = models.IntegerField(default=0)
    check_rate = models.FloatField(default=1.0, help_text="probability that a frame of this node is checked")
    # When check_rate last went up (a failed check, an abandoned lease): a lease granted before then was drawn
    # at the lower rate, so its result is drawn again at the report (`services.result_sampled`).
    raised_at = models.DateTimeField(null=True, blank=True)
    # The canary this node is handed when its canary draw hits, chosen ahead (`services.canary_offers_renew`):
    # matching reads it with the node in every call, so the call that hands a canary out runs the same statements
    # as any other and a node timing its calls cannot tell canaries apart.
    canary = models.ForeignKey("jobs.Frame", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The canary row's `updated_at` when it was offered: once anyone has leased it since (any write to the row), the
    # offer is void until it is renewed (its provider may have seen the scene), with no statement to find that out.
    # A value copied from the row, not a clock: hosts' clocks may differ.
    canary_updated_at = models.DateTimeField(null=True, blank=True)
    # No ban here: failed checks ban the provider's account (policy); nodes.selectors.node_banned_q reads bans.
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"trust of node {self.node_id}: {self.consecutive_passes} passes, rate {self.check_rate:.2f}"


class TrustEvent(models.Model):
    """Why a node's trust changed; shown to its provider and to admins."""

    class Kind(models.TextChoices):
        PASS = "pass", "Check passed"
        FAIL = "fail", "Check failed"
        CANARY_FAIL = "canary_fail", "Canary failed"
        DISPUTE_UPHELD = "dispute_upheld", "Dispute upheld"
        ABANDONED = "abandoned", "Lease expired or released"
        BAN = "ban", "Banned"

    node = models.ForeignKey("nodes.WorkerNode", on_delete=models.CASCADE, related_name="trust_events")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    reason = models.TextField()
    frame = models.ForeignKey("jobs.Frame", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.kind} node {self.node_id}: {self.reason[:40]}"


class FrameCheck(models.Model):
    """The verification decision about one committed result: the frame as one render lease delivered it.

    One per render lease (a re-render after a failed check gets a new one). `skipped` records that the
    node's sampling rate decided not to check this result, which is why it was paid unchecked.
    """

    class Kind(models.TextChoices):
        CROPS = "crops", "Random crops re-rendered"
        CANARY = "canary", "Canary with a known answer"
        SKIPPED = "skipped", "Not sampled"

    class State(models.TextChoices):
        PENDING = "pending", "Verifying"
        PASSED = "passed", "Verified"
        FAILED = "failed", "Failed verification"
        SKIPPED = "skipped", "Not sampled for checking"

    frame = models.ForeignKey("jobs.Frame", on_delete=models.CASCADE, related_name="checks")
    render_lease = models.OneToOneField(
        "dispatch.FrameLease", on_delete=models.CASCADE, related_name="verification_check"
    )
    node = models.ForeignKey("nodes.WorkerNode", on_delete=models.CASCADE, related_name="frame_checks")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING, db_index=True)
    check_rate = models.FloatField(help_text="the node's check rate when the frame was sampled")
    reason = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # skipped checks, and only they, are in the skipped state
            models.CheckConstraint(
                name="check_skipped_kind",
                condition=Q(kind="skipped", state="skipped") | (~Q(kind="skipped") & ~Q(state="skipped")),
            ),
            models.CheckConstraint(condition=Q(state="pending") | Q(decided_at__isnull=False), name="check_decided_at"),
        ]
        indexes = [models.Index(fields=["frame", "-id"])]

    def __str__(self) -> str:
        return f"{self.kind} check of frame {self.frame_id} ({self.state})"


class CropCheck(models.Model):
    """One region of a checked result, re-rendered by a verifier and compared with the candidate."""

    class State(models.TextChoices):
        PENDING = "pending", "Waiting for the re-render"
        PASSED = "passed", "Matches"
        FAILED = "failed", "Differs"

    class Verifier(models.TextChoices):
        NODE = "node", "Another provider's node"
        PLATFORM = "platform", "The platform"

    frame_check = models.ForeignKey(FrameCheck, on_delete=models.CASCADE, related_name="crops")
    crop = models.JSONField(help_text="x, y, w, h in pixels, y from the top")
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING, db_index=True)
    verifier = models.CharField(max_length=8, choices=Verifier.choices, default=Verifier.PLATFORM)
    verify_lease = models.OneToOneField(
        "dispatch.FrameLease", null=True, blank=True, on_delete=models.SET_NULL, related_name="crop_check"
    )
    reference_key = models.CharField(
        max_length=300, blank=True, default="", help_text="the trusted image the candidate was compared with"
    )
    metrics = models.JSONField(default=dict, blank=True)
    reason = models.TextField(blank=True, default="")
    dispatched_at = models.DateTimeField(null=True, blank=True, help_text="when a verifier was asked")
    # A node's crop that disagreed with the candidate is kept here while the platform breaks the tie.
    node_verdict = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"crop {self.crop} of check {self.frame_check_id} ({self.state})"


class CanaryAnswer(models.Model):
    """The known answer of a canary frame, rendered once by the platform with the frame's pinned manifest."""

    frame = models.OneToOneField("jobs.Frame", on_delete=models.CASCADE, related_name="canary_answer")
    answer_key = models.CharField(max_length=300)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"canary answer of frame {self.frame_id}"


class LeaseSample(models.Model):
    """A render lease whose result was sampled for a check when it was granted (`services.lease_sampled`): the
    crops chosen then, and the platform's reference renders of them, made while the node renders the frame
    (`services.references_render`) so that the check can be decided when the result arrives."""

    render_lease = models.OneToOneField(
        "dispatch.FrameLease", on_delete=models.CASCADE, primary_key=True, related_name="sample"
    )
    crops = models.JSONField(help_text="the crops to compare, chosen at the lease, as CropCheck.crop")
    # The platform's frozen render of each crop, in the order of `crops` ("" while not rendered).
    references = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        done = sum(bool(key) for key in self.references)
        return f"sample of lease {self.render_lease_id}: {done}/{len(self.crops)} references"
