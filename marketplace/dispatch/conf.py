from django.conf import settings

from render_kernels.image_io import DEFAULT_MAX_PIXELS

# An agent must heartbeat within this many seconds or its lease expires and the frame is requeued.
LEASE_SECONDS = getattr(settings, "DISPATCH_LEASE_SECONDS", 90)
# Hard cap on one frame's render time, whatever the heartbeats say.
MAX_RENDER_SECONDS = getattr(settings, "DISPATCH_MAX_RENDER_SECONDS", 1800)
# A node that fails the same job this many times gets no more of its frames.
NODE_FAILURES_PER_JOB = getattr(settings, "DISPATCH_NODE_FAILURES_PER_JOB", 3)
# A frame that failed on this many different nodes is failed for good.
FRAME_FAILED_NODES = getattr(settings, "DISPATCH_FRAME_FAILED_NODES", 3)
SIGNED_URL_SECONDS = getattr(settings, "DISPATCH_SIGNED_URL_SECONDS", 600)
RESULT_MAX_BYTES = getattr(settings, "DISPATCH_RESULT_MAX_BYTES", 64 * 1024 * 1024)
# Per-node Redis ACL users on the agent broker (off only for brokers without ACL support).
AGENT_BROKER_ACL = getattr(settings, "AGENT_BROKER_ACL", True)
# Frames that no online node may take for this long are called out to the artist with a choice (issue 12).
UNPLACED_NOTICE_SECONDS = getattr(settings, "DISPATCH_UNPLACED_NOTICE_SECONDS", 120)
# Hard cap on the pixels of any result image the market decodes, read from its header before decoding
# (default: render_kernels' cap, 8192x8192 unless the RENDER_KERNELS_MAX_PIXELS environment variable says otherwise).
MAX_IMAGE_PIXELS = getattr(settings, "RENDER_MAX_IMAGE_PIXELS", DEFAULT_MAX_PIXELS)
# A `frame_rendered` task also takes on up to this many other rendered frames waiting for the same step, so
# frames are thumbnailed, sampled and settled in batches when many are reported at once (issue 17).
RENDERED_BATCH = getattr(settings, "DISPATCH_RENDERED_BATCH", 200)
