from pathlib import Path

from django.conf import settings

# Where the platform verifier caches scenes and writes its renders.
WORK_DIR = Path(getattr(settings, "VERIFICATION_WORK_DIR", settings.VAR_DIR / "verification"))
# Wall-clock limit of one platform crop (or canary answer) render.
PLATFORM_RENDER_TIMEOUT_S = getattr(settings, "VERIFICATION_PLATFORM_RENDER_TIMEOUT_S", 600)
# A node's crop reported this long ago but never judged (lost message) is judged again by the sweep.
RESUME_AFTER_S = getattr(settings, "VERIFICATION_RESUME_AFTER_S", 60)
# A platform crop still pending this long after it was enqueued (lost message, dead worker) is enqueued again.
PLATFORM_RESUME_AFTER_S = getattr(settings, "VERIFICATION_PLATFORM_RESUME_AFTER_S", 900)
# The name prefix of the platform account that owns canary jobs (found by User.is_platform, never by name).
CANARY_USERNAME = getattr(settings, "VERIFICATION_CANARY_USERNAME", "platform-canaries")
# Whether a render lease's result is checked is drawn when it is granted (the node cannot see the draw), so that
# its crops can be chosen and rendered while the node renders, not after its report.
SAMPLE_AT_LEASE = getattr(settings, "VERIFICATION_SAMPLE_AT_LEASE", True)
# The platform renders a sampled lease's reference crops while the node renders the frame, unless another
# provider's node is idle to verify them after the report (cheaper for the platform). The check is then decided
# when the result arrives, not after a platform render in the job's path.
REFERENCES_AHEAD = getattr(settings, "VERIFICATION_REFERENCES_AHEAD", True)
# How much of a worker process's memory the decoded candidates of recent checks may keep (one is always kept): a
# check's crops are judged against one frame, read and decoded once (`services._candidate_image`). 128 MiB holds
# five 1920x1080 frames, or one at 4K.
CANDIDATE_CACHE_BYTES = getattr(settings, "VERIFICATION_CANDIDATE_CACHE_MB", 128) << 20
# The most sampled leases one `verification.samples_prepare` task prepares; a full batch queues another.
SAMPLES_BATCH = 500
# When a job is accepted, a platform worker loads its scene ahead of the first crop (its Blender would otherwise
# start and load in the first check's path), unless its Blender rendered another scene this recently. Off by
# default while the references are rendered ahead: the first sampled lease loads the scene beside the render.
PLATFORM_PREWARM = getattr(settings, "VERIFICATION_PLATFORM_PREWARM", not REFERENCES_AHEAD)
PLATFORM_PREWARM_KEEP_S = getattr(settings, "VERIFICATION_PLATFORM_PREWARM_KEEP_S", 60)
