from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from marketplace.jobs import conf
from marketplace.jobs.states import FrameState, JobState
from marketplace.jobs.tiles import Rect


class Job(models.Model):
    class Output(models.TextChoices):
        PNG = "PNG", "PNG (8-bit)"
        EXR = "OPEN_EXR", "OpenEXR (float)"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="jobs")
    scene = models.ForeignKey("scenes.Scene", on_delete=models.PROTECT, related_name="jobs")
    name = models.CharField(max_length=200)
    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.QUOTED, db_index=True)
    frame_start = models.IntegerField()
    frame_end = models.IntegerField()
    frame_step = models.IntegerField(default=1)
    resolution_x = models.IntegerField()
    resolution_y = models.IntegerField()
    samples = models.IntegerField()
    seed = models.IntegerField(default=0)
    use_denoising = models.BooleanField(default=False)
    output_format = models.CharField(max_length=10, choices=Output.choices, default=Output.PNG)
    # Pinned at quote from the scene's inspection: only nodes with this series' runtime render or verify it.
    blender_series = models.CharField(max_length=10, default="5.0")
    priority = models.IntegerField(default=0, help_text="higher renders first")
    max_price_per_frame = models.BigIntegerField(null=True, blank=True, help_text="micro-tokens")
    price_per_frame = models.BigIntegerField(help_text="quoted, micro-tokens")
    quote = models.JSONField(default=dict, blank=True)
    is_canary = models.BooleanField(default=False, help_text="a job with known answers, run by the platform")
    tile_side = models.PositiveSmallIntegerField(
        default=1, help_text="a still split into tile_side x tile_side tiles, rendered separately; 1: not split"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Leftover refunds made so far; keys the next one (an upheld dispute can reopen a DONE job).
    finish_count = models.IntegerField(default=0)
    # Retries of failed frames asked by the artist; keys the escrow hold of the next one.
    retries = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(frame_end__gte=models.F("frame_start")), name="job_frame_range"),
            models.CheckConstraint(condition=Q(frame_step__gte=1), name="job_frame_step"),
            models.CheckConstraint(condition=Q(price_per_frame__gte=0), name="job_price_nonnegative"),
            models.CheckConstraint(condition=Q(tile_side__gte=1), name="job_tile_side_positive"),
            # Tiles are for one frame (end - start < step), and a denoiser needs the whole image (tiles would show
            # seams).
            models.CheckConstraint(
                condition=Q(tile_side=1)
                | Q(frame_end__lt=models.F("frame_start") + models.F("frame_step"), use_denoising=False),
                name="job_tiles_only_for_an_undenoised_still",
            ),
        ]

    def __str__(self) -> str:
        return f"job {self.pk}: {self.name}"

    @property
    def quote_expires_at(self) -> datetime:
        """Until when the quote can be accepted (`QUOTE_VALID_HOURS` after it was made)."""
        return self.created_at + timedelta(hours=conf.QUOTE_VALID_HOURS)

    @property
    def quote_expired(self) -> bool:
        return self.state == JobState.QUOTED and timezone.now() > self.quote_expires_at

    @property
    def escrow_ref(self) -> str:
        return self.escrow_ref_of(self.pk)

    @staticmethod
    def escrow_ref_of(job_id: int) -> str:
        """`escrow_ref` of the job with this id, for a caller holding its id alone."""
        return f"job:{job_id}"

    @property
    def frame_numbers(self) -> list[int]:
        return list(range(self.frame_start, self.frame_end + 1, self.frame_step))

    @property
    def tile_count(self) -> int:
        return self.tile_side**2


class Frame(models.Model):
    # No index of its own: `frame_unique_in_job` leads with the job. Each frame's row is written three times or more
    # on its way (leased, rendered, settled), each time an entry in every index of the table: an index the others
    # cover is paid for on every one of those writes (issue 17).
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="frames", db_index=False)
    number = models.IntegerField()
    # Optional tile of a still: pixels, y from the top.
    tile_x = models.IntegerField(null=True, blank=True)
    tile_y = models.IntegerField(null=True, blank=True)
    tile_w = models.IntegerField(null=True, blank=True)
    tile_h = models.IntegerField(null=True, blank=True)
    # No index of its own: (state, job) leads with it.
    state = models.CharField(max_length=16, choices=FrameState.choices, default=FrameState.QUEUED)
    price = models.BigIntegerField(help_text="micro-tokens")
    attempts = models.IntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    node = models.ForeignKey(
        "nodes.WorkerNode",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="frames",
        help_text="the node whose result was accepted",
    )
    result_key = models.CharField(max_length=300, blank=True, default="")
    result_sha256 = models.CharField(max_length=64, blank=True, default="")
    thumbnail_key = models.CharField(max_length=300, blank=True, default="")
    render_seconds = models.FloatField(null=True, blank=True)
    rendered_at = models.DateTimeField(null=True, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    # How often the frame was paid (an upheld dispute re-renders a paid frame); keys each settlement.
    settle_count = models.IntegerField(default=0)
    # When its provider's pay left the dispute window (payments.earnings), or was found to be nothing to release.
    # A settled frame without it is still owed a maturation: the partial index below reads only those.
    pay_matured_at = models.DateTimeField(null=True, blank=True)
    # When the artist last sent the failed frame back: failures before it no longer count toward failing it.
    retried_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "number", "tile_x", "tile_y"], name="frame_unique_in_job"),
            models.CheckConstraint(condition=Q(price__gte=0), name="frame_price_nonnegative"),
            models.CheckConstraint(
                condition=Q(tile_x__isnull=True, tile_y__isnull=True, tile_w__isnull=True, tile_h__isnull=True)
                | Q(tile_x__gte=0, tile_y__gte=0, tile_w__gte=1, tile_h__gte=1),
                name="frame_tile_whole_or_none",
            ),
        ]
        indexes = [
            models.Index(fields=["state", "job"]),
            # The matcher reads each job's first queued frames in number order (dispatch.batch._pool_sql).
            models.Index(fields=["job", "number"], condition=Q(state="queued"), name="frame_queued_by_job_number"),
            # The assembly sweep looks for recently settled tiles.
            models.Index(fields=["settled_at"], condition=Q(tile_x__isnull=False), name="frame_tile_settled_at"),
            # Maturation reads the settled frames whose pay is still pending, oldest first, however long the
            # history. No state in the condition: a prepared statement's generic plan could not prove `state = $1`
            # implies it; `settled_at <= $1` does imply `settled_at IS NOT NULL`.
            models.Index(
                fields=["settled_at", "id"],
                condition=Q(settled_at__isnull=False, pay_matured_at__isnull=True, node__isnull=False),
                name="frame_pay_pending",
            ),
        ]

    def __str__(self) -> str:
        return f"frame {self.number} of job {self.job_id}"

    @property
    def tile_rect(self) -> Rect | None:
        """The tile's (x, y, width, height), None for a whole frame (frame_tile_whole_or_none: all four or none)."""
        if self.tile_x is None or self.tile_y is None or self.tile_w is None or self.tile_h is None:
            return None
        return (self.tile_x, self.tile_y, self.tile_w, self.tile_h)

    @property
    def settlement_key(self) -> str:
        """Ledger key of the frame's latest settlement: settle:frame:<id>, then settle:frame:<id>:<n> for the
        n-th payment of a frame re-rendered after an upheld dispute."""
        return self.settlement_key_of(self.pk, self.settle_count)

    @staticmethod
    def settlement_key_of(frame_id: int, settle_count: int) -> str:
        """`settlement_key` of the frame with this id and settle count, for a caller holding those alone."""
        return f"settle:frame:{frame_id}" + (f":{settle_count}" if settle_count > 1 else "")


class LeasedCount(models.Model):
    """How many of an artist's frames are leased (rendering now), which the matcher ranks artists by
    (`dispatch.batch`): kept so that a round reads a few rows per artist instead of every leased frame, a number
    that grows with the busy nodes (bench_pool).

    On Postgres a trigger on the frame table keeps it (migration 0008), so every write of a frame's state counts,
    whichever code or statement makes it. The count is spread over up to 16 rows per artist: each
    database connection adds to its own slot, so concurrent leases of one artist's frames do not queue on one
    row until they commit. An artist's count is the sum of its slots; one slot alone may be negative (a frame
    leased by one connection, reported through another). SQLite (`make run`'s database) keeps none: there the
    matcher counts the leased frames. `selectors.leased_count_drift` compares the two.
    """

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )  # no constraint: the trigger may add to an artist's rows while a cascade deletes them; the unique index leads
    slot = models.SmallIntegerField()
    frames = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "slot"], name="leased_count_one_row_per_slot")]

    def __str__(self) -> str:
        return f"{self.frames} leased frames of artist {self.owner_id} (slot {self.slot})"


class AssembledFrame(models.Model):
    """A tiled still stitched whole from its settled tiles: what the artist downloads and sees.

    `tile_keys` are the result keys of the tiles it was stitched from, row-major from the top-left; it is current
    while every tile is still settled with that result (a tile re-rendered after an upheld dispute gets a new key,
    and the frame is assembled again when it settles).
    """

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="assembled_frames")
    number = models.IntegerField()
    result_key = models.CharField(max_length=300)
    result_sha256 = models.CharField(max_length=64)
    thumbnail_key = models.CharField(max_length=300)
    tile_keys = models.JSONField(default=list)
    assembled_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "number"], name="assembled_frame_unique_in_job")]

    def __str__(self) -> str:
        return f"assembled frame {self.number} of job {self.job_id}"
