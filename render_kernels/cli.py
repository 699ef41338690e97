"""Command line: ``python -m render_kernels compare CANDIDATE REFERENCE [--region X,Y,W,H] [--json]
[--heatmap OUT.png]``.

Exit codes: 0 verdict pass, 1 verdict fail, 2 bad input (missing/undecodable file, size or channel
mismatch, bad region, unusable backend). argparse usage errors also exit with 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .decision import verdict
from .image_io import ImageError, save_png
from .metrics import Metrics, compare, crop_pair
from .visual import diff_heatmap

EXIT_PASS, EXIT_FAIL, EXIT_BAD_INPUT = 0, 1, 2


def _parse_region(text: str) -> tuple[int, int, int, int]:
    try:
        parts = tuple(int(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(f"expected X,Y,W,H (four integers), got {text!r}")
    return parts


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m render_kernels", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("compare", help="compare a candidate render with a reference and print the verdict")
    p.add_argument("candidate", help="candidate image (PNG 8/16-bit or EXR)")
    p.add_argument("reference", help="reference image (PNG 8/16-bit or EXR)")
    p.add_argument(
        "--region",
        type=_parse_region,
        metavar="X,Y,W,H",
        help="pixel region, y from the TOP row; cut from both images, or only from the reference when "
        "the candidate already is W x H (border render)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--heatmap", metavar="OUT.png", help="write a per-pixel error heatmap PNG")
    p.add_argument(
        "--backend",
        choices=("auto", "numpy", "cuda"),
        default="auto",
        help="auto: CUDA when pycuda and a GPU work (unless RENDER_KERNELS_BACKEND=numpy), else numpy",
    )
    return parser


def _format_text(m: Metrics, passed: bool, reasons: list[str]) -> str:
    psnr = "inf" if m.psnr == float("inf") else f"{m.psnr:.2f}"
    h, w, c = m.shape
    lines = [
        f"compared        {w}x{h}x{c} ({m.pixels} pixels, {m.backend} backend)",
        f"max_abs_error   {m.max_abs_error:.6f} ({m.max_abs_error * 255:.2f}/255)",
        f"mean_abs_error  {m.mean_abs_error:.6f}",
        f"frac_over_tol   {m.frac_over_tol:.4%} ({m.over_tol_pixels} pixels > {m.pixel_tol * 255:.2f}/255)",
        f"gross_pixels    {m.gross_pixels} (> {m.gross_tol:.3f})",
        f"psnr            {psnr} dB",
        f"ssim            {m.ssim:.6f}",
        f"verdict         {'pass' if passed else 'fail'}",
    ]
    lines += [f"  - {r}" for r in reasons]
    return "\n".join(lines)


def _cmd_compare(args: argparse.Namespace) -> int:
    try:
        cand, ref = crop_pair(args.candidate, args.reference, args.region)
        metrics = compare(cand, ref, backend=args.backend)
        if args.heatmap:
            save_png(args.heatmap, diff_heatmap(cand, ref))
    except (OSError, ImageError, ValueError, RuntimeError) as exc:  # FileNotFoundError is an OSError
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    v = verdict(metrics)
    if args.json:
        doc = {
            "candidate": args.candidate,
            "reference": args.reference,
            "region": list(args.region) if args.region else None,
            "metrics": metrics.to_dict(),
            "verdict": "pass" if v.passed else "fail",
            "passed": v.passed,
            "reasons": v.reasons,
            "heatmap": args.heatmap,
        }
        print(json.dumps(doc, allow_nan=False))
    else:
        print(_format_text(metrics, v.passed, v.reasons))
    return EXIT_PASS if v.passed else EXIT_FAIL


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "compare":
        return _cmd_compare(args)
    return EXIT_BAD_INPUT  # unreachable: argparse enforces the sub-command
