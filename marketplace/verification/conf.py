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
# When a job is accepted, a platform worker loads its scene ahead of the first crop (its Blender would otherwise
# start and load in the first check's path), unless its Blender rendered another scene this recently.
PLATFORM_PREWARM = getattr(settings, "VERIFICATION_PLATFORM_PREWARM", True)
PLATFORM_PREWARM_KEEP_S = getattr(settings, "VERIFICATION_PLATFORM_PREWARM_KEEP_S", 60)
