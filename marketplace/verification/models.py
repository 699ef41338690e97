from django.db import models


class NodeTrust(models.Model):
    """BOINC-style adaptive replication state of one node (policy in verification.policy)."""

    node = models.OneToOneField("nodes.WorkerNode", on_delete=models.CASCADE, related_name="trust")
    consecutive_passes = models.IntegerField(default=0)
    checks_passed = models.IntegerField(default=0)
    checks_failed = models.IntegerField(default=0)
    check_rate = models.FloatField(default=1.0, help_text="probability that a frame of this node is checked")
    banned_at = models.DateTimeField(null=True, blank=True)
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
        BAN = "ban", "Banned"

    node = models.ForeignKey("nodes.WorkerNode", on_delete=models.CASCADE, related_name="trust_events")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    reason = models.TextField()
    frame = models.ForeignKey("jobs.Frame", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.kind} node {self.node_id}: {self.reason[:40]}"
