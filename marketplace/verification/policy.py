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

from django.db.models import Count, QuerySet

from marketplace.dispatch.conf import ABANDONS_PER_JOB
from marketplace.dispatch.models import FrameLease
from marketplace.nodes.conf import TRUSTED_AFTER
from marketplace.nodes.models import WorkerNode
from marketplace.nodes.selectors import available_nodes

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


# --- sybils, hoarding and collusion ------------------------------------------------------------------
#
# The rules above make one node earn trust. These make it expensive to get around them with many nodes, many
# accounts, or leases that are taken and never rendered. Settings (Django settings, read when used, so a
# deployment or a test can change them) are named where they exist; the other numbers are fixed here.

# A lease that expires (the agent went silent) or is released (the agent gave it back) is an abandoned lease;
# after dispatch.conf.ABANDONS_PER_JOB of one job the node gets no more of that job's frames (dispatch's rule).
# Each abandoned lease also costs the node HALVE_EVERY consecutive passes: one halving of its check rate
# is undone (a node at the 10 % floor goes back to 20 % for ten passes), so hoarding buys more checks. It is
# not a failed check and never bans: a crash is not a cheat.
ABANDON_PASSES_LOST = HALVE_EVERY


def after_abandon(*, consecutive_passes: int) -> int:
    """The node's streak after one abandoned lease."""
    return max(0, consecutive_passes - ABANDON_PASSES_LOST)


# Who may verify. A crop of a result is re-rendered by a node that
# - can take work now (`nodes.selectors.available_nodes`: idle, heard from, not paused, not banned, no lease);
# - belongs to ANOTHER provider than the node whose result is checked: nobody verifies their own work;
# - has the job's Blender series and the candidate's Cycles backend, so the strict same-backend comparison
#   applies (crops.py; across backends only the platform verifies, with the looser rule);
# - has not failed a check without earning trust back since (TRUSTED_AFTER passes in a row): a node caught
#   once does not judge others. A new node that never failed may verify: a match it vouches for is audited
#   (AUDIT_SHARE) and a mismatch goes to the platform, so its verdict alone never fails or passes a frame;
# - has not abandoned ABANDONS_PER_JOB leases of the job (it gets none of the job's work, crops included).
# When none is eligible the platform re-renders the crop (verification.services).


def verifiers_for(*, job_id: int, blender_series: str, device: str, candidate_owner_id: int) -> QuerySet[WorkerNode]:
    """The nodes that may re-render a crop of a result of job `job_id` rendered by `candidate_owner_id`'s node
    on Cycles backend `device`: the rule above, used wherever a verify lease picks a node."""
    abandoned = (
        FrameLease.objects.filter(frame__job_id=job_id, state__in=(FrameLease.State.EXPIRED, FrameLease.State.RELEASED))
        .values("node_id")
        .annotate(n=Count("id"))
        .filter(n__gte=ABANDONS_PER_JOB)
        .values("node_id")
    )
    return (
        available_nodes()
        .exclude(owner_id=candidate_owner_id)
        .filter(blender_series__contains=f",{blender_series},", device_type=device)
        .exclude(trust__checks_failed__gt=0, trust__consecutive_passes__lt=TRUSTED_AFTER)
        .exclude(pk__in=abandoned)
    )


def is_trusted(*, consecutive_passes: int) -> bool:
    """Trust is earned: TRUSTED_AFTER checks passed in a row (the check rate is 1 until then)."""
    return consecutive_passes >= TRUSTED_AFTER


# A ban (BAN_AFTER_FAILURES failed checks) is the provider account's (`User.banned_at`), not the node's: its
# other nodes and any node it registers later get no work, so a cheat cannot start again with a new node token.
# (An admin may also ban one node; `nodes.selectors.node_banned_q` is where either is read.)
#
# A provider's new node starts untrusted and a provider may hold at most VERIFICATION_MAX_UNTRUSTED_NODES of
# them at a time (`max_untrusted_nodes`, defined with TRUSTED_AFTER in nodes.conf, which says why 3).


# Collusion: two accounts of one cheat verify each other's crops and both say "match". A crop that another
# provider's node verified as matching is therefore re-rendered by the platform as well, with probability
# VERIFICATION_AUDIT_SHARE (CSPRNG, decided after the node's report, so nobody can tell an audited crop).
# Default 10 %: every crop a colluding node vouches for is audited with probability 0.1, so a pair escapes
# with probability 0.9^n after n vouched crops: 35 % after 10, under 5 % after 29 (under four checks if the
# accomplice verified all CROPS_PER_CHECK = 8 crops of each). A cheat's crops that went to the platform or to
# an honest node catch it anyway. The cost: the platform re-renders 10 % of node-verified crops, at most
# 0.10 x 19.4 % = 1.9 % of a render per checked frame (check cost measured above), 0.2 % at the FLOOR rate.
# A verifier caught agreeing with a cheat is failed like a cheat: a failed check, towards its ban.
AUDIT_SHARE = 0.10


def audit_share() -> float:
    from django.conf import settings

    return float(getattr(settings, "VERIFICATION_AUDIT_SHARE", AUDIT_SHARE))


# Canaries must not be told apart from artist work. A canary job copies the shape of an artist job drawn at
# random from the CANARY_TEMPLATE_JOBS most recent ones (seed, .blend file name, resolution, samples, frame
# numbers, format): 200 spreads the draw over many artists while following the market as it changes.
CANARY_TEMPLATE_JOBS = 200
# The platform renders every canary frame whole, once, on its own CPU, so only artist jobs of at most this many
# million pixel-samples per frame are copied (VERIFICATION_CANARY_MAX_MEGASAMPLES). Default 100: about a
# minute per frame on the 2-core calibration CPU (1.7 M pixel-samples/s, jobs.conf CALIBRATION_BENCH_SCORE), so
# a 6-frame canary costs the platform minutes, not hours. Larger jobs are never imitated: see README (Security).
CANARY_MAX_MEGASAMPLES = 100


def canary_max_megasamples() -> int:
    from django.conf import settings

    return int(getattr(settings, "VERIFICATION_CANARY_MAX_MEGASAMPLES", CANARY_MAX_MEGASAMPLES))
