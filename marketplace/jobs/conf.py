"""Settings of the jobs app, read with defaults so settings.py needs no edit."""
from django.conf import settings

# Price of one million pixel-samples, in micro-tokens (10 000 = 0.01 token per megasample).
MARKET_RATE_MICRO_PER_MEGASAMPLE: int = getattr(settings, "JOBS_MARKET_RATE_MICRO_PER_MEGASAMPLE", 10_000)
# The cheapest a frame can be, in micro-tokens: a tiny frame still costs a node a scene load and an upload.
MIN_PRICE_PER_FRAME: int = getattr(settings, "JOBS_MIN_PRICE_PER_FRAME", 1_000)
# Seconds a frame costs besides its samples (frame change, scene sync, writing the file) when the
# calibration did not measure it.
FRAME_OVERHEAD_SECONDS: float = getattr(settings, "JOBS_FRAME_OVERHEAD_SECONDS", 0.3)

MAX_SIDE: int = getattr(settings, "JOBS_MAX_SIDE", 8192)
MAX_FRAMES: int = getattr(settings, "JOBS_MAX_FRAMES", 10_000)
MAX_SAMPLES: int = getattr(settings, "JOBS_MAX_SAMPLES", 4096)
# Blender's own frame number limits.
MIN_FRAME: int = 0
MAX_FRAME: int = 1_048_574
MAX_PRIORITY: int = 100
