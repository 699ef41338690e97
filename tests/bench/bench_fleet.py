"""The farm's periodic work with a large fleet online (issue 17): BENCH_NODES nodes (10,000; run it with 100,000
too) online, set up as bench_canaries sets them up (5 per provider, 3 canary scenes), and the beats their agents
send between two flushes gathered in Redis (nodes / pace x HEARTBEAT_FLUSH_SECONDS, each naming no lease, as idle
agents' beats do). Then each task of CELERY_BEAT_SCHEDULE once, in this process (its body, as a worker runs it),
the heartbeat flush with those beats first, and the farm snapshot (`/metrics`, the farm page): wall, CPU of this
process and of Postgres, and statements, the median of BENCH_REPEAT (3), the beats gathered again before each
flush. Prints the heartbeat pace the nodes online get.
BENCH_BUSY (0) is the share of the nodes rendering: each holds an active render lease of a frame of one queued job
(written in bulk), and its beats name it, so the flush extends its lease as the agent's beat does (each lease set
due for an extension before each flush) and the reaper looks through the active leases for overdue ones.
Run: `make bench BENCH=fleet` (env BENCH_NODES, BENCH_BUSY, BENCH_REPEAT); writes bench/results/fleet.json
(fleet_<N>[_busy<share>].json when BENCH_NODES is not 10,000 or BENCH_BUSY is set).
"""

import json
import os
import platform
import sys
import time
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ.setdefault("BENCH_NODES", "10000")

from tests.bench._writes import table_writes, table_writes_per, table_writes_print  # noqa: E402
from tests.bench.bench_canaries import NODES, measured, median_of, setup  # noqa: E402
from tests.bench.bench_history import quiet_work  # noqa: E402

REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
BUSY = float(os.environ.get("BENCH_BUSY", "0"))
FLUSH_SECONDS = float(os.environ.get("HEARTBEAT_FLUSH_SECONDS", "5"))


def busy_nodes_lease(share: float) -> int:
    """A `share` of the nodes rendering: a queued job with a frame for each, leased to it (frame leased, lease
    active, node busy), written in bulk as the matcher would have left them. Returns how many."""
    from django.db.models import OuterRef, Subquery
    from django.utils import timezone

    from marketplace.accounts.models import User
    from marketplace.dispatch.models import FrameLease
    from marketplace.jobs.models import Frame
    from marketplace.jobs.states import FrameState
    from marketplace.nodes.models import WorkerNode
    from tests.fixtures.market import make_queued_job
    from tests.fixtures.money import fund

    count = round(NODES * share)
    if not count:
        return 0
    artist = User.objects.create(username="bench-artist")
    fund(artist, 10**15)
    job = make_queued_job(artist, frames=count, price=1_000_000)
    nodes = list(WorkerNode.objects.order_by("pk").values_list("pk", flat=True)[:count])
    frames = job.frames.order_by("number").values_list("pk", flat=True)
    later = timezone.now() + timezone.timedelta(hours=1)  # alive all along, as the nodes' heartbeats are
    FrameLease.objects.bulk_create(
        (
            FrameLease(frame_id=f, node_id=n, kind="render", state="active", token_hash="x", expires_at=later)
            for n, f in zip(nodes, frames, strict=True)
        ),
        batch_size=5000,
    )
    Frame.objects.filter(job=job).update(state=FrameState.LEASED)
    active = FrameLease.objects.filter(node=OuterRef("pk"), state="active").values("frame_id")[:1]
    WorkerNode.objects.filter(pk__in=nodes).update(status=WorkerNode.Status.BUSY, current_frame=Subquery(active))
    return count


def beats_gather(count: int, round_number: int) -> int:
    """`count` nodes' beats waiting for the flush, as `dispatch.heartbeats.gather` keeps them: each later than the
    node's stored heartbeat (which setup put an hour ahead), so the flush writes every one. A busy node's beat names
    its lease, whose expiry is set to the beat's time first, so the flush extends it."""
    from datetime import timedelta

    from django.utils import timezone

    from marketplace.celery import internal_redis
    from marketplace.dispatch.heartbeats import BEATS_KEY
    from marketplace.dispatch.models import FrameLease
    from marketplace.nodes.models import WorkerNode

    at = timezone.now() + timedelta(hours=2 + round_number)
    FrameLease.objects.filter(state="active").update(expires_at=at, created_at=at - timedelta(minutes=1))
    leases = dict(FrameLease.objects.filter(state="active").values_list("node_id", "pk"))
    at_us = round(at.timestamp() * 1_000_000)
    ids = list(WorkerNode.objects.order_by("?").values_list("pk", flat=True)[:count])
    client = internal_redis()
    for start in range(0, len(ids), 10_000):
        chunk = ids[start : start + 10_000]
        client.hset(BEATS_KEY, mapping={str(pk): f"{at_us} {leases.get(pk, '')}" for pk in chunk})
    return len(ids)


def main() -> None:
    django.setup()
    from django.db import connection

    from marketplace.nodes.selectors import pace_remember
    from marketplace.nodes.services import heartbeat_pace_update

    if connection.vendor != "postgresql":
        sys.exit("bench_fleet needs Postgres: run `make bench BENCH=fleet`")
    t0 = time.perf_counter()
    setup()
    busy = busy_nodes_lease(BUSY)
    pace = heartbeat_pace_update()
    pace_remember(None)
    beats = round(NODES / pace.seconds * FLUSH_SECONDS)
    print(f"setup: {NODES} nodes online ({busy} busy) in {time.perf_counter() - t0:.0f} s; pace {pace.seconds} s")
    print(f"{'task':<40} {'wall ms':>9} {'cpu ms':>8} {'pg ms':>8} {'stmts':>6}")
    rows, flush_writes = {}, None
    for name, work in quiet_work().items():
        runs = []
        for i in range(REPEAT):
            flush = "heartbeat" in name and "flush" in name
            if flush:
                beats_gather(beats, i)
                before = table_writes()
            runs.append(measured(work))
            if flush:  # the last flush's writes: rows, HOT share and WAL per beat
                flush_writes = table_writes_per(before, table_writes(), beats)
        row = median_of([{k: v for k, v in r.items() if k != "changed"} for r in runs])
        rows[name] = row
        print(f"{name:<40} {row['wall_ms']:>9} {row['cpu_ms']:>8} {row['postgres_cpu_ms']:>8} {row['statements']:>6}")
    if flush_writes:
        table_writes_print(flush_writes, "beat")
    out = {
        "bench": "fleet",
        "machine": f"{platform.machine()} cores={os.cpu_count()}",
        "nodes": NODES,
        "busy": busy,
        "heartbeat_seconds": pace.seconds,
        "beats_per_flush": beats,
        "repeat": REPEAT,
        "tasks": rows,
        "flush_writes_per_beat": flush_writes,
    }
    suffix = ("" if NODES == 10_000 else f"_{NODES}") + (f"_busy{BUSY:g}" if BUSY else "")
    path = ROOT / "bench" / "results" / f"fleet{suffix}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
