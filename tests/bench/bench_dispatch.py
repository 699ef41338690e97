"""Dispatch throughput on the set-oriented hot path (issue 17): BENCH_NODES simulated nodes (1,000; run it
with 10,000 too) on Postgres + Redis, each with a fake renderer that reports at once. Measures frames matched
-> leased -> reported -> settled per second, SQL statements per frame (per phase), lease latency and Postgres
CPU seconds per frame.

Each of W processes plays the marketplace and the agents in rounds: one matching round
(`dispatch.batch.leases_create`, what the `dispatch.match` task runs) leases frames to up to BENCH_BATCH idle
nodes; each leased node's fake agent takes its message from its own Redis queue, asks for the lease's details
(`lease_details`, what the agent's GET does), stores a tiny PNG and reports through the service the API calls;
then the round's rendered frames are thumbnailed, sampled and settled in one batch
(`verification.batch.rendered_frames_process`, what a `verification.frame_rendered` task runs with the frames
waiting). Verification is switched to "no check" (steady trust, check rate 0) so that this bench measures
dispatch and settlement only; verification cost is measured in bench_verify. The simulated nodes heartbeat as
agents do: at the pace the answers give (the farm's, `heartbeat_seconds`, set for the nodes online as Celery beat
sets it) each node's heartbeat goes through the service the agent's call runs
(`node_heartbeat`, naming the leases the node holds), so a slow run never loses its nodes to the offline
threshold, and the farm's most frequent call weighs on the run as it would; after each process's round of beats
it writes the gathered ones (`heartbeats_flush`, what Celery beat runs every HEARTBEAT_FLUSH_SECONDS). Their
statements are counted apart (`statements_per_heartbeat`, the flush's included): they scale with nodes and time,
not frames. A run that leaves any frame unsettled,
or the ledger unbalanced, exits non-zero.

Lease latency is what one lease waits from the start of its matching round to its commit (the round's
duration; the message is sent after commit). With BENCH_MODE=next, each rendered lease first takes the node's
next lease (`POST leases/{id}/next/`: a matching round of that one node) and its details, then is reported, as
the agent does: that is what a busy farm's nodes wait between frames (`next_lease_p50_ms`/`p99`), and rounds
only start the farm. Postgres
CPU is the server's own processes' CPU time (utime + stime from /proc, backends that exited included), before
and after the measured part.
A market has a past: before the measured run, BENCH_HISTORY frames (3,000; 0 for none) go the same way unmeasured,
then the tables are ANALYZEd, as autovacuum would have by then. Without it every backend plans its statements,
and keeps the plans, against an empty ledger and lease table (a foreign-key check of each posting, for one,
then scans the whole ledger). BENCH_EXPLAIN_MS=n logs, with auto_explain, the plan of every statement of the
measured run that took n ms or more, and `slow_plans` counts them by statement.
BENCH_SCENE_FILES=n: each scene's inspection report lists n external files (~250 bytes each), as a production
scene's does (`dispatch_scenefiles<n>.json`); the fixture's report lists none.
BENCH_BATCH=1 (`dispatch_batch1.json`; any other size than 100 names its file so): each rendered frame is settled in
a batch of its own, as a small farm's `verification.frame_rendered` tasks find one frame waiting each.
BENCH_CANARY_OFFERS=1: every node holds a canary offer (`NodeTrust.canary`, a queued frame of a canary job whose
scene's report is as large), as a farm's nodes do until their providers have seen every canary scene; the check
rate stays 0, so no offer is handed out, but every statement that locks a node reads its offer (`_canaries` in the
file name).
Run: `make bench BENCH=dispatch` (env BENCH_NODES, BENCH_FRAMES, BENCH_WORKERS, BENCH_BATCH, BENCH_MODE,
BENCH_HISTORY, BENCH_EXPLAIN_MS, BENCH_SCENE_FILES, BENCH_CANARY_OFFERS).
"""

import io
import json
import multiprocessing as mp
import os
import platform
import queue
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict, deque
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench._cpu import postgres_cpu_seconds  # noqa: E402
from tests.bench._writes import table_writes, table_writes_per, table_writes_print  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ["CELERY_TASK_ALWAYS_EAGER"] = "0"  # tasks go to Redis like in production; we run them inline
NODES = int(os.environ.get("BENCH_NODES", "1000"))
FRAMES = int(os.environ.get("BENCH_FRAMES", "3000"))
WORKERS = int(os.environ.get("BENCH_WORKERS", "3"))
BATCH = int(os.environ.get("BENCH_BATCH", "100"))
# "rounds": every lease comes from a matching round (`dispatch.match`); "next": as the agent does, each rendered
# lease takes the node's next lease ahead (`services.lease_next`, a round of one node) and its details before it
# is reported, so rounds only start the farm.
MODE = os.environ.get("BENCH_MODE", "rounds")
HISTORY = int(os.environ.get("BENCH_HISTORY", "3000"))
EXPLAIN_MS = float(os.environ["BENCH_EXPLAIN_MS"]) if os.environ.get("BENCH_EXPLAIN_MS") else None
SCENE_FILES = int(os.environ.get("BENCH_SCENE_FILES", "0"))  # files each scene's report lists (a real scene's)
CANARY_OFFERS = os.environ.get("BENCH_CANARY_OFFERS", "0") == "1"
PHASES = ("lease", "agent", "report", "next", "settle", "heartbeat")
WAIT_SAMPLE_S = 0.02  # how often `WaitSampler` reads pg_stat_activity


def setup() -> None:
    from django.core.management import call_command
    from django.utils import timezone

    from marketplace.accounts.models import User
    from marketplace.nodes.models import WorkerNode
    from marketplace.nodes.services import heartbeat_pace_update
    from tests.fixtures.market import make_node, unchecked_node_copies
    from tests.fixtures.money import fund

    call_command("migrate", verbosity=0)
    provider = User.objects.create(username="bench-provider", role=User.Role.PROVIDER)
    for i in range(5):
        fund(User.objects.create(username=f"bench-artist{i}"), 10**15)
    # One node the way an agent registers; the others copied from it in bulk (10,000 hellos would take minutes).
    # Steady trust with no sampled checks: this bench isolates dispatch + settlement.
    template, _ = make_node(provider, name="sim", unchecked=True)
    unchecked_node_copies(template, NODES - 1, prefix="sim")
    WorkerNode.objects.update(last_heartbeat=timezone.now())
    # What Celery beat's `nodes.heartbeat_pace` does every 30 s: the pace for this many nodes online.
    heartbeat_pace_update()
    if CANARY_OFFERS:
        canaries_offer()


def canaries_offer() -> None:
    """Every node offered one queued frame of a canary job whose scene's report is a production scene's."""
    from marketplace.verification import canaries
    from marketplace.verification.models import NodeTrust
    from tests.fixtures.market import REPORT

    job = canaries.canary_job_store(
        owner=canaries.canary_owner(), blend=b"bench canary scene", report=scene_report(REPORT), name="canary"
    )
    canaries.canary_job_open(job_id=job.pk)
    frame = job.frames.order_by("number").first()
    NodeTrust.objects.update(canary=frame, canary_updated_at=frame.updated_at)


def scene_report(base: dict) -> dict:
    """`base` with SCENE_FILES external files listed, as a production scene's inspection lists them."""
    files = [
        {
            "kind": "image",
            "datablock": f"asset_{i:04d}",
            "raw_path": f"//textures/asset_{i:04d}_diffuse_4k.png",
            "resolved": f"textures/asset_{i:04d}_diffuse_4k.png",
            "packed": False,
            "bundled": False,
            "inside_bundle": True,
            "exists": True,
            "reason": None,
        }
        for i in range(SCENE_FILES)
    ]
    return {**base, "external_files": files} if files else base


def jobs_queue(frames: int) -> list[int]:
    """`frames` queued frames in one job per artist, half of them at a higher priority; the jobs' ids. Each job's
    scene report lists SCENE_FILES external files, as a production scene's inspection does."""
    from marketplace.accounts.models import User
    from marketplace.scenes.models import Scene
    from tests.fixtures.market import REPORT, make_queued_job

    artists = User.objects.filter(username__startswith="bench-artist").order_by("pk")
    jobs = [
        make_queued_job(artist, frames=frames // len(artists), price=1_000_000, priority=i % 2)
        for i, artist in enumerate(artists)
    ]
    if SCENE_FILES:
        Scene.objects.filter(jobs__in=jobs).update(report=scene_report(REPORT))
    return [job.pk for job in jobs]


def analyze() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("ANALYZE")  # after a bulk load, as an operator would: the planner needs the tables' sizes


def statement_stats_reset() -> bool:
    """Start counting Postgres' time per statement (pg_stat_statements, where `make bench`'s server loads it)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SHOW shared_preload_libraries")
        if "pg_stat_statements" not in cur.fetchone()[0]:
            return False
        cur.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        cur.execute("SELECT pg_stat_statements_reset()")
    return True


def statement_stats(per_frame: int, top: int = 12) -> dict:
    """Postgres' planning + execution time (wall clock) since the reset, per settled frame: in all, and the
    statements that took most of it. What the server's CPU time has beyond that is per-statement overhead
    (protocol, parsing, transaction start and commit)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT calls, total_exec_time, total_plan_time, query FROM pg_stat_statements"
            " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " ORDER BY total_exec_time + total_plan_time DESC"
        )
        rows = cur.fetchall()
    return {
        "calls_per_frame": round(sum(row[0] for row in rows) / per_frame, 2),
        "ms_per_frame": round(sum(row[1] + row[2] for row in rows) / per_frame, 3),
        "top": [
            {
                "ms_per_frame": round((exec_ms + plan_ms) / per_frame, 3),
                "calls_per_frame": round(calls / per_frame, 2),
                "mean_ms": round((exec_ms + plan_ms) / max(calls, 1), 3),
                "query": " ".join(query.split())[:160],
            }
            for calls, exec_ms, plan_ms, query in rows[:top]
        ],
    }


def plan_cache(plans: list[tuple[str, int, int]], top: int = 6) -> list[dict]:
    """The statements psycopg prepared, summed over the workers' connections, most executed first: how often
    Postgres ran each with its cached generic plan and how often it planned it again for the values given."""
    by_query: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for query, generic, custom in plans:
        counts = by_query[" ".join(query.split())]
        counts[0] += generic
        counts[1] += custom
    ranked = sorted(by_query.items(), key=lambda item: -sum(item[1]))[:top]
    return [
        {"generic": generic, "custom": custom, "chars": len(query), "query": query[:160]}
        for query, (generic, custom) in ranked
    ]


def slow_plans_log(into: list[str]) -> None:
    """auto_explain on this process's connection: each statement (those run inside functions and triggers too) that
    takes EXPLAIN_MS or more sends its plan back as a notice, kept in `into`."""
    from django.db import connection

    connection.ensure_connection()
    connection.connection.add_notice_handler(
        lambda diag: into.append(diag.message_primary) if (diag.message_primary or "").startswith("duration:") else None
    )
    with connection.cursor() as cur:
        cur.execute("LOAD 'auto_explain'")
        cur.execute(f"SET auto_explain.log_min_duration = {EXPLAIN_MS:g}")
        cur.execute("SET auto_explain.log_analyze = on")  # rows per plan node: which one read far more than it kept
        cur.execute("SET auto_explain.log_timing = off")
        cur.execute("SET auto_explain.log_nested_statements = on")
        cur.execute("SET auto_explain.log_format = json")
        cur.execute("SET client_min_messages = log")


def _plan_lines(node: dict, depth: int = 0) -> list[str]:
    """EXPLAIN's JSON as one line per plan node: type, relation or index, the planner's estimate of its rows and
    cost, the rows it gave and those it filtered away."""
    what = " ".join(str(node[k]) for k in ("Node Type", "Relation Name", "Index Name", "Subplan Name") if node.get(k))
    removed = node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Join Filter", 0)
    line = f"{'  ' * depth}{what} (estimated {node.get('Plan Rows')} rows, cost {node.get('Total Cost')};"
    line += f" rows {node.get('Actual Rows', '?')} x{node.get('Actual Loops', 1)}"
    line += f", removed {removed})" if removed else ")"
    return [line] + [x for child in node.get("Plans", []) for x in _plan_lines(child, depth + 1)]


def slow_plans(logged: list[str], top: int = 8) -> list[dict]:
    """The statements auto_explain logged, most total time first, each with its slowest plan."""
    by_query: dict[str, list] = {}
    for text in logged:
        head, _, body = text.partition("\n")
        explained = json.loads(body)
        key = " ".join(explained["Query Text"].split())[:160]
        ms = float(head.split()[1])
        entry = by_query.setdefault(key, [0, 0.0, 0.0, []])
        entry[0] += 1
        entry[1] += ms
        if ms >= entry[2]:
            entry[2], entry[3] = ms, _plan_lines(explained["Plan"])[:40]
    ranked = sorted(by_query.items(), key=lambda item: -item[1][1])[:top]
    return [
        {"query": query, "count": n, "total_ms": round(total, 1), "max_ms": round(worst, 1), "plan": plan}
        for query, (n, total, worst, plan) in ranked
    ]


def worker(node_ids: list[int], out: mp.Queue, explain: bool) -> None:
    django.setup()
    import redis
    from django.conf import settings
    from django.db import connection

    from marketplace import blobs
    from marketplace.dispatch import batch, heartbeats, queues, services
    from marketplace.jobs.models import Frame
    from marketplace.jobs.states import FrameState
    from marketplace.nodes import conf as node_conf
    from marketplace.nodes.models import WorkerNode
    from marketplace.verification.batch import rendered_frames_process
    from tests.fixtures.market import png_bytes

    r = redis.Redis.from_url(settings.AGENT_BROKER_URL)
    png = png_bytes(32, 24)
    statements = dict.fromkeys(PHASES, 0)
    phase = ["heartbeat"]

    def count(execute, sql, params, many, context):
        if phase[0] in statements:  # not the simulated agent's own bookkeeping
            statements[phase[0]] += 1
        return execute(sql, params, many, context)

    nodes = {n.pk: n for n in WorkerNode.objects.all()}
    held: dict[int, set[int]] = defaultdict(set)  # node -> the leases its agent holds, which its heartbeat names
    timing = dict.fromkeys(PHASES, 0.0)
    beats = [0]

    beat_every = [float(node_conf.HEARTBEAT_SECONDS)]

    def heartbeat() -> float:
        phase[0] = "heartbeat"
        t = time.perf_counter()
        for node_id in node_ids:
            # Each answer says when to beat next, as the agent reads it (the farm's pace).
            answer = services.node_heartbeat(node=nodes[node_id], lease_ids=sorted(held[node_id]))
            beat_every[0] = answer.heartbeat_seconds
        # What Celery beat's `dispatch.heartbeats_flush` does every HEARTBEAT_FLUSH_SECONDS: write the gathered ones.
        heartbeats.heartbeats_flush()
        beats[0] += len(node_ids)
        timing["heartbeat"] += time.perf_counter() - t
        return time.monotonic()

    logged: list[str] = []
    if explain:
        slow_plans_log(logged)
    connection.execute_wrappers.append(count)
    last_beat = heartbeat()
    latencies, next_latencies, rounds, settled, t_start = [], [], [], 0, time.perf_counter()
    empty_rounds = 0
    while True:
        if time.monotonic() - last_beat >= beat_every[0]:
            last_beat = heartbeat()
        phase[0] = "lease"
        t0 = time.perf_counter()
        deliveries = batch.leases_create(limit=BATCH)
        t1 = time.perf_counter()
        timing["lease"] += t1 - t0
        if not deliveries:
            # SKIP LOCKED hides frames and nodes other processes are leasing: look again before giving up
            empty_rounds += 1
            if empty_rounds >= 40 or not Frame.objects.filter(state=FrameState.QUEUED, job__is_canary=False).exists():
                break
            time.sleep(0.05)
            continue
        empty_rounds = 0
        for d in deliveries:
            held[d.node_id].add(d.lease_id)
        rounds.append((t1 - t0, len(deliveries)))
        latencies += [t1 - t0] * len(deliveries)
        # (node, lease id, token, details when the report's answer already carried them)
        work = deque((d.node_id, d.lease_id, d.token, None) for d in deliveries)
        rendered: list[int] = []
        while work:
            if time.monotonic() - last_beat >= beat_every[0]:
                last_beat = heartbeat()
            node_id, lease_id, token, details = work.popleft()
            node = nodes[node_id]
            phase[0] = "agent"
            t2 = time.perf_counter()
            r.rpop(queues.queue_key(node_id))  # the lease's message (the agent drops one it already has)
            details = details or services.lease_details(node=node, lease_id=lease_id, token=token)
            # Where the result goes: a real agent reads it from the details' upload URL; this one asks the table,
            # uncounted (it is not the market's statement).
            phase[0] = "simulation"
            lease = services.FrameLease.objects.only("result_key", "frame_id").get(pk=lease_id)
            phase[0] = "agent"
            blobs.blob_put(key=lease.result_key, fileobj=io.BytesIO(png))
            timing["agent"] += time.perf_counter() - t2
            nxt = None
            if MODE == "next":
                # What the agent does once a frame is rendered (`POST leases/{id}/next/`): take the node's next
                # lease and its details, then send the result while that frame renders.
                phase[0] = "next"
                t5 = time.perf_counter()
                nxt = services.lease_next(node=node, lease_id=lease_id, token=token)
                if nxt is not None:
                    held[node_id].add(nxt.lease_id)
                    next_details = services.delivery_details(node=node, delivery=nxt)
                    work.append((node_id, nxt.lease_id, nxt.token, next_details))
                next_latencies.append(time.perf_counter() - t5)
                timing["next"] += next_latencies[-1]
            phase[0] = "report"
            t3 = time.perf_counter()
            # As the report view: no matching round for a node that took its next lease ahead.
            outcome = services.lease_report(
                node=node, lease_id=lease_id, token=token, ok=True, stats={"seconds": 0.01}, match_after=MODE != "next"
            )
            if MODE == "next" and outcome.accepted:  # as the report view: its next lease, unless it took one ahead
                after = services.lease_after_report(node=node, node_busy=outcome.node_busy)
                if after is not None:
                    held[node_id].add(after.lease_id)
                    work.append(
                        (node_id, after.lease_id, after.token, services.delivery_details(node=node, delivery=after))
                    )
            held[node_id].discard(lease_id)
            timing["report"] += time.perf_counter() - t3
            if outcome.accepted:
                rendered.append(lease.frame_id)
            if len(rendered) >= BATCH or not work:  # what one coalesced verification.frame_rendered task takes
                phase[0] = "settle"
                t4 = time.perf_counter()
                settled += len(rendered_frames_process(frame_ids=rendered))
                timing["settle"] += time.perf_counter() - t4
                rendered = []
    connection.execute_wrappers.remove(count)
    with connection.cursor() as cur:  # this connection's prepared statements: how Postgres planned each
        cur.execute("SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements")
        plans = cur.fetchall()
    out.put(
        {
            "plans": plans,
            "latencies": latencies,
            "next_latencies": next_latencies,
            "rounds": rounds,
            "settled": settled,
            "seconds": time.perf_counter() - t_start,
            "timing": timing,
            "statements": statements,
            "heartbeats": beats[0],
            "heartbeat_seconds": beat_every[0],
            "cpu_s": time.process_time(),  # this process: the market's Python and the fake agents' work
            "slow_plans": logged,
        }
    )


class WaitSampler(threading.Thread):
    """What the bench's Postgres backends are doing, read from pg_stat_activity every WAIT_SAMPLE_S while the bench
    runs: on the CPU (no wait event) or waiting, and for what (a row another transaction holds shows as
    Lock/transactionid or Lock/tuple), by statement. It needs no extension, so it also works on pgserver's build,
    which has no pg_stat_statements."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.done = threading.Event()
        self.samples: Counter[tuple[str, str]] = Counter()
        self.reads = 0

    def run(self) -> None:
        from django.db import connection

        try:
            with connection.cursor() as cur:
                while not self.done.wait(WAIT_SAMPLE_S):
                    cur.execute(
                        "SELECT wait_event_type, wait_event, query FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active'"
                    )
                    self.reads += 1
                    for kind, event, query in cur.fetchall():
                        self.samples[(f"{kind}/{event}" if kind else "CPU", " ".join(query.split())[:100])] += 1
        finally:
            connection.close()

    def summary(self, top: int = 8) -> dict:
        """Each state's share of the active backends seen, and the (state, statement) pairs seen most."""
        total = sum(self.samples.values()) or 1
        by_state: Counter[str] = Counter()
        for (state, _), n in self.samples.items():
            by_state[state] += n
        return {
            "reads": self.reads,
            "active_backends_mean": round(total / max(self.reads, 1), 2),
            "by_state": {state: round(n / total, 3) for state, n in by_state.most_common()},
            "top": [
                {"state": state, "share": round(n / total, 3), "query": query}
                for (state, query), n in self.samples.most_common(top)
            ],
        }


def collect(out: mp.Queue, procs: list[mp.Process]) -> list[dict]:
    """Each worker's result; a worker that died without one fails the run at once instead of hanging it."""
    results: list[dict] = []
    while len(results) < len(procs):
        try:
            results.append(out.get(timeout=1))
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead:
                for p in procs:
                    p.terminate()
                sys.exit(f"FAILED RUN: a worker died (exit codes {dead}); its traceback is above")
    return results


def workers_run(node_ids: list[int], *, explain: bool) -> tuple[list[dict], float, dict]:
    """WORKERS processes, each playing the market and a slice of the nodes until no frame is left queued: their
    results, the wall time, and what Postgres' backends did meanwhile."""
    from django.db import connections

    connections.close_all()
    out: mp.Queue = mp.Queue()
    start = time.perf_counter()
    procs = [mp.Process(target=worker, args=(node_ids[i::WORKERS], out, explain)) for i in range(WORKERS)]
    for p in procs:
        p.start()
    waits = WaitSampler()
    waits.start()
    results = collect(out, procs)
    waits.done.set()
    waits.join()
    for p in procs:
        p.join()
    return results, time.perf_counter() - start, waits.summary()


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[max(0, int(len(sorted_values) * q) - 1)]


def main() -> None:
    django.setup()
    from django.db import connection
    from django.db.models import Count
    from django.urls import reverse

    from marketplace.jobs.models import Frame
    from marketplace.jobs.selectors import leased_count_drift
    from marketplace.ledger import selectors
    from marketplace.ledger.models import LedgerTransaction
    from marketplace.nodes.models import WorkerNode

    if connection.vendor != "postgresql":
        sys.exit("bench_dispatch needs Postgres: run `make bench BENCH=dispatch`")
    t = time.perf_counter()
    setup()
    node_ids = list(WorkerNode.objects.order_by("pk").values_list("pk", flat=True))
    # What a web worker does once when it starts: import the URLconf and index its routes. The forked bench
    # processes inherit it; each did it on its first frame before, inside the measured window (6 % of their CPU).
    reverse("blob", args=["warm-up"])
    if HISTORY:
        jobs_queue(HISTORY)
        _, seconds, _ = workers_run(node_ids, explain=False)
        print(f"history: {HISTORY} frames in {seconds:.1f}s (not measured)", flush=True)
    measured_jobs = jobs_queue(FRAMES)
    analyze()
    print(f"setup: {NODES} nodes, {FRAMES} frames in {time.perf_counter() - t:.1f}s", flush=True)
    counting = statement_stats_reset()
    writes_before = table_writes()
    cpu_before = postgres_cpu_seconds()
    results, elapsed, waits = workers_run(node_ids, explain=EXPLAIN_MS is not None)
    time.sleep(0.2)  # let the postmaster reap the workers' backends, so their CPU time (and their counts) is counted
    cpu = postgres_cpu_seconds() - cpu_before
    writes_after = table_writes()
    latencies = sorted(x for r in results for x in r["latencies"])
    next_latencies = sorted(x for r in results for x in r["next_latencies"]) or [0.0]
    settled_db = Frame.objects.filter(job_id__in=measured_jobs, state="settled").count()
    artist_frames = Frame.objects.filter(job__is_canary=False)  # an offered canary stays queued
    unsettled = dict(artist_frames.exclude(state="settled").values_list("state").annotate(n=Count("pk")))
    timing = {k: sum(r["timing"][k] for r in results) for k in PHASES}
    statements = {k: sum(r["statements"][k] for r in results) for k in PHASES}
    heartbeats = sum(r["heartbeats"] for r in results)
    busy = sum(timing.values())
    per_frame = max(settled_db, 1)
    round_sizes = [n for r in results for _, n in r["rounds"]]
    row = {
        "nodes": NODES,
        "frames": FRAMES,
        "processes": WORKERS,
        "batch": BATCH,
        "history_frames": HISTORY,
        "scene_files": SCENE_FILES,
        "canary_offers": CANARY_OFFERS,
        "seconds": round(elapsed, 2),
        "frames_settled": settled_db,
        "frames_not_settled": unsettled,
        "frames_per_s": round(settled_db / elapsed, 1),
        # the frame's own path; the heartbeats' statements scale with nodes and time, so they are counted apart
        "statements_per_frame": round(sum(v for k, v in statements.items() if k != "heartbeat") / per_frame, 2),
        "statements_per_frame_by_phase": {
            k: round(v / per_frame, 2) for k, v in statements.items() if k != "heartbeat"
        },
        "heartbeats": heartbeats,
        "statements_per_heartbeat": round(statements["heartbeat"] / max(heartbeats, 1), 2),
        "heartbeat_seconds": max(r["heartbeat_seconds"] for r in results),  # the pace the answers gave
        "mode": MODE,
        "lease_p50_ms": round(statistics.median(latencies) * 1000, 2),
        "lease_p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        # the report view's part that leases the node's next frame (mode "next"; 0 in mode "rounds")
        "next_lease_p50_ms": round(statistics.median(next_latencies) * 1000, 2),
        "next_lease_p99_ms": round(percentile(next_latencies, 0.99) * 1000, 2),
        "leases_from_rounds": len(latencies),
        "leases_per_round_mean": round(statistics.mean(round_sizes), 1),
        "postgres_cpu_s": round(cpu, 2),
        "postgres_cpu_ms_per_frame": round(cpu * 1000 / per_frame, 3),
        "app_cpu_ms_per_frame": round(sum(r["cpu_s"] for r in results) * 1000 / per_frame, 2),
        "time_share": {k: round(v / busy, 3) for k, v in timing.items()},
        # where Postgres' time goes: execution + planning per settled frame, by statement
        "postgres_statements": statement_stats(per_frame) if counting else {},
        "plan_cache": plan_cache([plan for r in results for plan in r["plans"]]),
        "postgres_waits": waits,
        # what the hot tables' writes cost per settled frame (the heartbeats' included): rows, HOT share, WAL
        "table_writes": table_writes_per(writes_before, writes_after, per_frame),
        # statements that took BENCH_EXPLAIN_MS or more, with their plans (auto_explain; [] when not asked for)
        "slow_plans": slow_plans([text for r in results for text in r["slow_plans"]]),
        "ledger_total": selectors.ledger_total(),
        "drifting_accounts": len(selectors.ledger_drift()),
        "leased_count_drift": len(leased_count_drift()),  # artists whose kept count is off (jobs.LeasedCount)
        # every settled frame has exactly one settlement transaction
        "settlements_minus_settled_frames": LedgerTransaction.objects.filter(
            idempotency_key__startswith="settle:frame:"
        ).count()
        - Frame.objects.filter(state="settled").count(),
    }
    print(
        f"{'nodes':>6} {'frames':>7} {'procs':>5} {'settled':>8} {'frames/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'stmts/frame':>11} {'pg ms/frame':>11}"
    )
    print(
        f"{NODES:>6} {FRAMES:>7} {WORKERS:>5} {settled_db:>8} {row['frames_per_s']:>9} {row['lease_p50_ms']:>7} "
        f"{row['lease_p99_ms']:>7} {row['statements_per_frame']:>11} {row['postgres_cpu_ms_per_frame']:>11}"
    )
    if MODE == "next":
        print(
            f"next lease on report: p50 {row['next_lease_p50_ms']} ms, p99 {row['next_lease_p99_ms']} ms; "
            f"{row['leases_from_rounds']} leases from rounds"
        )
    print("statements per frame by phase:", row["statements_per_frame_by_phase"])
    print(
        f"heartbeats: {heartbeats} through the service, {row['statements_per_heartbeat']} statements each, "
        f"one every {row['heartbeat_seconds']} s per node"
    )
    print("CPU ms/frame: Postgres", row["postgres_cpu_ms_per_frame"], " market + agents", row["app_cpu_ms_per_frame"])
    if row["postgres_statements"]:
        print(
            "pg_stat_statements:",
            row["postgres_statements"]["calls_per_frame"],
            "calls and",
            row["postgres_statements"]["ms_per_frame"],
            "ms (plan + execute, wall clock) per frame; the top ones:",
        )
    for stat in row["postgres_statements"].get("top", []):
        print(
            f"  pg {stat['ms_per_frame']:>7.3f} ms/frame {stat['calls_per_frame']:>6} calls/frame",
            stat["query"][:100],
        )
    print(
        "Postgres backends active (mean):",
        row["postgres_waits"]["active_backends_mean"],
        " by state:",
        row["postgres_waits"]["by_state"],
    )
    table_writes_print(row["table_writes"], "frame")
    for stat in row["postgres_waits"]["top"]:
        print(f"  waits {stat['share']:>6.1%} {stat['state']:<24}", stat["query"][:90])
    for stat in row["slow_plans"]:
        print(
            f"  slow {stat['count']:>5} x, {stat['total_ms']:>8.1f} ms in all, worst {stat['max_ms']} ms:",
            stat["query"][:80],
        )
    for stat in row["plan_cache"]:
        print(
            f"  plans: {stat['generic']:>6} generic {stat['custom']:>6} custom {stat['chars']:>6} chars",
            stat["query"][:80],
        )
    print(
        "time share:",
        row["time_share"],
        " ledger sum:",
        row["ledger_total"],
        " drift:",
        row["drifting_accounts"],
        " leased count drift:",
        row["leased_count_drift"],
        " not settled:",
        unsettled,
    )
    name = f"dispatch_scenefiles{SCENE_FILES}" if SCENE_FILES else "dispatch"
    name += "_canaries" if CANARY_OFFERS else ""
    path = ROOT / "bench" / "results" / f"{name}{f'_batch{BATCH}' if BATCH != 100 else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"bench": "dispatch", "machine": f"{platform.machine()} cores={os.cpu_count()}", **row}, indent=2)
        + "\n"
    )
    print(f"wrote {path.relative_to(ROOT)}")
    broken = (
        row["ledger_total"] != 0
        or row["drifting_accounts"]
        or row["settlements_minus_settled_frames"]
        or row["leased_count_drift"]
    )
    if unsettled or broken:
        sys.exit(f"FAILED RUN: {sum(unsettled.values())} frames not settled: {unsettled}; counts broken: {broken}")


if __name__ == "__main__":
    main()
