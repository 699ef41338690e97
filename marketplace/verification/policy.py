"""Adaptive replication policy: how often a node's frames are checked, from its history.

A new node is checked on every frame until it has TRUSTED_AFTER consecutive passes; then the rate halves
every HALVE_EVERY further passes down to FLOOR. With k crops of CROP_FRACTION of the frame each, checking a
frame costs about k * CROP_FRACTION of a render, so FLOOR * k * CROP_FRACTION bounds steady-state
verification compute (0.1 * 2 * 0.04 = 0.8 % of render compute, under the 5 % budget even with canaries).
"""
TRUSTED_AFTER = 10
HALVE_EVERY = 10
FLOOR = 0.10
BAN_AFTER_FAILURES = 3  # failures within the recent window ban the node from the market
CROPS_PER_CHECK = 2
CROP_FRACTION = 0.04


def check_rate(*, consecutive_passes: int) -> float:
    if consecutive_passes < TRUSTED_AFTER:
        return 1.0
    halvings = 1 + (consecutive_passes - TRUSTED_AFTER) // HALVE_EVERY
    return max(FLOOR, 0.5**halvings)
