"""Disputes for artists (open, list, detail) and their review by admins (queue, decide).

Thin over `disputes.services` and `disputes.selectors`. Input is validated by the serializers, so a refusal
left to the services is a conflict with the frame's or the dispute's state (409). Refusals carry their status
(`marketplace.errors`) and become problem details in the API's one handler. Another artist's frame or dispute is
a 404.
"""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.disputes import selectors, services
from marketplace.disputes.serializers import (
    DisputeDecideRequest,
    DisputeOpenRequest,
    DisputeReviewSerializer,
    DisputeSerializer,
)


class IsMarketAdmin(BasePermission):
    message = "Dispute review is for admins."

    def has_permission(self, request, view) -> bool:
        return request.user.is_market_admin


NOT_FOUND = OpenApiResponse(description="No such dispute (or frame) of yours.")
CONFLICT = OpenApiResponse(description="The frame's or the dispute's state does not allow it: `detail` says why.")


class DisputesView(APIView):
    """Disputes of the signed-in user."""


class AdminView(DisputesView):
    permission_classes = [IsAuthenticated, IsMarketAdmin]


class DisputeListView(DisputesView):
    @extend_schema(
        responses=DisputeSerializer(many=True),
        summary="List your disputes (artists)",
        description="The disputes you opened, newest first, with their state and decision.",
    )
    def get(self, request):
        return Response(DisputeSerializer(selectors.disputes_of_artist(artist=request.user), many=True).data)

    @extend_schema(
        request=DisputeOpenRequest,
        summary="Dispute a frame (artists)",
        description="Disputes a delivered frame of one of your jobs, within the dispute window. The "
        "provider's pay for it stays frozen until an admin decides: upheld refunds the frame "
        "and renders it again elsewhere, rejected releases the pay.",
        responses={201: DisputeSerializer, 404: NOT_FOUND, 409: CONFLICT},
    )
    def post(self, request):
        data = DisputeOpenRequest(data=request.data)
        data.is_valid(raise_exception=True)
        dispute = services.dispute_open(
            artist=request.user, frame_id=data.validated_data["frame_id"], reason=data.validated_data["reason"]
        )
        return Response(DisputeSerializer(dispute).data, status=status.HTTP_201_CREATED)


class DisputesAgainstView(DisputesView):
    @extend_schema(
        responses=DisputeSerializer(many=True),
        summary="List disputes of your frames (providers)",
        description="Disputes of frames your nodes rendered, newest first; the pay for a frame is "
        "frozen while its dispute is open.",
    )
    def get(self, request):
        return Response(DisputeSerializer(selectors.disputes_against(provider=request.user), many=True).data)


class DisputeDetailView(DisputesView):
    @extend_schema(
        responses={200: DisputeSerializer, 404: NOT_FOUND},
        summary="Get a dispute",
        description="One of your disputes, with the admin's decision and note once made.",
    )
    def get(self, request, dispute_id: int):
        return Response(DisputeSerializer(selectors.dispute_for(user=request.user, dispute_id=dispute_id)).data)


class ReviewQueueView(AdminView):
    @extend_schema(
        responses=DisputeReviewSerializer(many=True),
        summary="List open disputes (admins)",
        description="Every open dispute, oldest first, with the artist, the provider and the node.",
    )
    def get(self, request):
        return Response(DisputeReviewSerializer(selectors.review_queue(), many=True).data)


class DisputeDecideView(AdminView):
    @extend_schema(
        request=DisputeDecideRequest,
        summary="Decide a dispute (admins)",
        description="`upheld` refunds the frame to the artist and renders it again on another node; "
        "`rejected` releases the provider's pay. Sending the decision already made returns "
        "it again (200, nothing done twice); a different decision on a decided dispute is a "
        "409.",
        responses={200: DisputeReviewSerializer, 404: NOT_FOUND, 409: CONFLICT},
    )
    def post(self, request, dispute_id: int):
        data = DisputeDecideRequest(data=request.data)
        data.is_valid(raise_exception=True)
        dispute = services.dispute_decide(
            admin=request.user,
            dispute_id=dispute_id,
            decision=data.validated_data["decision"],
            note=data.validated_data["note"],
        )
        return Response(DisputeReviewSerializer(dispute).data)
