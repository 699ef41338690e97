from django.conf import settings

# The shortest heartbeat pace, a small farm's; the pace grows in steps of it (`heartbeat_pace_update`).
HEARTBEAT_SECONDS = getattr(settings, "NODE_HEARTBEAT_SECONDS", 10)
# The longest: past it a dead node would hold its frames and count as online too long.
HEARTBEAT_MAX_SECONDS = getattr(settings, "NODE_HEARTBEAT_MAX_SECONDS", 60)
# The farm's beats per second the web tier is sized for: 500 is about one web core (2.2 ms of CPU per heartbeat
# call, bench_agent_api). 5,000 nodes beat every 10 s; 10,000 every 20; 30,000 and more every 60.
HEARTBEATS_PER_SECOND = getattr(settings, "NODE_HEARTBEATS_PER_SECOND", 500)
# A node that has not sent a heartbeat for this long is marked offline by the reaper (at least: see SILENT_AFTER_BEATS).
OFFLINE_AFTER_SECONDS = getattr(settings, "NODE_OFFLINE_AFTER_SECONDS", 60)
# At a longer pace, a node is silent after this many of its beats are missed (and a lease lasts as long).
SILENT_AFTER_BEATS = 3
# Per-node Redis ACL users on the agent broker (off only for brokers without ACL support).
AGENT_BROKER_ACL = getattr(settings, "AGENT_BROKER_ACL", True)

# Trust is earned: a node is trusted after this many checks passed in a row. Verification builds its check rate
# on it (verification.policy, which says why 10); it lives here because who counts as trusted is read by this
# app too (a provider's untrusted nodes are limited) and this app must not import verification.
TRUSTED_AFTER = 10

# A provider's new node starts untrusted (check rate 1, every frame checked) and a provider may hold at most
# VERIFICATION_MAX_UNTRUSTED_NODES untrusted nodes at a time; another slot opens when one of them earns trust
# (TRUSTED_AFTER passes in a row) or is deleted. Default 3: enough for an honest owner to register a small
# rig or a few machines at once, while a sybil farm of hundreds of nodes, each checked on every frame and each
# a chance to be caught, must earn trust three at a time (30 checked frames per slot cycle).
MAX_UNTRUSTED_NODES = 3


def max_untrusted_nodes() -> int:
    """Read when used, so a deployment or a test can change it."""
    return int(getattr(settings, "VERIFICATION_MAX_UNTRUSTED_NODES", MAX_UNTRUSTED_NODES))
