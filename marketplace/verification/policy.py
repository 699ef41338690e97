"""Adaptive replication policy (BOINC-style): how often a node's frames are checked, and how.

A new node is checked on every frame until it has TRUSTED_AFTER consecutive passes; then the rate halves
every HALVE_EVERY further passes down to FLOOR. One failed check (crop or canary) resets the streak, so the
node is checked on every frame again; BAN_AFTER_FAILURES failed checks ban it from the market.

Compute budget, measured (tests/bench/bench_verify.py, section verification_overhead; docs/verification.md):
on the demo job (320x180, 32 samples, Cycles CPU, scene loaded) a full frame renders in 1.04 s and one
check (CROPS_PER_CHECK = 8 crops of CROP_FRACTION = 2 %, ~1.6 % each on average once clipped at the
edges) costs 0.195 s of crop renders plus 0.006 s of comparison: 19.4 % of a render (a border render
costs its area plus ~8 ms of scene sync). A canary costs one whole render. At the steady FLOOR rate:

    FLOOR * (check cost + CANARY_SHARE * 1) = 0.10 * (0.194 + 0.10) = 2.9 % of render compute

under the 5 % budget. Not counted: a verifier node that must first download and load the scene (0.37 s
for the demo scene, paid once per verifier and scene while it keeps the scene loaded), and the ~150
frames a node renders before it reaches the floor (rate 1 for 10 frames, then 0.5, 0.25, 0.125 for 10
passes each), during which a new node costs up to 29 %: the price of trusting nobody by default (BOINC
replicates every result of a new host).

Eight small stratified crops rather than a few large ones: for the same pixels, more crops spread over a
3x3 grid of the frame catch a result that is wrong in one region (a half-missing frame, a cheat that
renders only the middle correctly) in every trial of the cheats bench.
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
