"""How the first statement of a node's round (`dispatch.batch._node_round_read`: the node's lock and its pool's
read, what every next lease runs) grows with the farm: its time with 0 to BENCH_POOL_LEASED frames rendering,
the same queue each time.

The ranking orders the artists by their frames rendering now (`busy`). Until session 13 it counted them on every
call, reading every leased frame, so it grew with the number of busy nodes; now it reads each artist's kept count
(`jobs.models.LeasedCount`, a few rows), while the rest reads only each fitting job's first frames. The price of
the count is paid where frames are written: the bench ends by timing the count's triggers within one-frame writes
(`trigger_us`, EXPLAIN ANALYZE; BENCH_POOL_TRIGGER_WRITES each).

BENCH_POOL_ARTISTS artists each have a job of 200 queued frames, the same at every step, and a job whose frames
become busy, spread evenly over the artists. Each step marks more of those frames leased (their state is all the
statement reads; no lease rows are needed), ANALYZEs, then times the statement BENCH_POOL_CALLS times for one
node, each in a transaction rolled back (it locks the frame it picks).
BENCH_POOL_EXPLAIN=1 prints Postgres' plan of each step's last call (EXPLAIN ANALYZE). Prints a table; writes
bench/results/pool.json.
Run: `make bench BENCH=pool` (env BENCH_POOL_LEASED, BENCH_POOL_ARTISTS, BENCH_POOL_CALLS, BENCH_POOL_EXPLAIN,
BENCH_POOL_TRIGGER_WRITES).
"""

import json
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
STEPS = [int(n) for n in os.environ.get("BENCH_POOL_LEASED", "0,1000,10000,50000,100000").split(",")]
ARTISTS = int(os.environ.get("BENCH_POOL_ARTISTS", "20"))
CALLS = int(os.environ.get("BENCH_POOL_CALLS", "200"))
QUEUED_PER_ARTIST = 200  # what stays queued at every step
# Postgres' plan choice for the statement: "auto" (its own), "force_generic_plan" (what a prepared statement
# gets once Postgres finds its generic plan no dearer: the values are then unknown to the plan) or
# "force_custom_plan".
PLAN = os.environ.get("BENCH_POOL_PLAN", "auto")
BIG_JOB = int(os.environ.get("BENCH_POOL_BIG_JOB", "0"))  # frames of one more job, all queued (a big upload)
HISTORY = int(os.environ.get("BENCH_POOL_HISTORY", "0"))  # settled frames ahead of each artist's queued ones
TRIGGER_WRITES = int(os.environ.get("BENCH_POOL_TRIGGER_WRITES", "2000"))


def explain(connection, node) -> None:
    from django.db import transaction

    from marketplace.dispatch import batch

    captured = []

    def capture(execute, sql, params, many, context):
        captured.append((sql, params))
        return execute(sql, params, many, context)

    with transaction.atomic(), connection.execute_wrapper(capture):
        batch._node_round_read(node, None)
        transaction.set_rollback(True)
    with transaction.atomic(), connection.cursor() as cur:
        sql, params = captured[-1]
        cur.execute("EXPLAIN (ANALYZE, TIMING ON) " + sql, params)
        print("\n".join("    " + row[0] for row in cur.fetchall()))
        transaction.set_rollback(True)


def trigger_cost(connection, job) -> dict:
    """What the kept count's triggers (jobs migration 0008) add to a frame's write, as Postgres times them
    (EXPLAIN ANALYZE): p50 µs of the triggers and of the whole statement over TRIGGER_WRITES one-frame writes,
    each committed (a lease, its requeue, a write that leaves the state as it is)."""
    from django.db import transaction

    from marketplace.jobs.models import Frame
    from marketplace.jobs.states import FrameState

    done = Frame.objects.filter(job=job, state=FrameState.SETTLED).order_by("pk")
    ids = list(done.values_list("pk", flat=True)[:TRIGGER_WRITES])
    frames = Frame._meta.db_table
    writes = {
        "lease": f"UPDATE {frames} SET state = 'leased' WHERE id = %s AND state = 'settled'",
        "requeue": f"UPDATE {frames} SET state = 'settled' WHERE id = %s AND state = 'leased'",
        "other": f"UPDATE {frames} SET updated_at = now() WHERE id = %s",
    }
    found = {}
    # One untimed lease and requeue of each frame first: the first writes after the steps' bulk ones took the
    # triggers 3-6x longer here, the later ones not (cause not established; plans the function kept from the
    # bulk statements are the likely one).
    with connection.cursor() as cur:
        for sql in (writes["lease"], writes["requeue"]):
            for pk in ids:
                with transaction.atomic():
                    cur.execute(sql, [pk])
    for name, sql in writes.items():
        trigger, statement = [], []
        with connection.cursor() as cur:
            for pk in ids:
                with transaction.atomic():
                    cur.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", [pk])
                    plan = cur.fetchone()[0][0]
                trigger.append(sum(t["Time"] for t in plan.get("Triggers", [])) * 1000)
                statement.append(plan["Execution Time"] * 1000)
        found[name] = {
            "trigger_p50_us": round(statistics.median(trigger), 1),
            "statement_p50_us": round(statistics.median(statement), 1),
        }
    return found


def main() -> None:
    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone

    from marketplace.accounts.models import User
    from marketplace.dispatch import batch
    from marketplace.jobs.models import Frame
    from marketplace.jobs.states import FrameState
    from marketplace.nodes.models import WorkerNode
    from tests.fixtures.market import make_node, make_queued_job
    from tests.fixtures.money import fund

    if connection.vendor != "postgresql":
        sys.exit("bench_pool needs Postgres: run `make bench BENCH=pool`")
    call_command("migrate", verbosity=0)
    busy_jobs = []
    for i in range(ARTISTS):
        artist = User.objects.create(username=f"pool-artist{i}")
        fund(artist, 10**15)
        queued = make_queued_job(artist, frames=HISTORY + QUEUED_PER_ARTIST, price=1_000_000, priority=0)
        Frame.objects.filter(job=queued, number__lt=queued.frame_start + HISTORY).update(state=FrameState.SETTLED)
        busy_jobs.append(make_queued_job(artist, frames=max(STEPS) // ARTISTS + 1, price=1_000_000))
    if BIG_JOB:
        make_queued_job(User.objects.get(username="pool-artist0"), frames=BIG_JOB, price=1_000_000, priority=0)
    # Done frames until a step makes them busy: not in the queue, not counted as busy.
    Frame.objects.filter(job__in=busy_jobs).update(state=FrameState.SETTLED)
    provider = User.objects.create(username="pool-provider", role=User.Role.PROVIDER)
    node, _ = make_node(provider, name="pool-node", unchecked=True)
    rows = []
    if PLAN != "auto":
        with connection.cursor() as cur:
            cur.execute(f"SET plan_cache_mode = {PLAN}")
    for leased in STEPS:
        # The first frames of each artist's busy job, spread evenly: the artists stay about equally busy.
        for n, job in enumerate(busy_jobs):
            share = leased // ARTISTS + (1 if n < leased % ARTISTS else 0)
            Frame.objects.filter(job=job, number__lte=share).update(state=FrameState.LEASED)
        with connection.cursor() as cur:
            cur.execute("ANALYZE")
        WorkerNode.objects.filter(pk=node.pk).update(last_heartbeat=timezone.now())  # as its agent's heartbeat
        times = []
        for _ in range(CALLS):
            with transaction.atomic():
                t = time.perf_counter()
                taken, read = batch._node_round_read(node, None)
                times.append((time.perf_counter() - t) * 1000)
                assert taken and read.locked, "the round took no node or found no frame"
                transaction.set_rollback(True)
        if os.environ.get("BENCH_POOL_EXPLAIN") == "1":
            explain(connection, node)
        times.sort()
        row = {
            "leased": leased,
            "queued": Frame.objects.filter(state=FrameState.QUEUED).count(),
            "p50_ms": round(statistics.median(times), 2),
            "p99_ms": round(times[max(0, int(len(times) * 0.99) - 1)], 2),
        }
        rows.append(row)
        print(
            f"{row['leased']:>8} leased {row['queued']:>6} queued  p50 {row['p50_ms']:>7} ms  p99 {row['p99_ms']:>7} ms"
        )
    trigger_us = trigger_cost(connection, busy_jobs[0])
    print("one-frame writes, the kept count's triggers within the statement (Postgres' clock):", trigger_us)
    out = ROOT / "bench" / "results" / "pool.json"
    out.write_text(
        json.dumps(
            {
                "bench": "pool",
                "machine": f"{platform.machine()} cores={os.cpu_count()}",
                "artists": ARTISTS,
                "calls": CALLS,
                "plan_cache_mode": PLAN,
                "big_job_frames": BIG_JOB,
                "settled_ahead_per_artist": HISTORY,
                "steps": rows,
                "trigger_us": trigger_us,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
