"""The agent API. Agents are untrusted: every call is checked against the node's token and its leases.

A refused lease call (`services.LeaseRefused`) answers with the status it carries: 404 no such lease for this node,
403 the lease token does not match, 409 the lease is no longer active.
"""

import logging
from http import HTTPStatus

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.dispatch import queues, services
from marketplace.dispatch.agent_auth import IsNode, NodeTokenAuthentication
from marketplace.dispatch.serializers import (
    BenchAnswerSerializer,
    BenchSerializer,
    GoodbyeAnswerSerializer,
    HeartbeatAnswerSerializer,
    HeartbeatSerializer,
    HelloAnswerSerializer,
    HelloSerializer,
    LeaseAnswerSerializer,
    LeaseTokenSerializer,
    NextAnswerSerializer,
    ReleaseAnswerSerializer,
    ReportAnswerSerializer,
    ReportSerializer,
)
from marketplace.errors import Refused
from marketplace.logs import bind
from marketplace.nodes import broker
from marketplace.nodes.selectors import heartbeat_pace
from marketplace.nodes.services import Capabilities, node_bench_record, node_hello

log = logging.getLogger("dispatch.agent_api")


class AgentView(APIView):
    authentication_classes = [NodeTokenAuthentication]
    permission_classes = [IsNode]

    @property
    def node(self):
        return self.request.auth

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authenticates the node (which binds node_id) or refuses
        # A lease's call names the lease from here on (its frame and job are bound where the lease is read:
        # services._lease_of_node).
        bind(lease_id=kwargs.get("lease_id"))


NOT_ACTIVE = OpenApiResponse(
    description="The lease is no longer active (expired, reported or taken back): nothing changed."
)
NOT_YOURS = OpenApiResponse(description="No such lease for this node.")
BAD_TOKEN = OpenApiResponse(description="The lease token does not match.")


class ResultRejected(Refused):
    """The reported result failed the checks; the body says so with `accepted: false`."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY

    def problem_members(self) -> dict[str, object]:
        return {"accepted": False}


class HelloView(AgentView):
    @extend_schema(
        responses=HelloAnswerSerializer,
        request=HelloSerializer,
        summary="Say hello (agent start-up)",
        description="The agent reports its devices, CPU, memory and Blender version, and gets its own queue on the "
        "agent broker and the heartbeat interval.",
    )
    def post(self, request):
        data = HelloSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        node = node_hello(node=self.node, capabilities=Capabilities(**data.validated_data))
        services.node_greeted(node_id=node.pk)
        answer = {
            "node": node.pk,
            "name": node.name,
            "status": node.status,
            "device": node.device_type,
            "broker_url": broker.node_broker_url(node_id=node.pk),
            "queue": queues.queue_key(node.pk),
            "heartbeat_seconds": heartbeat_pace().seconds,
        }
        log.info("event=node_hello", extra={"node_status": node.status, "device": node.device_type})
        return Response(HelloAnswerSerializer(answer).data)


class HeartbeatView(AgentView):
    @extend_schema(
        responses=HeartbeatAnswerSerializer,
        request=HeartbeatSerializer,
        summary="Heartbeat",
        description="Extends the node's active leases (sent every `heartbeat_seconds`, which each answer gives "
        "again: the pace grows with the farm); the answer gives each lease's state, so the agent drops work that "
        "was taken back. `paused`: take no new work.",
    )
    def post(self, request):
        data = HeartbeatSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        beat = services.node_heartbeat(
            node=self.node, lease_ids=data.validated_data["leases"], paused=data.validated_data["paused"]
        )
        # `owner_pause`: the owner paused this node from the web; the agent takes no new frame until resumed.
        # Already in the schema's types (HeartbeatAnswerSerializer documents it; the OpenAPI conformance test reads
        # real answers against it): the farm's most frequent answer skips the serializer's per-call field copies.
        return Response(
            {
                "leases": {str(k): v for k, v in beat.leases.items()},
                "status": beat.status,
                "owner_pause": beat.owner_pause,
                "heartbeat_seconds": beat.heartbeat_seconds,
            }
        )


class GoodbyeView(AgentView):
    @extend_schema(
        responses=GoodbyeAnswerSerializer,
        request=None,
        summary="Say goodbye (the agent exits)",
        description="Sent by the agent on a clean exit (Ctrl-C, SIGTERM) after it finished or released its frame: "
        "the node stops counting as online at once and any lease it still holds goes back to the queue. A new "
        "hello brings it back.",
    )
    def post(self, request):
        released = services.node_goodbye(node=self.node)
        log.info("event=node_goodbye", extra={"released": released})
        return Response(GoodbyeAnswerSerializer({"offline": True, "released": released}).data)


class BenchView(AgentView):
    @extend_schema(
        responses=BenchAnswerSerializer,
        request=BenchSerializer,
        summary="Upload benchmark results",
        description="Samples per second per device from `python -m workers bench`; they set the node's score.",
    )
    def post(self, request):
        data = BenchSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        node = node_bench_record(node=self.node, results=data.validated_data["results"])
        return Response(BenchAnswerSerializer({"bench_score": node.bench_score}).data)


class LeaseView(AgentView):
    @extend_schema(
        responses={200: LeaseAnswerSerializer, 403: BAD_TOKEN, 404: NOT_YOURS, 409: NOT_ACTIVE},
        parameters=[
            OpenApiParameter(
                "X-Lease-Token", OpenApiTypes.STR, OpenApiParameter.HEADER, description="the lease's token"
            )
        ],
        summary="Get a lease's work",
        description="The render manifest and short-lived signed URLs (scene download, result upload) of one of "
        "the node's active leases. Needs the lease token in `X-Lease-Token`.",
    )
    def get(self, request, lease_id: int):
        details = services.lease_details(
            node=self.node, lease_id=lease_id, token=request.headers.get("X-Lease-Token", "")
        )
        return Response(LeaseAnswerSerializer(details).data)


class ReportView(AgentView):
    @extend_schema(
        responses={
            200: ReportAnswerSerializer,
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
        outcome = services.lease_report(
            node=self.node,
            lease_id=lease_id,
            token=v["token"],
            ok=v["ok"],
            stats=v["stats"],
            error=v["error"],
            match_after=False,  # leased below
        )
        log.info(
            "event=lease_reported",
            extra={"ok": v["ok"], "accepted": outcome.accepted, "outcome": outcome.message, "error": v["error"][:500]},
        )
        if not outcome.accepted:
            raise ResultRejected(outcome.message)
        following = _details(self.node, services.lease_after_report(node=self.node, node_busy=outcome.node_busy))
        answer = {"accepted": outcome.accepted, "message": outcome.message, "next": following}
        return Response(ReportAnswerSerializer(answer).data)


def _details(node, delivery: services.Delivery | None) -> dict | None:
    """What `GET /leases/{id}/` answers for a delivery just made (a report's or a next call's), or None."""
    return None if delivery is None else services.delivery_details(node=node, delivery=delivery)


class NextView(AgentView):
    @extend_schema(
        responses={200: NextAnswerSerializer, 403: BAD_TOKEN, 404: NOT_YOURS, 409: NOT_ACTIVE},
        request=LeaseTokenSerializer,
        summary="Take the next lease while this one's result uploads",
        description="The agent has rendered this lease and is about to upload and report it: the node is leased "
        "its next frame now, so it renders while the result travels (no gap between frames). Its message is on "
        "the node's queue as usual and `next` holds its details. A node takes one lease ahead at most: `next` "
        "is null when it holds another active lease, when nothing fits, or when the node may not take work "
        "(paused, banned, silent). This lease stays active until its report.",
    )
    def post(self, request, lease_id: int):
        data = LeaseTokenSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        delivery = services.lease_next(node=self.node, lease_id=lease_id, token=data.validated_data["token"])
        details = _details(self.node, delivery)
        log.info("event=lease_next", extra={"next_lease": delivery and delivery.lease_id})
        return Response(NextAnswerSerializer({"next": details}).data)


class ReleaseView(AgentView):
    @extend_schema(
        responses={200: ReleaseAnswerSerializer, 403: BAD_TOKEN, 404: NOT_YOURS, 409: NOT_ACTIVE},
        request=LeaseTokenSerializer,
        summary="Release a lease",
        description="Gives a lease back without failing it (the agent is stopping); the frame goes back to the "
        "queue at once.",
    )
    def post(self, request, lease_id: int):
        data = LeaseTokenSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.lease_release(node=self.node, lease_id=lease_id, token=data.validated_data["token"])
        log.info("event=lease_released")
        return Response(ReleaseAnswerSerializer({"released": True}).data)
