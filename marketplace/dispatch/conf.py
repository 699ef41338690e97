from django.conf import settings

from marketplace.jobs.conf import RESULT_MAX_BYTES  # noqa: F401  (a frame's result: the jobs app's limit)

# An agent must heartbeat within this many seconds or its lease expires and the frame is requeued.
LEASE_SECONDS = getattr(settings, "DISPATCH_LEASE_SECONDS", 90)
# Hard cap on one frame's render time, whatever the heartbeats say.
MAX_RENDER_SECONDS = getattr(settings, "DISPATCH_MAX_RENDER_SECONDS", 1800)
# A node that fails the same job this many times gets no more of its frames.
NODE_FAILURES_PER_JOB = getattr(settings, "DISPATCH_NODE_FAILURES_PER_JOB", 3)
# A frame that failed on this many different nodes is failed for good.
FRAME_FAILED_NODES = getattr(settings, "DISPATCH_FRAME_FAILED_NODES", 3)
# A lease that expires (the agent went silent) or is released (the agent gave it back) is an abandoned lease.
# Honest agents abandon some (a crash, a reboot, a shutdown that releases its frame), so one is not a failure;
# but a node that takes frames and sits on them holds the market's work for LEASE_SECONDS each time. After
# ABANDONS_PER_JOB abandoned leases of one job the node gets no more of that job's frames: one abandon is an
# accident, the second on the same job says the node cannot or will not render it. Lower than
# NODE_FAILURES_PER_JOB (3 reported failures) because abandoning costs the node nothing to do (no upload,
# no report) while a reported failure at least ends the lease at once. (It also costs the node trust:
# verification.policy.ABANDON_PASSES_LOST.)
ABANDONS_PER_JOB = 2
# The most leases one heartbeat names: the API refuses more, and the service and the flush read no more.
LEASES_PER_BEAT = 16
# The longer side of a frame's preview on the job page, made from the upload at the report.
THUMBNAIL_SIDE = 256
SIGNED_URL_SECONDS = getattr(settings, "DISPATCH_SIGNED_URL_SECONDS", 600)
# The uploads of leases that ended without a result are deleted once no URL can write them: SIGNED_URL_SECONDS
# after the lease ended, and this much more for clocks and requests in flight (`services.lease_uploads_clear`).
UPLOADS_CLEAR_AFTER_SLACK_SECONDS = 60
UPLOADS_CLEAR_BATCH = 1000  # leases a statement reads, and their keys (a DeleteObjects request on S3)
UPLOADS_CLEAR_BATCHES_PER_RUN = 100  # a backlog (leases from before this ran) is cleared over several runs
# Frames that no online node may take for this long are called out to the artist with a choice (issue 12).
UNPLACED_NOTICE_SECONDS = getattr(settings, "DISPATCH_UNPLACED_NOTICE_SECONDS", 120)
# A `frame_rendered` task also takes on up to this many other rendered frames waiting for the same step, so
# frames are thumbnailed, sampled and settled in batches when many are reported at once (issue 17).
RENDERED_BATCH = getattr(settings, "DISPATCH_RENDERED_BATCH", 200)
# One queued `dispatch.match` serves every change made before it starts (it looks at all idle nodes and queued
# frames), so a change asks for one only when none is pending (marketplace.celery.delay_once); the pending mark
# expires after this long in case its message was lost (the reaper's round also matches).
MATCH_REQUEST_TTL_SECONDS = 5
# Idle nodes one matching round leases to (one transaction; `dispatch.match` runs rounds until one falls short).
MATCH_ROUND = 500
