"""Settings of the jobs app, read when used (tests can override them; settings.py needs no edit).

    from marketplace.jobs import conf
    conf.MARKET_RATE_MICRO_PER_REFERENCE_HOUR   # settings.JOBS_MARKET_RATE_MICRO_PER_REFERENCE_HOUR, or the default

The resolution and frame-count caps are the scenes app's own (SCENE_MAX_SIDE, SCENE_MAX_FRAMES): a job may
never ask for more than an upload may hold.
"""

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from marketplace.scenes import conf as scenes_conf
from workers.contract import LIMITS

DEFAULTS: dict[str, Any] = {
    # The reference machine of the price unit ("reference render-seconds"): pixel-samples per second on the agent's
    # benchmark scene. 1.7 M is what a 2-vCPU x86 server (AMD EPYC at 2.6 GHz, 5.2 GHz in all) does here
    # (bench_quote, Blender 5.0.1 CPU), the same machine as CALIBRATION_BENCH_SCORE below.
    "REFERENCE_BENCH_SCORE": 1_700_000.0,
    # Price of one hour of the reference machine, in micro-tokens, at priority 0. 6 tokens = 6 US cents at the
    # default 100 tokens per dollar: Ranch Computing's CPU-Low rate, 0.011 EUR per GHz-hour (ranchcomputing.com,
    # "Understanding Billing"), for the reference machine's 5.2 GHz is 0.057 EUR, about 0.06 USD, per hour.
    "MARKET_RATE_MICRO_PER_REFERENCE_HOUR": 6_000_000,
    # What priority costs: each priority level adds this many basis points to the rate. 40 makes the top priority
    # (MAX_PRIORITY 100) pay 1.4x, about Ranch Computing's CPU-High / CPU-Low (0.015 / 0.011 = 1.36).
    "PRIORITY_PREMIUM_BPS": 40,
    # A frame rendering longer than this many times its calibrated time on the node (the node's benchmark
    # score applied to the calibration) is stopped and failed as "slower than calibrated" ...
    "SLOWER_THAN_CALIBRATED_FACTOR": 3.0,
    # ... but never before this many seconds: a GPU's first render may compile kernels, a cold disk may be slow.
    "SLOWER_THAN_CALIBRATED_MIN_SECONDS": 60.0,
    # The cheapest a frame can be, in micro-tokens: a tiny frame still costs a node a scene sync and an upload.
    "MIN_PRICE_PER_FRAME": 1_000,
    # Per-frame seconds that do not grow with the pixels (frame change, scene sync, writing the file), used
    # only when the calibration did not measure them; capped at half the calibration render.
    "FRAME_OVERHEAD_SECONDS": 0.3,
    # Pixel-samples per second that the calibration machine (the inspection worker's CPU) does on the
    # benchmark scene, when the calibration does not say: a 2-core x86 CPU did 1.75 M here (bench_quote).
    "CALIBRATION_BENCH_SCORE": 1_700_000.0,
    "MAX_SAMPLES": 4096,
    # How long a quote can be accepted: prices follow the market rate and the idle capacity of the moment.
    "QUOTE_VALID_HOURS": 24,
    "MAX_PRIORITY": 100,
    # A still may be split into at most MAX_TILE_SIDE x MAX_TILE_SIDE tiles ...
    "MAX_TILE_SIDE": 8,
    # ... none narrower or shorter than this many pixels. Verification compares SSIM windows inside a tile, so
    # it may not be set below render_kernels' window (11 px).
    "MIN_TILE_SIDE": 32,
    # How far back the beat sweep (jobs.assemble_missing) looks for tiled stills left unassembled.
    "ASSEMBLY_SWEEP_HOURS": 24,
    # How many times an artist may send a job's failed frames back to the queue. Failed renders are never
    # paid, so every retry of a frame that fails again costs providers up to DISPATCH_FRAME_FAILED_NODES (3)
    # unpaid renders; 3 retries bound that at 3 + 3 x 3 = 12 unpaid renders per frame, and leave room to
    # fix a scene twice (or wait out a bad batch of nodes) before the artist must start a new job.
    "MAX_RETRIES": 3,
}
# The agent contract's smallest image side (the scenes app's: it refuses smaller scenes too) and Blender's last
# frame; the market sells frames from 0 on, though the contract (Blender) allows negative ones.
MIN_SIDE = scenes_conf.MIN_SIDE
MIN_FRAME = 0
MAX_FRAME = LIMITS.frame[1]
# The largest frame result (image file) an agent may upload, and so the most any reader of a result reads.
RESULT_MAX_BYTES = getattr(settings, "DISPATCH_RESULT_MAX_BYTES", 64 * 1024 * 1024)


def dispute_window() -> timedelta:
    """How long after a frame settles its artist may dispute the result, and so how long the provider's pay for it
    stays pending (settings.DISPUTE_WINDOW_HOURS, default 72): one rule of the frame's settlement, which disputes
    and payments both follow."""
    return timedelta(hours=getattr(settings, "DISPUTE_WINDOW_HOURS", 72))


def __getattr__(name: str) -> Any:
    if name in ("MAX_SIDE", "MAX_FRAMES"):
        return getattr(scenes_conf, name)
    if name not in DEFAULTS:
        raise AttributeError(f"no jobs setting {name!r}")
    value = getattr(settings, f"JOBS_{name}", DEFAULTS[name])
    if name == "MIN_TILE_SIDE":
        from render_kernels._common import SSIM_WIN

        if value < SSIM_WIN:
            raise ImproperlyConfigured(f"JOBS_MIN_TILE_SIDE is {value}: a tile must hold a {SSIM_WIN}-px SSIM window")
    return value
