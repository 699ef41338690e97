"""Dispatch throughput: 1,000 simulated nodes on Postgres + Redis, each with a fake renderer that reports
at once. Measures frames matched → leased → reported → settled per second, and lease latency (one
`lease_create_for_node` call: pick, lock, lease, commit, deliver to the node's Redis queue).

Each of W processes plays the marketplace for a slice of the nodes: it leases a frame to a node, the
node's fake agent takes the message from its own queue, stores a tiny PNG and reports through the same
service the API calls, and the process runs the `verification.frame_rendered` task inline (what a Celery worker would
do). Verification is switched to "no check" here so that this bench measures dispatch and settlement only;
verification cost is measured in bench_verify. The simulated nodes heartbeat as agents do (every
NODE_HEARTBEAT_SECONDS, as one UPDATE per process), so a slow run never loses its nodes to the offline
threshold; a run that leaves any frame unsettled exits non-zero. Run: `make bench BENCH=dispatch`.
"""

import io
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ["CELERY_TASK_ALWAYS_EAGER"] = "0"  # tasks go to Redis like in production; we run them inline
NODES = int(os.environ.get("BENCH_NODES", "1000"))
FRAMES = int(os.environ.get("BENCH_FRAMES", "3000"))
WORKERS = int(os.environ.get("BENCH_WORKERS", "3"))


def setup() -> list[int]:
    from django.core.management import call_command

    from marketplace.accounts.models import User
    from marketplace.nodes.models import WorkerNode
    from tests.fixtures.market import make_node, make_queued_job
    from tests.fixtures.money import fund

    call_command("migrate", verbosity=0)
    provider = User.objects.create(username="bench-provider", role=User.Role.PROVIDER)
    artists = [User.objects.create(username=f"bench-artist{i}") for i in range(5)]
    for i, artist in enumerate(artists):
        fund(artist, 10**15)
        make_queued_job(artist, frames=FRAMES // len(artists), price=1_000_000, priority=i % 2)
    # Steady trust with no sampled checks: this bench isolates dispatch + settlement.
    node_ids = [make_node(provider, name=f"sim{i}", unchecked=True)[0].pk for i in range(NODES)]
    WorkerNode.objects.update(last_heartbeat=django.utils.timezone.now())
    return node_ids


def worker(node_ids: list[int], out: mp.Queue) -> None:
    django.setup()
    import redis
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    from marketplace import blobs
    from marketplace.dispatch import queues, services
    from marketplace.jobs.models import Frame
    from marketplace.jobs.states import FrameState
    from marketplace.nodes import conf as node_conf
    from marketplace.nodes.models import WorkerNode
    from marketplace.verification import services as verification
    from tests.fixtures.market import png_bytes

    r = redis.Redis.from_url(settings.AGENT_BROKER_URL)
    png = png_bytes(32, 24)
    statements = [0]

    def count(execute, sql, params, many, context):
        statements[0] += 1
        return execute(sql, params, many, context)

    def heartbeat() -> float:
        WorkerNode.objects.filter(pk__in=node_ids).update(last_heartbeat=timezone.now())
        return time.monotonic()

    beat_every = node_conf.HEARTBEAT_SECONDS
    last_beat = heartbeat()
    nodes = {n.pk: n for n in WorkerNode.objects.filter(pk__in=node_ids)}
    latencies, settled, t_start = [], 0, time.perf_counter()
    timing = {"lease": 0.0, "report": 0.0, "settle": 0.0}
    idle = list(node_ids)
    retries = 20  # SKIP LOCKED hides frames other processes are leasing: look again before giving up
    connection.execute_wrappers.append(count)
    while idle:
        progressed = False
        for node_id in idle:
            if time.monotonic() - last_beat >= beat_every:
                last_beat = heartbeat()
            t0 = time.perf_counter()
            delivery = services.lease_create_for_node(node_id=node_id)
            t1 = time.perf_counter()
            if delivery is None:
                continue
            progressed = True
            latencies.append(t1 - t0)
            timing["lease"] += t1 - t0
            message = json.loads(r.rpop(queues.queue_key(node_id)))
            lease = services.FrameLease.objects.only("result_key", "frame_id").get(pk=message["lease"])
            blobs.blob_put(key=lease.result_key, fileobj=io.BytesIO(png))
            t2 = time.perf_counter()
            services.lease_report(
                node=nodes[node_id], lease_id=message["lease"], token=message["token"], ok=True, stats={"seconds": 0.01}
            )
            t3 = time.perf_counter()
            verification.frame_rendered(frame_id=lease.frame_id)
            timing["report"] += t3 - t2
            timing["settle"] += time.perf_counter() - t3
            settled += 1
        if not progressed:
            retries -= 1
            if retries == 0 or not Frame.objects.filter(state=FrameState.QUEUED).exists():
                break
            time.sleep(0.05)
    connection.execute_wrappers.remove(count)
    out.put(
        {
            "latencies": latencies,
            "settled": settled,
            "seconds": time.perf_counter() - t_start,
            "timing": timing,
            "statements": statements[0],
        }
    )


def main() -> None:
    django.setup()
    from django.db import connection, connections
    from django.db.models import Count

    from marketplace.jobs.models import Frame
    from marketplace.ledger import selectors
    from marketplace.ledger.models import LedgerTransaction

    if connection.vendor != "postgresql":
        sys.exit("bench_dispatch needs Postgres: run `make bench BENCH=dispatch`")
    t = time.perf_counter()
    node_ids = setup()
    print(f"setup: {NODES} nodes, {FRAMES} frames in {time.perf_counter() - t:.1f}s", flush=True)
    connections.close_all()
    out: mp.Queue = mp.Queue()
    slices = [node_ids[i::WORKERS] for i in range(WORKERS)]
    start = time.perf_counter()
    procs = [mp.Process(target=worker, args=(s, out)) for s in slices]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - start
    latencies = sorted(x for r in results for x in r["latencies"])
    settled_db = Frame.objects.filter(state="settled").count()
    unsettled = dict(Frame.objects.exclude(state="settled").values_list("state").annotate(n=Count("pk")))
    timing = {k: sum(r["timing"][k] for r in results) for k in ("lease", "report", "settle")}
    busy = sum(timing.values())
    row = {
        "nodes": NODES,
        "frames": FRAMES,
        "processes": WORKERS,
        "seconds": round(elapsed, 2),
        "frames_settled": settled_db,
        "frames_not_settled": unsettled,
        "frames_per_s": round(settled_db / elapsed, 1),
        "statements_per_frame": round(sum(r["statements"] for r in results) / max(settled_db, 1), 1),
        "lease_p50_ms": round(statistics.median(latencies) * 1000, 2),
        "lease_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
        "time_share": {k: round(v / busy, 3) for k, v in timing.items()},
        "ledger_total": selectors.ledger_total(),
        "drifting_accounts": len(selectors.ledger_drift()),
        # every settled frame has exactly one settlement transaction
        "settlements_minus_settled_frames": LedgerTransaction.objects.filter(
            idempotency_key__startswith="settle:frame:"
        ).count()
        - settled_db,
    }
    print(
        f"{'nodes':>6} {'frames':>7} {'procs':>5} {'settled':>8} {'frames/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'stmts/frame':>11}"
    )
    print(
        f"{NODES:>6} {FRAMES:>7} {WORKERS:>5} {settled_db:>8} {row['frames_per_s']:>9} {row['lease_p50_ms']:>7} "
        f"{row['lease_p99_ms']:>7} {row['statements_per_frame']:>11}"
    )
    print(
        "time share (lease / report / settle):",
        row["time_share"],
        " ledger sum:",
        row["ledger_total"],
        " drift:",
        row["drifting_accounts"],
        " not settled:",
        unsettled,
    )
    path = ROOT / "bench" / "results" / "dispatch.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"bench": "dispatch", "machine": f"{platform.machine()} cores={os.cpu_count()}", **row}, indent=2)
        + "\n"
    )
    print(f"wrote {path.relative_to(ROOT)}")
    if unsettled:
        sys.exit(f"FAILED RUN: {sum(unsettled.values())} frames not settled: {unsettled}")


if __name__ == "__main__":
    main()
