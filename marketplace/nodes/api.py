"""Provider API for nodes: list and register (the node token is shown once)."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.nodes import selectors, services
from marketplace.nodes.models import WorkerNode


class NodeSerializer(serializers.ModelSerializer):
    class Meta:
        model = WorkerNode
        fields = [
            "id",
            "name",
            "status",
            "paused_by_owner",
            "pause_mode",
            "agent_state",
            "device_type",
            "vram_mb",
            "cpu_cores",
            "ram_mb",
            "blender_version",
            "sandbox",
            "sandbox_detail",
            "bench_score",
            "bench",
            "last_heartbeat",
            "created_at",
        ]


class NodeCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)


class NodeCreatedSerializer(NodeSerializer):
    token = serializers.CharField(read_only=True, help_text="the node's agent token: shown this once, stored hashed")

    class Meta(NodeSerializer.Meta):
        fields = [*NodeSerializer.Meta.fields, "token"]


class NodeListView(APIView):
    """Nodes of the signed-in provider."""

    @extend_schema(
        responses=NodeSerializer(many=True),
        summary="List your render nodes",
        description="Your nodes with their status, device, benchmark score and last heartbeat.",
    )
    def get(self, request):
        return Response(NodeSerializer(selectors.nodes_of(owner=request.user), many=True).data)

    @extend_schema(
        request=NodeCreateSerializer,
        responses={
            201: NodeCreatedSerializer,
            403: OpenApiResponse(description="Only GPU provider accounts can register nodes."),
        },
        summary="Register a render node",
        description="Creates a node and returns its agent token, once: give it to `python -m workers "
        "register` on the GPU machine. Only a hash of it is stored.",
    )
    def post(self, request):
        data = NodeCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        node, token = services.node_create(owner=request.user, name=data.validated_data["name"])
        node.token = token
        return Response(NodeCreatedSerializer(node).data, status=status.HTTP_201_CREATED)


class NodeDetailView(APIView):
    @extend_schema(
        responses={
            204: None,
            404: OpenApiResponse(description="No such node of yours."),
            409: OpenApiResponse(description="The node holds a lease or has results under verification."),
        },
        summary="Delete one of your nodes",
        description="Deletes the node and revokes its agent broker user; refused while it holds a lease "
        "or has results under verification.",
    )
    def delete(self, request, node_id: int):
        if not services.node_delete(owner=request.user, node_id=node_id):
            raise NotFound("no such node")
        return Response(status=status.HTTP_204_NO_CONTENT)
