"""The agent API. Agents are untrusted: every call is checked against the node's token and its leases."""
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.dispatch import queues, services
from marketplace.dispatch.agent_auth import IsNode, NodeTokenAuthentication
from marketplace.nodes import conf as node_conf
from marketplace.nodes.services import Capabilities, NodeError, node_bench_record, node_hello


class AgentView(APIView):
    authentication_classes = [NodeTokenAuthentication]
    permission_classes = [IsNode]

    @property
    def node(self):
        return self.request.auth


def refused(exc: services.LeaseRefused) -> Response:
    return Response({"error": str(exc)}, status=exc.status)


class DeviceSerializer(serializers.Serializer):
    type = serializers.CharField(max_length=10)
    name = serializers.CharField(max_length=100)
    vram_mb = serializers.IntegerField(min_value=0, required=False, default=0)
    use = serializers.BooleanField(required=False, default=True)


class HelloSerializer(serializers.Serializer):
    devices = DeviceSerializer(many=True)
    cpu_cores = serializers.IntegerField(min_value=0, max_value=4096)
    ram_mb = serializers.IntegerField(min_value=0)
    blender_version = serializers.CharField(max_length=20)
    blender_series = serializers.ListField(
        child=serializers.CharField(max_length=10), max_length=16, required=False, default=list,
        help_text="Blender series the agent has runtimes for (python -m workers runtimes list)",
    )
    # Agents before the sandbox report send neither: the node then shows "not reported".
    sandbox = serializers.ChoiceField(choices=["enforced", "unsandboxed"], required=False, default="unknown")
    sandbox_detail = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)


class HelloView(AgentView):
    @extend_schema(
        responses=OpenApiTypes.OBJECT, request=HelloSerializer,
        summary="Agent start-up: report capabilities, get broker access",
    )
    def post(self, request):
        data = HelloSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        node = node_hello(node=self.node, capabilities=Capabilities(**data.validated_data))
        services.match_frames_soon()
        return Response({
            "node": node.pk, "name": node.name, "status": node.status, "device": node.device_type,
            "broker_url": queues.node_broker_url(node_id=node.pk), "queue": queues.queue_key(node.pk),
            "heartbeat_seconds": node_conf.HEARTBEAT_SECONDS,
        })


class HeartbeatSerializer(serializers.Serializer):
    leases = serializers.ListField(child=serializers.IntegerField(), max_length=16, required=False, default=list)
    paused = serializers.BooleanField(required=False, default=False)


class HeartbeatView(AgentView):
    @extend_schema(
        responses=OpenApiTypes.OBJECT, request=HeartbeatSerializer, summary="Extend the node's active leases",
    )
    def post(self, request):
        data = HeartbeatSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        states = services.node_heartbeat(node=self.node, lease_ids=data.validated_data["leases"],
                                         paused=data.validated_data["paused"])
        # `owner_pause`: the owner paused this node from the web; the agent takes no new frame until resumed.
        pause = services.node_pause_of(node=self.node)
        return Response({"leases": {str(k): v for k, v in states.items()}, "status": pause["status"],
                         "owner_pause": pause["pause_mode"] if pause["paused"] else None})


class GoodbyeView(AgentView):
    @extend_schema(
        responses=OpenApiTypes.OBJECT, request=None,
        summary="Agent exits cleanly: stop counting the node now, give back any lease it still holds",
    )
    def post(self, request):
        released = services.node_goodbye(node=self.node)
        return Response({"offline": True, "released": released})


class BenchSerializer(serializers.Serializer):
    results = serializers.DictField(child=serializers.FloatField(min_value=0))


class BenchView(AgentView):
    @extend_schema(
        responses=OpenApiTypes.OBJECT, request=BenchSerializer,
        summary="Upload benchmark results (samples/s per device)",
    )
    def post(self, request):
        data = BenchSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            node = node_bench_record(node=self.node, results=data.validated_data["results"])
        except NodeError as exc:
            return Response({"error": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response({"bench_score": node.bench_score})


class LeaseView(AgentView):
    @extend_schema(
        responses=OpenApiTypes.OBJECT, summary="Manifest and signed URLs of one of the node's active leases",
    )
    def get(self, request, lease_id: int):
        try:
            return Response(services.lease_details(node=self.node, lease_id=lease_id,
                                                   token=request.headers.get("X-Lease-Token", "")))
        except services.LeaseRefused as exc:
            return refused(exc)


class ReportSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=100)
    ok = serializers.BooleanField()
    error = serializers.CharField(max_length=4000, required=False, default="", allow_blank=True)
    stats = serializers.DictField(required=False, default=dict)


class ReportView(AgentView):
    @extend_schema(
        responses=OpenApiTypes.OBJECT, request=ReportSerializer,
        summary="Report the result of a lease (first report only)",
    )
    def post(self, request, lease_id: int):
        data = ReportSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        try:
            outcome = services.lease_report(node=self.node, lease_id=lease_id, token=v["token"], ok=v["ok"],
                                            stats=v["stats"], error=v["error"])
        except services.LeaseRefused as exc:
            return refused(exc)
        code = status.HTTP_200_OK if outcome.accepted else status.HTTP_422_UNPROCESSABLE_ENTITY
        return Response({"accepted": outcome.accepted, "message": outcome.message}, status=code)


class ReleaseSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=100)


class ReleaseView(AgentView):
    @extend_schema(
        responses=OpenApiTypes.OBJECT, request=ReleaseSerializer, summary="Give a lease back without failing it",
    )
    def post(self, request, lease_id: int):
        data = ReleaseSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            services.lease_release(node=self.node, lease_id=lease_id, token=data.validated_data["token"])
        except services.LeaseRefused as exc:
            return refused(exc)
        return Response({"released": True})
