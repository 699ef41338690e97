"""Artist API for jobs: quote, accept, cancel, list, detail, download. Another user's job or scene is a 404."""
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from marketplace.api.errors import ServiceErrorView
from marketplace.dispatch.selectors import job_waiting
from marketplace.jobs import conf, selectors, services
from marketplace.jobs.downloads import settled_frames_zip
from marketplace.jobs.errors import FundsInsufficient, JobNotFound, JobRefused
from marketplace.jobs.models import Frame, Job


class FrameSerializer(serializers.ModelSerializer):
    node = serializers.CharField(source="node.name", default=None, read_only=True)

    class Meta:
        model = Frame
        fields = ["id", "number", "tile_x", "tile_y", "tile_w", "tile_h", "state", "price", "attempts", "last_error",
                  "node", "render_seconds", "rendered_at", "settled_at"]


class JobSerializer(serializers.ModelSerializer):
    quote_expires_at = serializers.DateTimeField(read_only=True, help_text="accept the quote before this")

    class Meta:
        model = Job
        fields = ["id", "name", "scene", "state", "frame_start", "frame_end", "frame_step", "resolution_x",
                  "resolution_y", "samples", "seed", "use_denoising", "output_format", "priority", "tile_side",
                  "max_price_per_frame", "price_per_frame", "quote", "quote_expires_at", "created_at", "accepted_at",
                  "finished_at"]


class StillSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    tiles = serializers.IntegerField()
    settled = serializers.IntegerField(help_text="tiles settled so far")
    assembled_at = serializers.DateTimeField(source="assembled.assembled_at", default=None,
                                             help_text="when the image was assembled from its current tiles: then "
                                                       "the download holds it whole")


class WaitingSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="no_nodes, all_busy, all_paused, handing_out, vram, price, blocked, blender "
                                           "or trust")
    reason = serializers.CharField(help_text='why frames wait, e.g. "waiting for a node with ≥ 8 GB VRAM"')
    next = serializers.CharField(help_text="what happens next")
    frames = serializers.IntegerField(help_text="frames waiting for a node")
    since = serializers.DateTimeField(allow_null=True, help_text="the longest-waiting frame waits since then")
    choices = serializers.ListField(child=serializers.CharField(),
                                    help_text='actions offered: "allow_refused_nodes" (POST …/allow-refused-nodes/), '
                                              '"requote" (a new quote)')


class JobDetailSerializer(JobSerializer):
    waiting = WaitingSerializer(read_only=True, allow_null=True,
                                help_text="null when no frame waits for a node")
    frames = FrameSerializer(many=True, read_only=True, source="frames_in_order")
    stills = StillSerializer(many=True, read_only=True, help_text="tiled stills ([] when not split)")
    cost_so_far = serializers.IntegerField(read_only=True)
    escrow_left = serializers.IntegerField(read_only=True)

    class Meta(JobSerializer.Meta):
        fields = [*JobSerializer.Meta.fields, "cost_so_far", "escrow_left", "waiting", "stills", "frames"]


class JobQuoteRequest(serializers.Serializer):
    """Anything left out comes from the scene's inspection report. Prices are integer micro-tokens."""

    scene = serializers.IntegerField()
    name = serializers.CharField(max_length=200, required=False, default="")
    frame_start = serializers.IntegerField(required=False)
    frame_end = serializers.IntegerField(required=False)
    frame_step = serializers.IntegerField(required=False)
    resolution_x = serializers.IntegerField(required=False, help_text=f"pixels, at most {conf.MAX_SIDE}")
    resolution_y = serializers.IntegerField(required=False, help_text=f"pixels, at most {conf.MAX_SIDE}")
    samples = serializers.IntegerField(required=False, help_text=f"1 to {conf.MAX_SAMPLES}")
    output_format = serializers.ChoiceField(choices=Job.Output.choices, required=False, default=Job.Output.PNG)
    priority = serializers.IntegerField(required=False, default=0,
                                        help_text=f"0 to {conf.MAX_PRIORITY}; higher renders first and pays more: "
                                                  f"each level adds {conf.PRIORITY_PREMIUM_BPS} basis points to "
                                                  f"the rate (quote.priority_multiplier_bps)")
    max_price_per_frame = serializers.IntegerField(required=False, allow_null=True, default=None,
                                                   help_text="micro-tokens; the quote is refused above it")
    use_denoising = serializers.BooleanField(required=False, allow_null=True, default=None,
                                             help_text="default: the scene's own setting")
    seed = serializers.IntegerField(required=False, default=0)
    tiles = serializers.IntegerField(
        required=False, default=1,
        help_text=f"split a still (one frame, no denoising) into a tiles x tiles grid rendered by separate nodes and "
                  f"assembled into one image, at the whole still's price; 1 to {conf.MAX_TILE_SIDE}, 1: not split")


class JobCancelResponse(serializers.Serializer):
    job = JobSerializer()
    frames_cancelled = serializers.IntegerField()
    refunded = serializers.IntegerField(help_text="micro-tokens returned to the wallet")


class JobRetryResponse(serializers.Serializer):
    job = JobSerializer()
    frames_requeued = serializers.IntegerField()
    held = serializers.IntegerField(help_text="micro-tokens held in escrow again (a finished job's leftover was "
                                              "refunded)")


class JobErrorResponse(serializers.Serializer):
    error = serializers.CharField()


class JobsView(ServiceErrorView):
    # The first match wins: a refusal for want of funds is a 402, any other a 400; another artist's job a 404.
    error_status = ((JobNotFound, status.HTTP_404_NOT_FOUND), (FundsInsufficient, status.HTTP_402_PAYMENT_REQUIRED),
                    (JobRefused, status.HTTP_400_BAD_REQUEST))


def _detail(job: Job) -> dict:
    money = selectors.job_money(job=job)
    job.cost_so_far, job.escrow_left = money.cost_so_far, money.escrow_left
    job.frames_in_order = selectors.frames_of(job=job)
    job.stills = selectors.stills_of(job=job)
    waiting = job_waiting(job=job)
    job.waiting = waiting.as_dict() if waiting else None
    return JobDetailSerializer(job).data


class JobListView(JobsView):
    @extend_schema(responses=JobSerializer(many=True), summary="The artist's jobs, newest first")
    def get(self, request):
        return Response(JobSerializer(selectors.jobs_of(owner=request.user), many=True).data)

    @extend_schema(request=JobQuoteRequest, summary="Quote a render of a ready scene (nothing is held yet)",
                   responses={201: JobSerializer, 400: JobErrorResponse, 404: JobErrorResponse})
    def post(self, request):
        data = JobQuoteRequest(data=request.data)
        data.is_valid(raise_exception=True)
        job = services.job_quote(owner=request.user, **data.validated_data)
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)


class JobDetailView(JobsView):
    @extend_schema(responses={200: JobDetailSerializer, 404: JobErrorResponse}, summary="A job with its frames")
    def get(self, request, job_id: int):
        return Response(_detail(selectors.job_of(owner=request.user, job_id=job_id)))


class JobAcceptView(JobsView):
    @extend_schema(request=None, summary="Accept a quote: hold its total in escrow and queue the frames",
                   responses={200: JobDetailSerializer, 400: JobErrorResponse, 402: JobErrorResponse,
                              404: JobErrorResponse})
    def post(self, request, job_id: int):
        return Response(_detail(services.job_accept(job_id=job_id, owner=request.user)))


class JobCancelView(JobsView):
    @extend_schema(request=None, summary="Cancel a job; frames not yet rendered are refunded",
                   responses={200: JobCancelResponse, 400: JobErrorResponse, 404: JobErrorResponse})
    def post(self, request, job_id: int):
        outcome = services.job_cancel(job_id=job_id, owner=request.user)
        return Response(JobCancelResponse(outcome).data)


class JobRetryFailedView(JobsView):
    @extend_schema(request=None, summary="Send the job's failed frames back to the queue",
                   responses={200: JobRetryResponse, 400: JobErrorResponse, 402: JobErrorResponse,
                              404: JobErrorResponse})
    def post(self, request, job_id: int):
        outcome = services.job_retry_failed(job_id=job_id, owner=request.user)
        return Response(JobRetryResponse(outcome).data)


class JobAllowRefusedNodesView(JobsView):
    @extend_schema(request=None, summary="Let nodes refused on this job render its waiting frames again (the choice "
                                         "offered in `waiting.choices`)",
                   responses={200: JobDetailSerializer, 400: JobErrorResponse, 404: JobErrorResponse})
    def post(self, request, job_id: int):
        services.job_allow_refused_nodes(job_id=job_id, owner=request.user)
        return Response(_detail(selectors.job_of(owner=request.user, job_id=job_id)))


class JobDownloadView(JobsView):
    def perform_content_negotiation(self, request, force=False):
        # The zip is streamed past DRF's renderers: `Accept: application/zip` must not be a 406; errors stay JSON.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(summary="The settled frames as a zip, streamed (404 until one is settled)",
                   responses={(200, "application/zip"): OpenApiTypes.BINARY, 404: JobErrorResponse})
    def get(self, request, job_id: int):
        job = selectors.job_of(owner=request.user, job_id=job_id)
        response = settled_frames_zip(job)
        if response is None:
            raise JobNotFound("no finished frames to download yet")
        return response
