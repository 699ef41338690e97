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
                  "sandbox", "sandbox_detail", "bench_score", "bench", "last_heartbeat", "created_at"]


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


class NodeDetailView(APIView):
    @extend_schema(responses={204: None}, summary="Delete one of the provider's nodes (revokes its broker user)")
    def delete(self, request, node_id: int):
        try:
            deleted = services.node_delete(owner=request.user, node_id=node_id)
        except services.NodeError as exc:
            return Response({"error": str(exc)}, status=status.HTTP_409_CONFLICT)
        if not deleted:
            return Response({"error": "no such node"}, status=status.HTTP_404_NOT_FOUND)
        return Response(status=status.HTTP_204_NO_CONTENT)
