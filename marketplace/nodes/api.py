from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.nodes import selectors, services
from marketplace.nodes.models import WorkerNode


class NodeSerializer(serializers.ModelSerializer):
    class Meta:
        model = WorkerNode
        fields = ["id", "name", "status", "paused_by_owner", "pause_mode", "agent_state",
                  "device_type", "vram_mb", "cpu_cores", "ram_mb", "blender_version",
                  "bench_score", "bench", "last_heartbeat", "created_at"]


class NodeCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)


class NodeListView(APIView):
    @extend_schema(responses=NodeSerializer(many=True), summary="The provider's nodes")
    def get(self, request):
        return Response(NodeSerializer(selectors.nodes_of(owner=request.user), many=True).data)

    @extend_schema(request=NodeCreateSerializer, responses={201: NodeSerializer},
                   summary="Register a node; its token is returned once")
    def post(self, request):
        data = NodeCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            node, token = services.node_create(owner=request.user, name=data.validated_data["name"])
        except services.NodeError as exc:
            return Response({"error": str(exc)}, status=status.HTTP_403_FORBIDDEN)
        return Response({**NodeSerializer(node).data, "token": token}, status=status.HTTP_201_CREATED)
