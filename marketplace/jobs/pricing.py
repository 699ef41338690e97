"""Quote maths: prices in integer micro-tokens, time estimates in seconds. Pure functions, no database.

A frame's work is its pixels x samples ("work units"). Its price is the market rate per million units,
rounded up to a whole micro-token, never below a minimum. Its render time is a per-frame overhead plus
units x seconds-per-unit, both from the scene's calibration render; with idle nodes, their benchmark
speeds (units per second on the benchmark scene) replace the calibration machine's speed.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from marketplace.jobs import conf

MEGA = 1_000_000
# Used only when a scene carries no calibration: about what one 2-core CPU does on the demo scene.
UNCALIBRATED_UNITS_PER_SECOND = 500_000.0


@dataclass(frozen=True)
class Calibration:
    """What one reduced-size render of the scene measured on the calibration machine."""

    seconds: float
    units: int
    overhead_seconds: float
    device: str = "CPU"
    # Units per second of the benchmark scene on the calibration machine, when it was measured: it tells
    # how much heavier than the benchmark this scene is, so node benchmark scores can be scaled by it.
    bench_score: float | None = None

    @property
    def seconds_per_unit(self) -> float:
        return max(self.seconds - self.overhead_seconds, 0.0) / self.units

    @property
    def complexity(self) -> float:
        """Scene time per unit relative to the benchmark scene (1.0 when unknown)."""
        if not self.bench_score or self.seconds_per_unit <= 0:
            return 1.0
        return self.seconds_per_unit * self.bench_score


@dataclass(frozen=True)
class Quote:
    frames: int
    width: int
    height: int
    samples: int
    work_units_per_frame: int
    rate_micro_per_megasample: int
    price_per_frame: int
    total: int
    seconds_per_frame: float  # on the calibration machine (or a typical CPU when uncalibrated)
    estimated_seconds: float  # the whole job with the capacity below
    idle_nodes: int
    capacity_note: str
    calibrated: bool

    def as_json(self) -> dict:
        return asdict(self)


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
    overhead = float(cal.get("overhead_seconds", conf.FRAME_OVERHEAD_SECONDS))
    bench = cal.get("bench_score")
    return Calibration(seconds=seconds, units=units, overhead_seconds=min(max(overhead, 0.0), seconds),
                       device=str(cal.get("device") or "CPU"), bench_score=float(bench) if bench else None)


def work_units(*, width: int, height: int, samples: int) -> int:
    return width * height * samples


def price_per_frame(units: int, *, rate: int | None = None, minimum: int | None = None) -> int:
    """ceil(units x rate / 10^6) micro-tokens, at least `minimum`; integers only, so no float rounding."""
    rate = conf.MARKET_RATE_MICRO_PER_MEGASAMPLE if rate is None else rate
    minimum = conf.MIN_PRICE_PER_FRAME if minimum is None else minimum
    return max(minimum, -(-units * rate // MEGA))


def frame_seconds(units: int, calibration: Calibration | None) -> float:
    """One frame's render time on the calibration machine."""
    if calibration is None:
        return conf.FRAME_OVERHEAD_SECONDS + units / UNCALIBRATED_UNITS_PER_SECOND
    return calibration.overhead_seconds + units * calibration.seconds_per_unit


def job_seconds(*, frames: int, units: int, calibration: Calibration | None,
                idle_scores: Sequence[float]) -> tuple[float, int, str]:
    """(estimated seconds for all frames, idle nodes counted, a note saying what the estimate assumes)."""
    scores = [s for s in idle_scores if s and s > 0]
    if not scores:
        seconds = frames * frame_seconds(units, calibration)
        return seconds, 0, "no idle capacity right now: estimated for one CPU node"
    overhead = calibration.overhead_seconds if calibration else conf.FRAME_OVERHEAD_SECONDS
    complexity = calibration.complexity if calibration else 1.0
    per_node = [overhead + units * complexity / score for score in scores]
    frames_per_second = sum(1.0 / s for s in per_node)
    # Frames are whole: the job takes at least one frame on the fastest node.
    seconds = max(frames / frames_per_second, min(per_node))
    plural = "s" if len(scores) != 1 else ""
    return seconds, len(scores), f"estimated with the {len(scores)} node{plural} idle right now"


def quote_for(*, frames: int, width: int, height: int, samples: int, calibration: Calibration | None,
              idle_scores: Sequence[float]) -> Quote:
    units = work_units(width=width, height=height, samples=samples)
    price = price_per_frame(units)
    seconds, idle, note = job_seconds(frames=frames, units=units, calibration=calibration, idle_scores=idle_scores)
    return Quote(frames=frames, width=width, height=height, samples=samples, work_units_per_frame=units,
                 rate_micro_per_megasample=conf.MARKET_RATE_MICRO_PER_MEGASAMPLE, price_per_frame=price,
                 total=price * frames, seconds_per_frame=round(frame_seconds(units, calibration), 3),
                 estimated_seconds=round(seconds, 3), idle_nodes=idle, capacity_note=note,
                 calibrated=calibration is not None)
