"""Adaptive replication policy (BOINC-style): how often a node's frames are checked, and how.

A new node is checked on every frame until it has TRUSTED_AFTER consecutive passes; then the rate halves
every HALVE_EVERY further passes down to FLOOR. One failed check (crop or canary) resets the streak, so the
node is checked on every frame again; BAN_AFTER_FAILURES failed checks ban it from the market.

Compute budget, measured (tests/bench/bench_verify.py, section verification_overhead; docs/verification.md):
on the demo job (320x180, 32 samples, Cycles CPU, scene loaded) a crop of CROP_FRACTION = 4 % of the frame
renders in 4.6 % of a full frame's time (a border render costs its area plus ~8 ms of scene sync). A checked
frame costs CROPS_PER_CHECK crops, ~4 x 4.6 % = 18.5 % of a render, and a canary costs one whole render.
At the steady FLOOR rate:

    FLOOR * (CROPS_PER_CHECK * crop cost + CANARY_SHARE * 1) = 0.10 * (0.185 + 0.10) = 2.9 % of render compute

which keeps verification under the 5 % budget with room for the verifier's scene download/load, which is
paid once per (verifier, scene) and is not counted above. Until a node is trusted it costs ~28 %; that is
the price of trusting nobody by default (BOINC replicates every result of a new host).
"""
TRUSTED_AFTER = 10
HALVE_EVERY = 10
FLOOR = 0.10
BAN_AFTER_FAILURES = 3  # failed checks in the node's life, crop and canary alike
CROPS_PER_CHECK = 8
CROP_FRACTION = 0.02  # of the frame's area, per crop
CANARY_SHARE = 0.10  # a node's next frame is a canary with probability check_rate * CANARY_SHARE
# A frame that fails verification on this many different nodes is failed for good: more likely the scene
# does not render reproducibly than that every node cheated.
FRAME_FAILED_CHECKS = 3


def check_rate(*, consecutive_passes: int) -> float:
    if consecutive_passes < TRUSTED_AFTER:
        return 1.0
    halvings = 1 + (consecutive_passes - TRUSTED_AFTER) // HALVE_EVERY
    return max(FLOOR, 0.5**halvings)


def canary_rate(*, check_rate: float) -> float:
    return check_rate * CANARY_SHARE
