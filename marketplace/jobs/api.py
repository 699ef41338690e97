"""Artist API for jobs: quote, accept, cancel, list, detail, download. Another user's job or scene is a 404."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.jobs import conf, extensions, selectors, services
from marketplace.jobs.downloads import settled_frames_zip
from marketplace.jobs.errors import JobNotFound
from marketplace.jobs.models import Frame, Job
from marketplace.money import TokensField


class FrameSerializer(serializers.ModelSerializer):
    node = serializers.CharField(source="node.name", default=None, read_only=True)
    price_tokens = TokensField(source="price")

    class Meta:
        model = Frame
        fields = [
            "id",
            "number",
            "tile_x",
            "tile_y",
            "tile_w",
            "tile_h",
            "state",
            "price",
            "price_tokens",
            "attempts",
            "last_error",
            "node",
            "render_seconds",
            "rendered_at",
            "settled_at",
        ]


class JobSerializer(serializers.ModelSerializer):
    quote_expires_at = serializers.DateTimeField(read_only=True, help_text="accept the quote before this")
    price_per_frame_tokens = TokensField(source="price_per_frame", allow_null=True)
    max_price_per_frame_tokens = TokensField(source="max_price_per_frame", allow_null=True)

    class Meta:
        model = Job
        fields = [
            "id",
            "name",
            "scene",
            "state",
            "frame_start",
            "frame_end",
            "frame_step",
            "resolution_x",
            "resolution_y",
            "samples",
            "seed",
            "use_denoising",
            "output_format",
            "priority",
            "tile_side",
            "max_price_per_frame",
            "max_price_per_frame_tokens",
            "price_per_frame",
            "price_per_frame_tokens",
            "quote",
            "quote_expires_at",
            "created_at",
            "accepted_at",
            "finished_at",
        ]


class StillSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    tiles = serializers.IntegerField()
    settled = serializers.IntegerField(help_text="tiles settled so far")
    assembled_at = serializers.DateTimeField(
        source="assembled.assembled_at",
        default=None,
        help_text="when the image was assembled from its current tiles: then the download holds it whole",
    )


class WaitingSerializer(serializers.Serializer):
    code = serializers.CharField(
        help_text="no_nodes, all_busy, all_paused, handing_out, vram, price, blocked, blender or trust"
    )
    reason = serializers.CharField(help_text='why frames wait, e.g. "waiting for a node with ≥ 8 GB VRAM"')
    next = serializers.CharField(help_text="what happens next")
    frames = serializers.IntegerField(help_text="frames waiting for a node")
    since = serializers.DateTimeField(allow_null=True, help_text="the longest-waiting frame waits since then")
    choices = serializers.ListField(
        child=serializers.CharField(),
        help_text='actions offered: "allow_refused_nodes" (POST …/allow-refused-nodes/), "requote" (a new quote)',
    )


class JobDetailSerializer(JobSerializer):
    waiting = WaitingSerializer(read_only=True, allow_null=True, help_text="null when no frame waits for a node")
    frames = FrameSerializer(many=True, read_only=True, source="frames_in_order")
    stills = StillSerializer(many=True, read_only=True, help_text="tiled stills ([] when not split)")
    cost_so_far = serializers.IntegerField(read_only=True, help_text="micro-tokens paid for settled frames so far")
    cost_so_far_tokens = TokensField(source="cost_so_far")
    escrow_left = serializers.IntegerField(read_only=True, help_text="micro-tokens still held in escrow")
    escrow_left_tokens = TokensField(source="escrow_left")

    class Meta(JobSerializer.Meta):
        fields = [
            *JobSerializer.Meta.fields,
            "cost_so_far",
            "cost_so_far_tokens",
            "escrow_left",
            "escrow_left_tokens",
            "waiting",
            "stills",
            "frames",
        ]


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
    priority = serializers.IntegerField(
        required=False,
        default=0,
        help_text=f"0 to {conf.MAX_PRIORITY}; higher renders first and pays more: "
        f"each level adds {conf.PRIORITY_PREMIUM_BPS} basis points to "
        f"the rate (quote.priority_multiplier_bps)",
    )
    max_price_per_frame = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=0,
        max_value=2**63 - 1,
        help_text="micro-tokens; the quote is refused above it",
    )
    use_denoising = serializers.BooleanField(
        required=False, allow_null=True, default=None, help_text="default: the scene's own setting"
    )
    seed = serializers.IntegerField(required=False, default=0)
    tiles = serializers.IntegerField(
        required=False,
        default=1,
        help_text=f"split a still (one frame, no denoising) into a tiles x tiles grid rendered by separate nodes and "
        f"assembled into one image, at the whole still's price; 1 to {conf.MAX_TILE_SIDE}, 1: not split",
    )


class JobCancelResponse(serializers.Serializer):
    job = JobSerializer()
    frames_cancelled = serializers.IntegerField()
    refunded = serializers.IntegerField(help_text="micro-tokens returned to the wallet")
    refunded_tokens = TokensField(source="refunded")


class JobRetryResponse(serializers.Serializer):
    job = JobSerializer()
    frames_requeued = serializers.IntegerField()
    held = serializers.IntegerField(
        help_text="micro-tokens held in escrow again (a finished job's leftover was refunded)"
    )
    held_tokens = TokensField(source="held")


NOT_FOUND = OpenApiResponse(description="No such job (or scene) of yours.")
REFUSED = OpenApiResponse(description="Refused (bad input, or the job's state does not allow it); nothing changed.")
NO_FUNDS = OpenApiResponse(description="The wallet cannot cover the escrow hold; nothing changed.")


class JobsView(APIView):
    """Jobs of the signed-in artist. Refusals answer with their own status: a refusal for want of funds is a 402,
    any other a 400; another artist's job a 404."""


def _detail(job: Job) -> dict:
    money = selectors.job_money(job=job)
    # What the serializer reads besides the model's fields, set on the instance it serializes.
    parts = {
        "cost_so_far": money.cost_so_far,
        "escrow_left": money.escrow_left,
        "frames_in_order": selectors.frames_of(job=job),
        "stills": selectors.stills_of(job=job),
        **extensions.api_parts(job=job),  # `waiting`, from dispatch
    }
    for name, value in parts.items():
        setattr(job, name, value)
    return JobDetailSerializer(job).data


class JobListView(JobsView):
    @extend_schema(
        responses=JobSerializer(many=True),
        summary="List your jobs",
        description="Your jobs, newest first, without their frames (see the job itself for those).",
    )
    def get(self, request):
        return Response(JobSerializer(selectors.jobs_of(owner=request.user), many=True).data)

    @extend_schema(
        request=JobQuoteRequest,
        summary="Get a quote for rendering a scene",
        description="Creates a job in state `quoted` for one of your scenes that is ready. Settings left "
        "out come from the scene's inspection. The job's `quote` gives the price per frame and "
        "the total; nothing is held until you accept it, before `quote_expires_at`.",
        responses={201: JobSerializer, 400: REFUSED, 404: NOT_FOUND},
    )
    def post(self, request):
        data = JobQuoteRequest(data=request.data)
        data.is_valid(raise_exception=True)
        job = services.job_quote(owner=request.user, **data.validated_data)
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)


class JobDetailView(JobsView):
    @extend_schema(
        responses={200: JobDetailSerializer, 404: NOT_FOUND},
        summary="Get a job with its frames",
        description="The job, what it has cost so far, what escrow still holds, and every frame (or "
        "tile) with its state and price.",
    )
    def get(self, request, job_id: int):
        return Response(_detail(selectors.job_of(owner=request.user, job_id=job_id)))


class JobAcceptView(JobsView):
    @extend_schema(
        request=None,
        summary="Accept a quote",
        description="Holds the quoted total in escrow from your wallet and queues the frames for the "
        "render nodes. Each frame's price is paid to its provider only once the frame is "
        "verified; what is left returns to your wallet when the job ends.",
        responses={200: JobDetailSerializer, 400: REFUSED, 402: NO_FUNDS, 404: NOT_FOUND},
    )
    def post(self, request, job_id: int):
        return Response(_detail(services.job_accept(job_id=job_id, owner=request.user)))


class JobCancelView(JobsView):
    @extend_schema(
        request=None,
        summary="Cancel a job (or discard a quote)",
        description="Stops the frames not rendered yet and returns their escrow to your wallet; frames "
        "already delivered stay paid. On a job still `quoted` this discards the quote (nothing "
        "was held).",
        responses={200: JobCancelResponse, 400: REFUSED, 404: NOT_FOUND},
    )
    def post(self, request, job_id: int):
        outcome = services.job_cancel(job_id=job_id, owner=request.user)
        return Response(JobCancelResponse(outcome).data)


class JobRetryFailedView(JobsView):
    @extend_schema(
        request=None,
        summary="Retry the failed frames",
        description="Sends the job's failed frames back to the queue; earlier failures stop counting. On "
        "a finished job their price is held in escrow again, all or nothing.",
        responses={200: JobRetryResponse, 400: REFUSED, 402: NO_FUNDS, 404: NOT_FOUND},
    )
    def post(self, request, job_id: int):
        outcome = services.job_retry_failed(job_id=job_id, owner=request.user)
        return Response(JobRetryResponse(outcome).data)


class JobAllowRefusedNodesView(JobsView):
    @extend_schema(
        request=None,
        summary="Let the refused nodes render the waiting frames",
        description="The choice offered in `waiting.choices` when no other node can take a job's frames "
        "(e.g. a disputed re-render on a one-provider farm): the nodes whose results on this "
        "job were refused may render them again.",
        responses={200: JobDetailSerializer, 400: REFUSED, 404: NOT_FOUND},
    )
    def post(self, request, job_id: int):
        services.job_allow_refused_nodes(job_id=job_id, owner=request.user)
        return Response(_detail(selectors.job_of(owner=request.user, job_id=job_id)))


class JobDownloadView(JobsView):
    def perform_content_negotiation(self, request, force=False):
        # The zip is streamed past DRF's renderers: `Accept: application/zip` must not be a 406; errors stay JSON.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        summary="Download the finished frames (zip)",
        description="A zip of every settled frame (tiled stills once assembled), streamed. Each entry is "
        "dated with the frame's render time. 404 until a frame is settled.",
        responses={
            (200, "application/zip"): OpenApiTypes.BINARY,
            404: OpenApiResponse(description="No such job of yours, or nothing finished yet."),
        },
    )
    def get(self, request, job_id: int):
        job = selectors.job_of(owner=request.user, job_id=job_id)
        response = settled_frames_zip(job)
        if response is None:
            raise JobNotFound("no finished frames to download yet")
        return response
