"""Disputes for artists (open, list, detail) and their review by admins (queue, decide).

Thin over `disputes.services` and `disputes.selectors`. Input is validated by the serializers, so a refusal
left to the services is a conflict with the frame's or the dispute's state (409). Every refusal becomes
`{"error": message}` by one table, `ERROR_STATUS`. Another artist's frame or dispute is a 404.
"""
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response

from marketplace.api.errors import ServiceErrorView
from marketplace.disputes import selectors, services
from marketplace.disputes.serializers import (
    DisputeDecideRequest,
    DisputeErrorResponse,
    DisputeOpenRequest,
    DisputeReviewSerializer,
    DisputeSerializer,
)

# Checked in order: the first class the exception is an instance of gives the status.
ERROR_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (services.DisputeNotFound, status.HTTP_404_NOT_FOUND),
    (Http404, status.HTTP_404_NOT_FOUND),
    (services.DisputeRefused, status.HTTP_409_CONFLICT),
    (services.NotAdmin, status.HTTP_403_FORBIDDEN),
)


class IsMarketAdmin(BasePermission):
    message = "Dispute review is for admins."

    def has_permission(self, request, view) -> bool:
        return request.user.is_market_admin


class DisputesView(ServiceErrorView):
    error_status = ERROR_STATUS


class AdminView(DisputesView):
    permission_classes = [IsAuthenticated, IsMarketAdmin]


class DisputeListView(DisputesView):
    @extend_schema(responses=DisputeSerializer(many=True), summary="The disputes the artist opened, newest first")
    def get(self, request):
        return Response(DisputeSerializer(selectors.disputes_of_artist(artist=request.user), many=True).data)

    @extend_schema(request=DisputeOpenRequest,
                   summary="Dispute a settled frame of one's own job; the provider's pay for it is frozen",
                   responses={201: DisputeSerializer, 400: DisputeErrorResponse, 404: DisputeErrorResponse,
                              409: DisputeErrorResponse})
    def post(self, request):
        data = DisputeOpenRequest(data=request.data)
        data.is_valid(raise_exception=True)
        dispute = services.dispute_open(artist=request.user, frame_id=data.validated_data["frame_id"],
                                        reason=data.validated_data["reason"])
        return Response(DisputeSerializer(dispute).data, status=status.HTTP_201_CREATED)


class DisputesAgainstView(DisputesView):
    @extend_schema(responses=DisputeSerializer(many=True),
                   summary="Disputes of frames the provider's nodes rendered, newest first (their pay is frozen "
                           "while open)")
    def get(self, request):
        return Response(DisputeSerializer(selectors.disputes_against(provider=request.user), many=True).data)


class DisputeDetailView(DisputesView):
    @extend_schema(responses={200: DisputeSerializer, 404: DisputeErrorResponse},
                   summary="One of the artist's disputes, with the decision once made")
    def get(self, request, dispute_id: int):
        return Response(DisputeSerializer(selectors.dispute_for(user=request.user, dispute_id=dispute_id)).data)


class ReviewQueueView(AdminView):
    @extend_schema(responses=DisputeReviewSerializer(many=True), summary="Open disputes, oldest first (admins)")
    def get(self, request):
        return Response(DisputeReviewSerializer(selectors.review_queue(), many=True).data)


class DisputeDecideView(AdminView):
    @extend_schema(request=DisputeDecideRequest,
                   summary="Uphold (refund and re-render) or reject (release the pay) an open dispute (admins)",
                   description="Sending the decision already made returns it again (200, nothing done twice); "
                               "a different decision on a decided dispute is a 409.",
                   responses={200: DisputeReviewSerializer, 400: DisputeErrorResponse, 404: DisputeErrorResponse,
                              409: DisputeErrorResponse})
    def post(self, request, dispute_id: int):
        data = DisputeDecideRequest(data=request.data)
        data.is_valid(raise_exception=True)
        dispute = services.dispute_decide(admin=request.user, dispute_id=dispute_id,
                                          decision=data.validated_data["decision"], note=data.validated_data["note"])
        return Response(DisputeReviewSerializer(dispute).data)
