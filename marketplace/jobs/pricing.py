"""Quote maths: prices in integer micro-tokens, time estimates in seconds. Pure functions, no database.

Price: by compute, like a farm's GHz-hour or OctaneBench-hour. The unit is the **reference render-second**: one
second of the reference machine, a machine that does REFERENCE_BENCH_SCORE pixel-samples per second on the agent's
benchmark scene (`python -m workers bench`). A scene's calibration (below) times it on the calibration machine;
scaled by the two machines' benchmark scores it gives the frame's reference compute, in whole milliseconds
(rounded up):

    reference_ms = ceil(1000 x (overhead + units x seconds_per_unit x b_cal / b_ref))

and the frame's price is

    max(MIN_PRICE_PER_FRAME, ceil(reference_ms x MARKET_RATE_MICRO_PER_REFERENCE_HOUR x priority_bps / (3.6e6 x 10^4)))

micro-tokens, integers only, so no float rounding ever reaches the ledger. `priority_bps` is the priority's price
multiplier in basis points: 10 000 + priority x PRIORITY_PREMIUM_BPS (priority 0 pays the market rate). Two scenes
with the same pixels and samples cost what their renders cost, not the same. Without a calibration (inspection
could not time the scene) the price falls back to pixel-samples: the scene is assumed as heavy per pixel-sample
as the benchmark scene, and the quote says so (`pricing_basis`, `pricing_note`).

Tiles. A still split into a grid costs what it costs whole: tiling changes who renders which part, not the work;
except that no tile pays less than MIN_PRICE_PER_FRAME (a tile costs a node a scene sync and an upload, as a frame
does), so a very cheap still costs at least that per tile. Each tile's price is the still's price shared in
proportion to its area (largest remainder), so the tiles' prices sum exactly to the still's. The time estimate does
count what tiling adds: every tile pays the per-frame overhead, and the tiles spread over idle nodes like frames do.

Time. The scene's calibration (measured at inspection by `scenes.calibration`) renders one frame at reduced
size on the calibration machine's CPU and gives three numbers:

    seconds_per_unit  (calibration seconds - overhead) / calibration units
    overhead          per-frame seconds that do not grow with the pixels (frame change, scene sync, writing the
                      file): the intercept of the line through a second, smaller render; when only one render
                      was timed, FRAME_OVERHEAD_SECONDS, at most half of that render
    load              once per node and job: starting Blender, opening the scene, the first render's kernel
                      and BVH set-up (0 when not measured)

so a frame takes `overhead + units x seconds_per_unit` there. A node with benchmark score b (pixel-samples
per second on the benchmark scene) does the per-unit part b / b_cal times as fast, b_cal being the
calibration machine's score (calibration["bench_score"], else CALIBRATION_BENCH_SCORE); overhead and load
are host work and are not scaled. Frames go to whichever idle node is free first, as dispatch hands them
out; the estimate is when the last one finishes. With no idle node: one CPU node like the calibration
machine. Not modelled: other jobs ahead in the queue, downloads and uploads, verification re-renders.

Budget. A lease carries `calibrated_budget_seconds`: SLOWER_THAN_CALIBRATED_FACTOR times the frame's calibrated
time on that node (its own benchmark score), plus the scene load, at least SLOWER_THAN_CALIBRATED_MIN_SECONDS. The
agent stops a render that runs past it and reports it "slower than calibrated"; the frame fails with that reason
(it is not paid at a price computed for a lighter frame, nor retried on node after node) and the artist re-quotes.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from marketplace.jobs import conf
from marketplace.jobs.tiles import Rect, tile_rects
from workers.budget import SLOWER_THAN_CALIBRATED  # noqa: F401 (the agent's words for a frame past its budget)

MEGA = 1_000_000
MS_PER_HOUR = 3_600_000
BPS = 10_000  # basis points in one


@dataclass(frozen=True)
class Calibration:
    """What the reduced-size renders of a scene measured on the calibration machine."""

    seconds: float  # one calibration render
    units: int  # its pixel-samples
    overhead_seconds: float
    load_seconds: float = 0.0
    device: str = "CPU"
    bench_score: float | None = None  # the calibration machine's benchmark score, when measured

    @property
    def seconds_per_unit(self) -> float:
        return max(self.seconds - self.overhead_seconds, 0.0) / self.units

    def frame_seconds(self, units: int, *, speed: float = 1.0) -> float:
        """One frame of `units` on a machine `speed` times as fast as the calibration machine."""
        return self.overhead_seconds + units * self.seconds_per_unit / speed

    def speed_of(self, bench_score: float) -> float:
        """How many times faster than the calibration machine a node with this benchmark score renders."""
        return bench_score / (self.bench_score or conf.CALIBRATION_BENCH_SCORE)

    def reference_ms(self, units: int) -> int:
        """A frame of `units` in whole milliseconds (rounded up) of the reference machine: the priced compute."""
        speed = conf.REFERENCE_BENCH_SCORE / (self.bench_score or conf.CALIBRATION_BENCH_SCORE)
        return max(1, math.ceil(1000 * self.frame_seconds(units, speed=speed)))


def uncalibrated() -> Calibration:
    """A stand-in for a scene without a calibration: as heavy per pixel-sample as the benchmark scene."""
    overhead = conf.FRAME_OVERHEAD_SECONDS
    return Calibration(seconds=overhead + MEGA / conf.CALIBRATION_BENCH_SCORE, units=MEGA, overhead_seconds=overhead)


@dataclass(frozen=True)
class Quote:
    frames: int
    width: int
    height: int
    samples: int
    work_units_per_frame: int
    reference_ms_per_frame: int  # the priced compute: milliseconds of the reference machine per frame
    reference_seconds_per_frame: float  # the same in seconds, for people
    rate_micro_per_reference_hour: int  # the market rate before the priority's multiplier
    priority: int
    priority_multiplier_bps: int  # 10 000 = the market rate
    pricing_basis: str  # "calibrated compute" or "pixel-samples (no calibration)"
    pricing_note: str  # why the price is what it is, in words
    price_per_frame: int  # micro-tokens
    total: int  # micro-tokens
    seconds_per_frame: float  # on the calibration machine (a benchmark-like CPU when uncalibrated)
    load_seconds: float  # once per node
    estimated_seconds: float  # the whole job with the capacity below
    idle_nodes: int
    capacity_note: str
    calibrated: bool
    tiles: int = 1  # pieces each frame is split into (the grid side squared)
    # Micro-tokens per tile, row-major from the top-left, summing to the price; [] when not split.
    tile_prices: list[int] = field(default_factory=list)
    # What dispatch needs to hold a frame to its calibrated compute (`calibrated_budget_seconds`).
    overhead_seconds: float = 0.0
    reference_seconds_per_unit: float = 0.0

    def as_json(self) -> dict:
        return asdict(self)


def _positive(value: object) -> float | None:
    if not isinstance(value, int | float | str):  # a report's JSON: null, a list or an object is no number
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number > 0 else None


def calibration_from_report(report: Mapping) -> Calibration | None:
    """The scene report's calibration, or None when it has none (or an unusable one)."""
    cal = report.get("calibration") or {}
    try:
        units = int(cal["width"]) * int(cal["height"]) * int(cal["samples"])
        seconds = float(cal["seconds"])
    except (KeyError, TypeError, ValueError):
        return None
    if units <= 0 or seconds <= 0:
        return None
    overhead = cal.get("overhead_seconds")
    if overhead is None:
        overhead = min(conf.FRAME_OVERHEAD_SECONDS, seconds / 2)
    overhead = min(_positive(overhead) or 0.0, seconds)
    return Calibration(
        seconds=seconds,
        units=units,
        overhead_seconds=overhead,
        load_seconds=_positive(cal.get("load_seconds")) or 0.0,
        device=str(cal.get("device") or "CPU"),
        bench_score=_positive(cal.get("bench_score")),
    )


def work_units(*, width: int, height: int, samples: int) -> int:
    return width * height * samples


def priority_multiplier_bps(priority: int) -> int:
    """The price multiplier of a priority, in basis points: 10 000 + priority x PRIORITY_PREMIUM_BPS."""
    return BPS + int(priority) * conf.PRIORITY_PREMIUM_BPS


def price_per_frame(
    reference_ms: int, *, priority: int = 0, rate: int | None = None, minimum: int | None = None
) -> int:
    """ceil(reference_ms x rate x multiplier / (3.6e6 x 10^4)) micro-tokens, at least `minimum`; integers only."""
    rate = conf.MARKET_RATE_MICRO_PER_REFERENCE_HOUR if rate is None else rate
    minimum = conf.MIN_PRICE_PER_FRAME if minimum is None else minimum
    return max(minimum, -(-reference_ms * rate * priority_multiplier_bps(priority) // (MS_PER_HOUR * BPS)))


def calibrated_budget_seconds(quote: Mapping, *, units: int, bench_score: float) -> float | None:
    """How long a frame (or tile) of `units` may render on a node with `bench_score` before it is stopped as
    slower than calibrated: FACTOR x its calibrated time there, plus the scene load, at least MIN_SECONDS.
    None for quotes made before compute pricing (they carry no calibration to hold a frame to), and for a node
    whose benchmark score is too small to hold it to any finite time (a node may upload any non-negative score)."""
    try:
        overhead = float(quote["overhead_seconds"])
        per_unit_reference = float(quote["reference_seconds_per_unit"])
        load = float(quote.get("load_seconds") or 0.0)
    except (KeyError, TypeError, ValueError):
        return None
    reference = conf.REFERENCE_BENCH_SCORE
    speed = (bench_score if bench_score and bench_score > 0 else reference) / reference
    if speed == 0:  # a subnormal score: nothing to divide by
        return None
    seconds = overhead + units * per_unit_reference / speed
    budget = max(conf.SLOWER_THAN_CALIBRATED_MIN_SECONDS, conf.SLOWER_THAN_CALIBRATED_FACTOR * seconds + load)
    return round(budget, 3) if math.isfinite(budget) else None


def tile_prices(*, price: int, rects: Sequence[Rect]) -> list[int]:
    """`price` shared between the tiles in proportion to their areas, summing to it exactly (largest remainder:
    the leftover micro-tokens go to the tiles whose exact share lost the most to rounding down, first tile first)."""
    areas = [w * h for _, _, w, h in rects]
    whole = sum(areas)
    shares = [price * area // whole for area in areas]
    by_loss = sorted(range(len(areas)), key=lambda i: (-(price * areas[i] % whole), i))
    for i in by_loss[: price - sum(shares)]:
        shares[i] += 1
    return shares


def _last_frame_done(frames: int, *, frame_seconds: Sequence[float], start: float) -> float:
    """When the last of `frames` identical frames finishes if each goes to the node that is free first."""
    free_at = [(start, i) for i in range(len(frame_seconds))]
    heapq.heapify(free_at)
    done = start
    for _ in range(frames):
        at, i = heapq.heappop(free_at)
        done = max(done, at + frame_seconds[i])
        heapq.heappush(free_at, (at + frame_seconds[i], i))
    return done


def job_seconds(
    *, frames: int, units: int, calibration: Calibration | None, idle_scores: Sequence[float]
) -> tuple[float, int, str]:
    """(estimated seconds for all frames, idle nodes counted, a note saying what the estimate assumes)."""
    cal = calibration or uncalibrated()
    scores = [s for s in idle_scores if s and s > 0]
    if not scores:
        seconds = cal.load_seconds + frames * cal.frame_seconds(units)
        return seconds, 0, "no idle capacity right now: estimated for one CPU node"
    per_node = [cal.frame_seconds(units, speed=cal.speed_of(score)) for score in scores]
    seconds = _last_frame_done(frames, frame_seconds=per_node, start=cal.load_seconds)
    plural = "s" if len(scores) != 1 else ""
    return seconds, len(scores), f"estimated with the {len(scores)} node{plural} idle right now"


def _pricing_note(*, calibrated: bool, reference_ms: int, units: int, priority: int, multiplier: int) -> str:
    seconds = f"{reference_ms / 1000:.3g}"
    if calibrated:
        why = (
            f"≈ {seconds} reference-seconds per frame: the scene's own calibration at inspection (timed renders "
            f"of this scene, scaled by benchmark to the reference machine)"
        )
    else:
        why = (
            f"≈ {seconds} reference-seconds per frame, estimated from pixel-samples ({units:,}) as if the scene "
            f"were as heavy as the benchmark scene: this scene has no calibration, so the price may be off"
        )
    if priority:
        why += f"; priority {priority} pays \N{MULTIPLICATION SIGN}{multiplier / BPS:.2f} the market rate"
    return why


def quote_for(
    *,
    frames: int,
    width: int,
    height: int,
    samples: int,
    calibration: Calibration | None,
    idle_scores: Sequence[float],
    tile_side: int = 1,
    priority: int = 0,
) -> Quote:
    """Price and time of `frames` frames; with `tile_side` > 1 each frame is a grid of tile_side² tiles, priced as
    the whole frame and timed as that many pieces of the largest tile's size."""
    units = work_units(width=width, height=height, samples=samples)
    cal = calibration or uncalibrated()
    reference_ms = cal.reference_ms(units)
    rects = tile_rects(width=width, height=height, side=tile_side)
    # The smallest tile's share of the price must reach the per-frame minimum.
    smallest = min(w * h for _, _, w, h in rects)
    price = price_per_frame(
        reference_ms, priority=priority, minimum=-(-conf.MIN_PRICE_PER_FRAME * width * height // smallest)
    )
    # Every tile is as large as the largest one: at most 1 px more per side, a slight over-estimate.
    piece_units = (
        units
        if tile_side == 1
        else work_units(width=max(r[2] for r in rects), height=max(r[3] for r in rects), samples=samples)
    )
    seconds, idle, note = job_seconds(
        frames=frames * len(rects), units=piece_units, calibration=calibration, idle_scores=idle_scores
    )
    multiplier = priority_multiplier_bps(priority)
    calibrated = calibration is not None
    reference_speed = conf.REFERENCE_BENCH_SCORE / (cal.bench_score or conf.CALIBRATION_BENCH_SCORE)
    quote = Quote(
        frames=frames,
        width=width,
        height=height,
        samples=samples,
        work_units_per_frame=units,
        reference_ms_per_frame=reference_ms,
        reference_seconds_per_frame=round(reference_ms / 1000, 3),
        rate_micro_per_reference_hour=conf.MARKET_RATE_MICRO_PER_REFERENCE_HOUR,
        priority=priority,
        priority_multiplier_bps=multiplier,
        pricing_basis="calibrated compute" if calibrated else "pixel-samples (no calibration)",
        pricing_note=_pricing_note(
            calibrated=calibrated, reference_ms=reference_ms, units=units, priority=priority, multiplier=multiplier
        ),
        price_per_frame=price,
        total=price * frames,
        seconds_per_frame=round(cal.frame_seconds(units), 3),
        load_seconds=round(cal.load_seconds, 3),
        estimated_seconds=round(seconds, 3),
        idle_nodes=idle,
        capacity_note=note,
        calibrated=calibrated,
        tiles=len(rects),
        tile_prices=tile_prices(price=price, rects=rects) if tile_side > 1 else [],
        overhead_seconds=round(cal.overhead_seconds, 4),
        reference_seconds_per_unit=cal.seconds_per_unit / reference_speed,
    )
    return quote
