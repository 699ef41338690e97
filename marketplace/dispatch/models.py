from django.db import models
from django.db.models import Q


class FrameLease(models.Model):
    """The database's record of who may work on a frame until when. A queue message only delivers it.

    A render lease covers a whole frame; a verify lease asks another node to re-render a crop of a frame
    whose result was already committed (see verification).
    """

    class Kind(models.TextChoices):
        RENDER = "render", "Render"
        VERIFY = "verify", "Verify crop"

    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        DONE = "done", "Reported"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired"
        RELEASED = "released", "Released"
        REVOKED = "revoked", "Revoked"

    frame = models.ForeignKey("jobs.Frame", on_delete=models.CASCADE, related_name="leases")
    node = models.ForeignKey("nodes.WorkerNode", on_delete=models.CASCADE, related_name="leases")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.RENDER)
    token_hash = models.CharField(max_length=64)
    # No index of its own: every read by state is of one node's, frame's or job's leases, or of the active ones
    # (the partial indexes below). Postgres took one on the state alone, whenever its statistics said few leases
    # were active (taken on an idle farm), for reads by lease id or node, then read every active lease per lookup.
    state = models.CharField(max_length=10, choices=State.choices, default=State.ACTIVE)
    # crop for verify leases: pixels, y from the top
    crop = models.JSONField(null=True, blank=True)
    manifest = models.JSONField(default=dict, help_text="pinned render settings sent to the agent")
    # Where the agent uploads while the lease is active; from the report on, the frozen copy
    # (`results/sha256/<sha256>.<ext>`, written by the server only, checked against that digest on every read).
    result_key = models.CharField(max_length=300, blank=True, default="")
    # Where the agent uploads, kept after the report: an upload URL can write until it expires, so whatever is there
    # then is deleted once it has (`services.lease_uploads_clear`). "" for leases made before it was kept.
    upload_key = models.CharField(max_length=300, blank=True, default="")
    # A denoised frame's pre-denoise pass, frozen the same way at the report ("" when there is none).
    noisy_key = models.CharField(max_length=300, blank=True, default="")
    stats = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    # Verification's secret draw when a render lease is granted (`hooks.lease_sampled`): True, its result will be
    # checked; False, it will not; None, no draw was made then (verify leases, canaries, draws switched off).
    # Never sent to the node: it must not know which of its frames are checked.
    sampled = models.BooleanField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Not indexed: heartbeats move it on while the lease is active, and an index on it made each of those writes an
    # entry in every index of the table. The reaper reads the overdue ones among the active leases
    # (`lease_active_by_node`), a few per node, not a range over every lease the market ever made.
    expires_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # "Does this node hold an active lease?" is asked for every node in every matching round and status
            # sync; without it the planner, misjudging a table that grew fast, scanned every active lease per node.
            models.Index(fields=["node"], condition=Q(state="active"), name="lease_active_by_node"),
            # The leases a node gave back or let expire, which keep it off a job (`batch._kept_off_pairs`, every
            # next lease): by node alone, that read went through all the leases the node ever held.
            models.Index(
                fields=["node"], condition=Q(state__in=["expired", "released"]), name="lease_abandoned_by_node"
            ),
            # The active leases drawn for a check, whose crops verification chooses after the call that granted them
            # (`verification.services.samples_prepare`): a few, out of every active lease.
            models.Index(fields=["id"], condition=Q(state="active", sampled=True), name="lease_active_sampled"),
            # The ended leases in the order their uploads are deleted (`services.lease_uploads_clear`), from where the
            # last run stopped: a range of this index, not a scan of every lease the market ever made.
            models.Index(fields=["finished_at", "id"], condition=~Q(state="active"), name="lease_ended_in_order"),
        ]
        constraints = [
            # At most one active render lease per frame, whatever the number of matchers.
            models.UniqueConstraint(
                fields=["frame"], condition=Q(state="active", kind="render"), name="lease_one_active_render_per_frame"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} lease {self.pk} of frame {self.frame_id} on node {self.node_id}"


class UploadsClearedTo(models.Model):
    """How far `services.lease_uploads_clear` has deleted the uploads of ended leases: those of every lease that
    ended before (`finished_at`, `lease_id`), in that order. One row, which a run holds locked. A cursor rather than
    a mark on each lease: marking a lease would write its row (and every index of the table) once more."""

    finished_at = models.DateTimeField(null=True, blank=True)
    lease_id = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"uploads cleared to lease {self.lease_id} ({self.finished_at})"


class JobNodeBlock(models.Model):
    """Failures of one node on one job; at 3 the node no longer gets that job's frames."""

    job = models.ForeignKey("jobs.Job", on_delete=models.CASCADE, related_name="node_blocks")
    node = models.ForeignKey("nodes.WorkerNode", on_delete=models.CASCADE, related_name="job_blocks")
    failures = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "node"], name="job_node_block_unique")]

    def __str__(self) -> str:
        return f"node {self.node_id} failed job {self.job_id} {self.failures}x"
