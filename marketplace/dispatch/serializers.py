"""The agent API's request and answer bodies: the agent contract (workers.contract) as DRF serializers, so the
OpenAPI schema describes every field the agent sends and reads (tests/api/test_agent_contract.py holds them to it).
"""

from rest_framework import serializers

from marketplace.dispatch import conf
from marketplace.nodes.models import WorkerNode
from workers import contract
from workers.contract import LIMITS

# The columns' limits: a larger number is a 400 naming the field, not a database error.
INT32_MAX, INT64_MAX = 2**31 - 1, 2**63 - 1


def _bounded(bounds: tuple[int, int], **kwargs) -> serializers.IntegerField:
    return serializers.IntegerField(min_value=bounds[0], max_value=bounds[1], **kwargs)


# ------------------------------------------------------------------------------------------------ requests


class DeviceSerializer(serializers.Serializer):
    type = serializers.CharField(max_length=10)
    name = serializers.CharField(max_length=100)
    vram_mb = serializers.IntegerField(min_value=0, max_value=INT32_MAX, required=False, default=0)
    use = serializers.BooleanField(required=False, default=True)


class HelloSerializer(serializers.Serializer):
    devices = DeviceSerializer(many=True)
    cpu_cores = serializers.IntegerField(min_value=0, max_value=4096)
    ram_mb = serializers.IntegerField(min_value=0, max_value=INT32_MAX)
    blender_version = serializers.CharField(max_length=20)
    blender_series = serializers.ListField(
        child=serializers.CharField(max_length=10),
        max_length=16,
        required=False,
        default=list,
        help_text="Blender series the agent has runtimes for (python -m workers runtimes list)",
    )
    # Agents before the sandbox report send neither: the node then shows "not reported".
    sandbox = serializers.ChoiceField(choices=["enforced", "unsandboxed"], required=False, default="unknown")
    sandbox_detail = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)


class HeartbeatSerializer(serializers.Serializer):
    leases = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=INT64_MAX),
        max_length=conf.LEASES_PER_BEAT,
        required=False,
        default=list,
    )
    paused = serializers.BooleanField(required=False, default=False)


class BenchSerializer(serializers.Serializer):
    results = serializers.DictField(child=serializers.FloatField(min_value=0))


class ReportSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=100)
    ok = serializers.BooleanField()
    error = serializers.CharField(max_length=4000, required=False, default="", allow_blank=True)
    stats = serializers.DictField(
        required=False, default=dict, help_text="the render's stats: `seconds`, `peak_rss_mb` and `device` are kept"
    )


class LeaseTokenSerializer(serializers.Serializer):
    """A lease call whose only argument is the lease's token (release; next)."""

    token = serializers.CharField(max_length=100)


# ------------------------------------------------------------------------------------------------ answers


class HelloAnswerSerializer(serializers.Serializer):
    node = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=WorkerNode.Status.choices)
    device = serializers.ChoiceField(choices=contract.DEVICES, help_text="the device the node's frames are sent for")
    broker_url = serializers.CharField(help_text="the node's own credential on the agent broker (redis://)")
    queue = serializers.CharField(help_text="the node's delivery list on the broker")
    heartbeat_seconds = serializers.IntegerField(min_value=1, help_text="the heartbeat pace now")


class HeartbeatAnswerSerializer(serializers.Serializer):
    leases = serializers.DictField(
        child=serializers.ChoiceField(choices=contract.LEASE_STATES), help_text="lease id -> its state"
    )
    status = serializers.ChoiceField(choices=WorkerNode.Status.choices)
    owner_pause = serializers.ChoiceField(
        choices=contract.PAUSE_MODES,
        allow_null=True,
        help_text="null, or how the owner paused the node from the web: take no new frame until resumed",
    )
    heartbeat_seconds = serializers.IntegerField(
        min_value=1, help_text="send the next heartbeat this many seconds from now (the pace grows with the farm)"
    )


class GoodbyeAnswerSerializer(serializers.Serializer):
    offline = serializers.BooleanField()
    released = serializers.IntegerField(min_value=0, help_text="how many active leases went back to the queue")


class BenchAnswerSerializer(serializers.Serializer):
    bench_score = serializers.FloatField()


class RenderManifestSerializer(serializers.Serializer):
    """workers.contract.RenderManifest: the pinned render settings. Fields a lease may lack are not required."""

    frame = _bounded(LIMITS.frame)
    samples = _bounded(LIMITS.samples)
    seed = _bounded(LIMITS.seed)
    resolution_x = _bounded(LIMITS.side)
    resolution_y = _bounded(LIMITS.side)
    device = serializers.ChoiceField(choices=contract.DEVICES, required=False)
    file_format = serializers.ChoiceField(choices=contract.FILE_FORMATS, required=False)
    use_denoising = serializers.BooleanField(required=False)
    camera = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    border = serializers.ListField(
        child=serializers.IntegerField(min_value=0),
        min_length=4,
        max_length=4,
        required=False,
        allow_null=True,
        help_text="[x, y, w, h] pixels, y from the top: render only this rectangle",
    )
    threads = _bounded(LIMITS.threads, required=False)
    device_ids = serializers.ListField(child=serializers.CharField(), required=False, allow_null=True)
    blender_version = serializers.CharField(required=False, allow_null=True)
    blender_series = serializers.CharField(required=False, allow_null=True)
    # A lease's manifest always names its scene (workers.contract.Lease refuses one that does not).
    scene_sha256 = serializers.RegexField(r"^[0-9a-f]{64}$")
    scene_kind = serializers.ChoiceField(choices=contract.SCENE_KINDS)
    blend_path = serializers.CharField()
    max_render_seconds = _bounded(LIMITS.render_seconds, required=False, allow_null=True)
    calibrated_budget_seconds = serializers.FloatField(min_value=0, required=False, allow_null=True)


class LeaseAnswerSerializer(serializers.Serializer):
    lease = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=contract.LEASE_KINDS)
    expires_at = serializers.DateTimeField()
    manifest = RenderManifestSerializer()
    scene_url = serializers.URLField(help_text="signed GET of the scene, short-lived")
    upload_url = serializers.URLField(help_text="signed PUT of the result image, short-lived")
    noisy_upload_url = serializers.URLField(
        required=False, help_text="a denoised frame's signed PUT of its pre-denoise pass (EXR)"
    )


class ReportAnswerSerializer(serializers.Serializer):
    accepted = serializers.BooleanField()
    message = serializers.CharField()
    next = LeaseAnswerSerializer(
        allow_null=True, required=False, help_text="the node's next lease, leased at once when one fits, or null"
    )


class NextAnswerSerializer(serializers.Serializer):
    next = LeaseAnswerSerializer(allow_null=True, help_text="the node's next lease, or null when none was leased")


class ReleaseAnswerSerializer(serializers.Serializer):
    released = serializers.BooleanField()
