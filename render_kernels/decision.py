"""The pass/fail rule for a render checked against a trusted reference render. All of it lives here.

Facts it is built on (Blender 5.0.1, Cycles CPU, same seed and settings):

* different thread counts give bit-identical float output;
* a border (crop) re-render matches the full frame exactly in float output (denoising off);
* 8-bit PNG output with dither differs by up to +-2 levels (the dither pattern is not the same);
* separate runs can differ in a handful of pixels.

Cheats it must catch: a tampered patch covering 3 % of the pixels, added noise (PSNR 38 dB,
SSIM 0.95), half the sample count (SSIM 0.96); tests add blur, half brightness, a blank frame and a
one-pixel shift.

Hence the rule counts pixels, not averages: averages (PSNR, mean error) hide a small tampered patch,
while honest differences are either tiny everywhere (dither) or large in a handful of pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # metrics.py imports this module for its defaults
    from .metrics import Metrics


@dataclass(frozen=True)
class Tolerances:
    """Thresholds of :func:`verdict`. Change a number here (or pass another instance) to tune.

    pixel_tol: 3/255. A pixel "differs" when its max-over-channels absolute error exceeds this.
        Honest 8-bit dither differences reach 2/255; 3/255 leaves one level of margin while float
        outputs of honest re-renders differ by 0.
    max_frac_over_tol: 0.002 (0.2 % of pixels, ~4100 px at 1080p). Room for "a handful" of
        run-to-run pixels with a wide margin, but 15x below the 3 % tampered-patch cheat; added
        noise at 38 dB pushes ~70 % of pixels over pixel_tol.
    gross_tol: 0.1 (~25 levels). An error this large is never dither; it is a firefly, a different
        object or an edited pixel.
    max_gross_pixels: 16. "A handful": how many grossly wrong pixels honest reruns may show. Absolute,
        not relative, so a small pasted logo fails even in a 4K frame whose area fraction is tiny.
    min_ssim: 0.98. Catches structured low-amplitude cheats (blur, fewer samples: SSIM 0.96, noise:
        0.95). Not 0.995: SSIM is very sensitive to faint noise on flat areas because the variance
        terms are compared with C2 = 9e-4; honest +-2-level dither on smooth, flat-shaded content
        measures 0.987-0.992, which 0.995 would reject.
    """

    pixel_tol: float = 3 / 255
    max_frac_over_tol: float = 0.002
    gross_tol: float = 0.1
    max_gross_pixels: int = 16
    min_ssim: float = 0.98


DEFAULT = Tolerances()

# Cycles on CPU, CUDA, OptiX and HIP runs the same kernels and sampler but not bit-identical arithmetic
# (fused multiply-adds, fast-math intrinsics, float ordering), so a path can diverge in a few pixels. Blender's
# own render tests accept that: CPU and GPU runs compare against the same reference images, and a test passes
# when at most 1 % of pixels differ by more than 0.016 (tests/python/modules/render_report.py: `idiff -fail
# 0.016 -failpercent 1`). A frame rendered on a GPU backend and re-rendered on another backend (the platform's
# CPU when no verifier has the same backend) is judged by that rule:
#   pixel_tol 0.016 (~4/255), max_frac_over_tol 1 %: Blender's numbers;
#   gross: Blender's rule has no separate count (any pixel over 0.016 counts in the 1 %), so only an error
#     above a whole unit (HDR values in EXR) is gross; 16 of those as in DEFAULT;
#   min_ssim 0.98 as in DEFAULT: diverging paths are isolated pixels, which barely move SSIM.
# What it gives up against DEFAULT: a tampered patch under 1 % of the crop passes. Not measured here (no GPU
# was lent); docs/verification.md says so.
CROSS_BACKEND = Tolerances(pixel_tol=0.016, max_frac_over_tol=0.01, gross_tol=1.0, max_gross_pixels=16, min_ssim=0.98)


def tolerances_for(*, candidate_device: str, verifier_device: str) -> tuple[str, Tolerances]:
    """("same-backend", DEFAULT) when both renders ran on one Cycles backend, else ("cross-backend", ...)."""
    if candidate_device.upper() == verifier_device.upper():
        return "same-backend", DEFAULT
    return "cross-backend", CROSS_BACKEND


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reasons: list[str] = field(default_factory=list)  # one line per failed rule; empty when passed


def verdict(metrics: Metrics, *, tolerances: Tolerances = DEFAULT) -> Verdict:
    """Apply the rule to metrics from :func:`render_kernels.compare`.

    The pixel counts in ``metrics`` were taken at ``metrics.pixel_tol``/``metrics.gross_tol``; they
    must equal the thresholds in ``tolerances`` (compare with ``tolerances=`` the same instance),
    otherwise ValueError, since counts at other thresholds cannot be derived after the fact.
    """
    if not (
        math.isclose(metrics.pixel_tol, tolerances.pixel_tol, rel_tol=1e-9)
        and math.isclose(metrics.gross_tol, tolerances.gross_tol, rel_tol=1e-9)
    ):
        raise ValueError(
            f"metrics were computed with pixel_tol={metrics.pixel_tol}, gross_tol={metrics.gross_tol} but "
            f"the tolerances use {tolerances.pixel_tol}, {tolerances.gross_tol}; rerun compare(..., "
            "tolerances=...) with the same Tolerances"
        )
    reasons: list[str] = []
    numbers = (metrics.frac_over_tol, metrics.ssim, metrics.max_abs_error, metrics.mean_abs_error)
    if not all(math.isfinite(x) for x in numbers):  # NaN compares False everywhere: fail explicitly
        reasons.append("metrics contain NaN/inf")
    if metrics.frac_over_tol > tolerances.max_frac_over_tol:
        reasons.append(
            f"{metrics.frac_over_tol:.3%} of pixels differ by more than {tolerances.pixel_tol * 255:.1f}/255 "
            f"(allowed {tolerances.max_frac_over_tol:.3%})"
        )
    if metrics.gross_pixels > tolerances.max_gross_pixels:
        reasons.append(
            f"{metrics.gross_pixels} pixels differ by more than {tolerances.gross_tol:.3f} "
            f"(allowed {tolerances.max_gross_pixels}); max error {metrics.max_abs_error:.3f}"
        )
    if metrics.ssim < tolerances.min_ssim:
        reasons.append(f"SSIM {metrics.ssim:.4f} below {tolerances.min_ssim}")
    return Verdict(passed=not reasons, reasons=reasons)
