"""The agent API. Agents are untrusted: every call is checked against the node's token and its leases."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.api.errors import problem
from marketplace.dispatch import queues, services
from marketplace.dispatch.agent_auth import IsNode, NodeTokenAuthentication
from marketplace.nodes import conf as node_conf
from marketplace.nodes.services import Capabilities, NodeError, node_bench_record, node_hello

# The columns' limits: a larger number is a 400 naming the field, not a database error.
INT32_MAX, INT64_MAX = 2**31 - 1, 2**63 - 1


class AgentView(APIView):
    authentication_classes = [NodeTokenAuthentication]
    permission_classes = [IsNode]

    @property
    def node(self):
        return self.request.auth


NOT_ACTIVE = OpenApiResponse(
    description="The lease is no longer active (expired, reported or taken back): nothing changed."
)
NOT_YOURS = OpenApiResponse(description="No such lease for this node.")
BAD_TOKEN = OpenApiResponse(description="The lease token does not match.")


def refused(exc: services.LeaseRefused) -> Response:
    return problem(exc.status, str(exc))


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


class HelloView(AgentView):
    @extend_schema(
        responses=OpenApiTypes.OBJECT,
        request=HelloSerializer,
        summary="Say hello (agent start-up)",
        description="The agent reports its devices, CPU, memory and Blender version, and gets its own queue on the "
        "agent broker and the heartbeat interval.",
    )
    def post(self, request):
        data = HelloSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        node = node_hello(node=self.node, capabilities=Capabilities(**data.validated_data))
        services.match_frames_soon()
        return Response(
            {
                "node": node.pk,
                "name": node.name,
                "status": node.status,
                "device": node.device_type,
                "broker_url": queues.node_broker_url(node_id=node.pk),
                "queue": queues.queue_key(node.pk),
                "heartbeat_seconds": node_conf.HEARTBEAT_SECONDS,
            }
        )


class HeartbeatSerializer(serializers.Serializer):
    leases = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=INT64_MAX), max_length=16, required=False, default=list
    )
    paused = serializers.BooleanField(required=False, default=False)


class HeartbeatView(AgentView):
    @extend_schema(
        responses=OpenApiTypes.OBJECT,
        request=HeartbeatSerializer,
        summary="Heartbeat",
        description="Extends the node's active leases (sent every `heartbeat_seconds`); the answer gives each "
        "lease's state, so the agent drops work that was taken back. `paused`: take no new work.",
    )
    def post(self, request):
        data = HeartbeatSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        states = services.node_heartbeat(
            node=self.node, lease_ids=data.validated_data["leases"], paused=data.validated_data["paused"]
        )
        # `owner_pause`: the owner paused this node from the web; the agent takes no new frame until resumed.
        pause = services.node_pause_of(node=self.node)
        return Response(
            {
                "leases": {str(k): v for k, v in states.items()},
                "status": pause["status"],
                "owner_pause": pause["pause_mode"] if pause["paused"] else None,
            }
        )


class GoodbyeView(AgentView):
    @extend_schema(
        responses=OpenApiTypes.OBJECT,
        request=None,
        summary="Say goodbye (the agent exits)",
        description="Sent by the agent on a clean exit (Ctrl-C, SIGTERM) after it finished or released its frame: "
        "the node stops counting as online at once and any lease it still holds goes back to the queue. A new "
        "hello brings it back.",
    )
    def post(self, request):
        released = services.node_goodbye(node=self.node)
        return Response({"offline": True, "released": released})


class BenchSerializer(serializers.Serializer):
    results = serializers.DictField(child=serializers.FloatField(min_value=0))


class BenchView(AgentView):
    @extend_schema(
        responses=OpenApiTypes.OBJECT,
        request=BenchSerializer,
        summary="Upload benchmark results",
        description="Samples per second per device from `python -m workers bench`; they set the node's score.",
    )
    def post(self, request):
        data = BenchSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            node = node_bench_record(node=self.node, results=data.validated_data["results"])
        except NodeError as exc:
            return problem(status.HTTP_400_BAD_REQUEST, str(exc))
        return Response({"bench_score": node.bench_score})


class LeaseView(AgentView):
    @extend_schema(
        responses={200: OpenApiTypes.OBJECT, 403: BAD_TOKEN, 404: NOT_YOURS, 409: NOT_ACTIVE},
        summary="Get a lease's work",
        description="The render manifest and short-lived signed URLs (scene download, result upload) of one of "
        "the node's active leases. Needs the lease token in `X-Lease-Token`.",
    )
    def get(self, request, lease_id: int):
        try:
            return Response(
                services.lease_details(
                    node=self.node, lease_id=lease_id, token=request.headers.get("X-Lease-Token", "")
                )
            )
        except services.LeaseRefused as exc:
            return refused(exc)


class ReportSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=100)
    ok = serializers.BooleanField()
    error = serializers.CharField(max_length=4000, required=False, default="", allow_blank=True)
    stats = serializers.DictField(required=False, default=dict)


class ReportView(AgentView):
    @extend_schema(
        responses={
            200: OpenApiTypes.OBJECT,
            403: BAD_TOKEN,
            404: NOT_YOURS,
            409: NOT_ACTIVE,
            422: OpenApiResponse(description="The result failed the checks: `detail` says why; `accepted` is false."),
        },
        request=ReportSerializer,
        summary="Report a lease's result",
        description="After uploading the result: `ok` with render stats, or a failure with its error. Only the "
        "first report of an active lease counts; a late, repeated or foreign one is refused (409) and "
        "changes nothing. A result that fails the checks is a 422 whose `detail` says why. An accepted report "
        "leases the node its next frame at once when one fits: its message is on the node's queue as usual, and "
        "`next` holds that lease's details (what `GET /leases/{id}/` answers), so the agent starts rendering "
        "without waiting for the matcher or a second request.",
    )
    def post(self, request, lease_id: int):
        data = ReportSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        try:
            outcome = services.lease_report(
                node=self.node, lease_id=lease_id, token=v["token"], ok=v["ok"], stats=v["stats"], error=v["error"]
            )
        except services.LeaseRefused as exc:
            return refused(exc)
        if not outcome.accepted:
            return problem(status.HTTP_422_UNPROCESSABLE_ENTITY, outcome.message, accepted=False)
        return Response({"accepted": outcome.accepted, "message": outcome.message, "next": self._next_lease()})

    def _next_lease(self) -> dict | None:
        """The node is idle again: lease it its next frame now rather than after a Celery hop to the matcher
        (the gap between frames, bench_farm). None when nothing fits or the node is not matchable."""
        delivery = services.lease_create_for_node(node_id=self.node.pk)
        if delivery is None:
            return None
        return services.lease_details(node=self.node, lease_id=delivery.lease_id, token=delivery.token)


class ReleaseSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=100)


class ReleaseView(AgentView):
    @extend_schema(
        responses={200: OpenApiTypes.OBJECT, 403: BAD_TOKEN, 404: NOT_YOURS, 409: NOT_ACTIVE},
        request=ReleaseSerializer,
        summary="Release a lease",
        description="Gives a lease back without failing it (the agent is stopping); the frame goes back to the "
        "queue at once.",
    )
    def post(self, request, lease_id: int):
        data = ReleaseSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            services.lease_release(node=self.node, lease_id=lease_id, token=data.validated_data["token"])
        except services.LeaseRefused as exc:
            return refused(exc)
        return Response({"released": True})
