from django.conf import settings
from django.db import models


class WorkerNode(models.Model):
    """A GPU owner's machine running the agent. Authenticates with a node token (only its hash is stored)."""

    class Status(models.TextChoices):
        IDLE = "idle", "Idle"
        BUSY = "busy", "Busy"
        PAUSED = "paused", "Paused"
        OFFLINE = "offline", "Offline"
        BANNED = "banned", "Banned"

    class AgentState(models.TextChoices):
        """What the agent last said about itself (hello, heartbeat, goodbye)."""

        ONLINE = "online", "Online"
        PAUSED = "paused", "Paused by its own schedule"
        OFFLINE = "offline", "Not running (no hello yet, or said goodbye)"

    class PauseMode(models.TextChoices):
        FINISH = "finish", "Finish the current frame, then pause"
        RELEASE = "release", "Give the current frame back now"

    class Device(models.TextChoices):
        CPU = "CPU", "CPU"
        CUDA = "CUDA", "CUDA"
        OPTIX = "OPTIX", "OptiX"
        HIP = "HIP", "HIP"
        ONEAPI = "ONEAPI", "oneAPI"

    class Sandbox(models.TextChoices):
        """What the agent said at hello about its scene sandbox (the Landlock filesystem allow-list)."""

        UNKNOWN = "unknown", "Not reported"
        ENFORCED = "enforced", "Enforced"
        UNSANDBOXED = "unsandboxed", "Off (owner's --allow-unsandboxed)"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="nodes")
    name = models.CharField(max_length=100)
    # Unique through Meta's constraint: `unique=True` would also build a LIKE index (varchar_pattern_ops) that no
    # lookup uses and every write of a row pays for.
    token_prefix = models.CharField(max_length=12)
    token_hash = models.CharField(max_length=64)
    # Derived, never set directly: `nodes.services.node_status_sync` recomputes status and current_frame from
    # the facts below (active leases, last heartbeat, the owner's pause, bans, the agent's own state).
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OFFLINE)
    paused_by_owner = models.BooleanField(default=False, help_text="paused from the web until the owner resumes")
    pause_mode = models.CharField(max_length=8, choices=PauseMode.choices, default=PauseMode.FINISH)
    # A new node is offline until its agent says hello; heartbeats alone never bring it online (so `workers
    # register`, which checks the token with one heartbeat, does not make a node without an agent look idle).
    agent_state = models.CharField(max_length=8, choices=AgentState.choices, default=AgentState.OFFLINE)
    device_type = models.CharField(max_length=8, choices=Device.choices, default=Device.CPU)
    devices = models.JSONField(default=list, blank=True, help_text="devices Cycles sees, as reported")
    vram_mb = models.IntegerField(default=0)
    cpu_cores = models.IntegerField(default=0)
    ram_mb = models.IntegerField(default=0)
    blender_version = models.CharField(max_length=20, blank=True, default="")
    blender_series = models.CharField(
        max_length=100, blank=True, default="", help_text='Blender series the agent has runtimes for: ",4.5,5.0,"'
    )
    sandbox = models.CharField(max_length=12, choices=Sandbox.choices, default=Sandbox.UNKNOWN)
    sandbox_detail = models.CharField(max_length=200, blank=True, default="", help_text="as reported at hello")
    bench_score = models.FloatField(default=0.0, help_text="samples per second on the benchmark scene")
    bench = models.JSONField(default=dict, blank=True, help_text="per-device benchmark results")
    schedule = models.JSONField(
        default=list, blank=True, help_text='e.g. [{"days": "mon-fri", "from": "22:00", "to": "07:00"}]'
    )
    min_price_per_frame = models.BigIntegerField(default=0, help_text="micro-tokens; the owner's floor")
    # Not indexed: every heartbeat flush writes it for every node that beat, and an index on it made each of those
    # writes a new index entry in every index of the table; unindexed, Postgres updates the row in its page (HOT).
    # The reads that filter on it (matching, the silent-node sweep) find their nodes by status first.
    last_heartbeat = models.DateTimeField(null=True, blank=True)
    current_frame = models.ForeignKey("jobs.Frame", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # An admin's ban of this one node. Failed checks ban the provider's account instead (User.banned_at);
    # `selectors.node_banned_q` is the one place either is read.
    banned_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["token_prefix"], name="node_token_prefix_unique")]
        # A plain index (`db_index=True` on a CharField also builds a LIKE index that no lookup uses), in id order
        # within a status: a matching round walks the idle nodes from an id drawn at random (`dispatch.batch`).
        indexes = [models.Index(fields=["status", "id"], name="node_status_id")]

    def __str__(self) -> str:
        return f"{self.name} ({self.owner})"

    @property
    def series(self) -> list[str]:
        return [s for s in self.blender_series.split(",") if s]


class HeartbeatPace(models.Model):
    """How often agents are told to heartbeat (one row, `nodes.services.heartbeat_pace_update`): the shortest pace
    while the farm is small, longer as it grows, so the farm's beats stay within what the web tier is sized for.
    The silence and lease windows are sized by the longest pace an agent may still be following: after the pace
    shortens, agents told the longer one keep it until their next beat."""

    seconds = models.PositiveIntegerField(help_text="the pace agents are told now")
    longest = models.PositiveIntegerField(help_text="the longest pace an agent may still follow, until longest_until")
    longest_until = models.DateTimeField()
    online = models.PositiveIntegerField(default=0, help_text="nodes online at the last update")
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"every {self.seconds} s ({self.online} nodes online)"
