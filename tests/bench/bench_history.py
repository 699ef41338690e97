"""What a market's history costs its periodic work (issue 17), on Postgres: maturation's throughput (how fast
settled frames' pay leaves the dispute window, provider pending -> available, `payments.earnings.earnings_mature`)
and what each beat task and the operators' farm snapshot cost a quiet market with that history.

Setup: BENCH_PROVIDERS providers (50) with a node each and one funded artist. BENCH_HISTORY frames (1,000,000)
settled and matured long ago, written in bulk by SQL: the frames, their EarningMaturation rows and, where the
schema has it, their `pay_matured_at` (no ledger rows: maturation reads none of a matured frame's). Then
BENCH_DUE frames (20,000) settled past the window, paid through the ledger as settlement pays them
(`release_escrow_many`, keys settle:frame:<id>), spread over the providers. ANALYZE, as autovacuum would have.

Measured: a run with nothing due (what each beat costs a quiet market with that history; the median of three),
then runs until one matures nothing (the beat's task is one run; before issue 17's batches a run matured at most
1,000 frames, so that loop is how many beats it took): frames matured per second, SQL statements and Postgres
CPU per frame. A run that leaves a due frame unmatured, matures one twice, unbalances the ledger or lets a
cached balance drift exits non-zero. Then, with every frame matured, each task of CELERY_BEAT_SCHEDULE run once
in this process (its body, as a worker runs it) and `ops.selectors.farm_snapshot` (what `/metrics` and the farm
page read): milliseconds (median of three) and statements.
Run: `make bench BENCH=history` (env BENCH_PROVIDERS, BENCH_HISTORY, BENCH_DUE); writes bench/results/history.json.
"""

import json
import os
import platform
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench._cpu import postgres_cpu_seconds  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
PROVIDERS = int(os.environ.get("BENCH_PROVIDERS", "50"))
HISTORY = int(os.environ.get("BENCH_HISTORY", "1000000"))
DUE = int(os.environ.get("BENCH_DUE", "20000"))
PRICE = 1_000_000
FRAMES_PER_JOB = 10_000


def rows_insert(template, *, computed: dict[str, str], source: str, params: list) -> None:
    """INSERT ... SELECT of `template`'s model: every column `template`'s value but the `computed` ones (SQL over
    `source`, whose %s placeholders take `params`, the computed ones' first). One statement."""
    from django.db import connection

    meta = type(template)._meta
    fixed = [f for f in meta.concrete_fields if f.column not in computed and f.column != "id"]
    values = [f.get_db_prep_save(f.pre_save(template, add=True), connection) for f in fixed]
    columns = ", ".join([f.column for f in fixed] + list(computed))
    selects = ", ".join(["%s"] * len(fixed) + list(computed.values()))
    with connection.cursor() as cur:
        cur.execute(f"INSERT INTO {meta.db_table} ({columns}) SELECT {selects} FROM {source}", [*values, *params])


def history_insert(*, job_id: int, count: int, nodes: list[int], settled_hours_ago: float, matured: bool) -> None:
    """`count` settled frames of the job, their nodes taken in turn, each with its render lease and its check (one
    in ten checked by 8 crops, the others skipped); `matured`: their pay matured 72 hours after they settled (the
    EarningMaturation rows are the caller's)."""
    from marketplace.dispatch.models import FrameLease
    from marketplace.jobs.models import Frame
    from marketplace.verification.models import CropCheck, FrameCheck

    settled = "now() - make_interval(hours => %s) - make_interval(secs => g)"
    frame = {"number": "g", "node_id": "(%s::bigint[])[1 + g %% %s]", "settled_at": settled, "rendered_at": settled}
    params = [nodes, len(nodes), settled_hours_ago, settled_hours_ago]
    if any(f.name == "pay_matured_at" for f in Frame._meta.concrete_fields):  # not before issue 17
        frame["pay_matured_at"] = f"{settled} + interval '72 hours'" if matured else "NULL"
        params += [settled_hours_ago] if matured else []
    template = Frame(job_id=job_id, number=0, price=PRICE, state="settled")
    rows_insert(template, computed=frame, source="generate_series(1, %s) AS g", params=[*params, count])
    of_job = f"{Frame._meta.db_table} f WHERE f.job_id = {int(job_id)}"
    lease = FrameLease(frame_id=0, node_id=0, state="done", token_hash="x", expires_at=template.updated_at)
    stamps = {"created_at": "f.rendered_at", "finished_at": "f.rendered_at", "expires_at": "f.rendered_at"}
    rows_insert(lease, computed={"frame_id": "f.id", "node_id": "f.node_id", **stamps}, source=of_job, params=[])
    leases = f"{FrameLease._meta.db_table} l JOIN {Frame._meta.db_table} f ON f.id = l.frame_id AND f.job_id = {job_id}"
    kind = "CASE WHEN f.id %% 10 = 0 THEN 'crops' ELSE 'skipped' END"
    check = FrameCheck(frame_id=0, render_lease_id=0, node_id=0, kind="skipped", state="skipped", check_rate=0.1)
    computed = {
        "frame_id": "f.id",
        "render_lease_id": "l.id",
        "node_id": "f.node_id",
        "kind": kind,
        "state": kind.replace("'crops'", "'passed'"),
        "created_at": "f.rendered_at",
        "decided_at": "f.settled_at",
    }
    rows_insert(check, computed=computed, source=leases, params=[])
    checks = (
        f"{FrameCheck._meta.db_table} c JOIN {Frame._meta.db_table} f ON f.id = c.frame_id AND f.job_id = {job_id} "
        "CROSS JOIN generate_series(1, 8) AS g WHERE c.kind = 'crops'"
    )
    crop = CropCheck(frame_check_id=0, crop=[0, 0, 8, 8], state="passed")
    stamps = {"created_at": "f.rendered_at", "decided_at": "f.settled_at", "dispatched_at": "f.rendered_at"}
    rows_insert(crop, computed={"frame_check_id": "c.id", **stamps}, source=checks, params=[])


def setup() -> list[int]:
    """The market; returns the due frames' ids."""
    from django.core.management import call_command
    from django.db import connection

    from marketplace.accounts.models import User
    from marketplace.jobs.models import Frame, Job
    from marketplace.ledger.services import Release, hold_escrow, release_escrow_many
    from marketplace.nodes.models import WorkerNode
    from tests.fixtures.market import make_queued_job
    from tests.fixtures.money import fund

    call_command("migrate", verbosity=0)
    artist = User.objects.create(username="bench-artist")
    fund(artist, 10**15)
    providers = [User.objects.create(username=f"bench-provider{i}", role=User.Role.PROVIDER) for i in range(PROVIDERS)]
    nodes = []
    for i, p in enumerate(providers):
        nodes.append(WorkerNode.objects.create(owner=p, name=f"n{i}", token_prefix=f"m{i:011d}", token_hash="x").pk)
    owner_of = dict(WorkerNode.objects.filter(pk__in=nodes).values_list("pk", "owner_id"))
    by_pk = {p.pk: p for p in providers}

    def job() -> int:
        j = make_queued_job(artist, frames=1, price=PRICE)
        j.frames.all().delete()
        return j.pk

    for start in range(0, HISTORY, FRAMES_PER_JOB):
        count = min(FRAMES_PER_JOB, HISTORY - start)
        history_insert(job_id=job(), count=count, nodes=nodes, settled_hours_ago=2000, matured=True)
        with connection.cursor() as cur:  # their maturations, long ago
            cur.execute(
                "INSERT INTO payments_earningmaturation (frame_id, provider_id, amount_micro, matured_at) "
                "SELECT f.id, n.owner_id, %s, f.settled_at + interval '72 hours' FROM jobs_frame f "
                "JOIN nodes_workernode n ON n.id = f.node_id WHERE f.job_id = (SELECT max(id) FROM jobs_job)",
                [PRICE],
            )
    due = []
    for start in range(0, DUE, FRAMES_PER_JOB):
        count = min(FRAMES_PER_JOB, DUE - start)
        job_id = job()
        history_insert(job_id=job_id, count=count, nodes=nodes, settled_hours_ago=100, matured=False)
        j = Job.objects.get(pk=job_id)
        hold_escrow(artist=artist, job_ref=j.escrow_ref, amount=PRICE * count, key=f"bench-hold:{job_id}")
        rows = list(Frame.objects.filter(job_id=job_id).values_list("pk", "node_id"))
        for i in range(0, len(rows), 1000):
            release_escrow_many(
                releases=[
                    Release(
                        artist=artist,
                        job_ref=j.escrow_ref,
                        provider=by_pk[owner_of[node_id]],
                        amount=PRICE,
                        key=f"settle:frame:{pk}",
                        memo="bench settlement",
                    )
                    for pk, node_id in rows[i : i + 1000]
                ]
            )
        due += [pk for pk, _ in rows]
    Job.objects.update(state="done")  # every job finished: the market is quiet, its frames are history
    with connection.cursor() as cur:
        cur.execute("ANALYZE")
    return due


def quiet_work() -> dict:
    """Each beat task's body by its schedule name, and the farm snapshot."""
    from django.conf import settings

    from marketplace.celery import app
    from marketplace.ops.selectors import farm_snapshot

    app.loader.import_default_modules()
    work = {name: app.tasks[entry["task"]].run for name, entry in settings.CELERY_BEAT_SCHEDULE.items()}
    return {**work, "farm snapshot (/metrics, farm page)": farm_snapshot}


def main() -> None:
    django.setup()
    from django.db import connection
    from django.utils import timezone

    from marketplace.ledger import selectors as ledger
    from marketplace.payments.earnings import earnings_mature
    from marketplace.payments.models import EarningMaturation

    if connection.vendor != "postgresql":
        sys.exit("bench_history needs Postgres: run `make bench BENCH=history`")
    t0 = time.perf_counter()
    due = setup()
    print(f"setup: {HISTORY} matured frames of history, {len(due)} due, {time.perf_counter() - t0:.0f} s", flush=True)

    statements = [0]

    def count(execute, sql, params, many, context):
        statements[0] += 1
        return execute(sql, params, many, context)

    connection.execute_wrappers.append(count)
    # Nothing due yet (the due frames are young for a moment): what a beat costs a quiet market with this history.
    quiet_at = timezone.now() - timedelta(hours=100)  # the window ends before every due frame was settled
    quiet = []
    for _ in range(3):
        t = time.perf_counter()
        assert earnings_mature(now=quiet_at) == 0
        quiet.append(time.perf_counter() - t)
    quiet_statements = statements[0] / 3
    statements[0] = 0
    pg0, cpu0, t = postgres_cpu_seconds(), time.process_time(), time.perf_counter()
    runs, matured = 0, 0
    while True:
        runs += 1
        n = earnings_mature()
        matured += n
        if not n:
            break
    seconds = time.perf_counter() - t
    pg_cpu, app_cpu = postgres_cpu_seconds() - pg0, time.process_time() - cpu0
    maturing_statements = statements[0]
    periodic = {}
    for name, work in quiet_work().items():
        took = []
        statements[0] = 0
        for _ in range(3):
            t = time.perf_counter()
            work()
            took.append(time.perf_counter() - t)
        periodic[name] = {"ms": round(statistics.median(took) * 1000, 1), "statements": round(statements[0] / 3, 1)}
    connection.execute_wrappers.remove(count)

    matured_ids = list(EarningMaturation.objects.filter(frame_id__in=due).values_list("frame_id", flat=True))
    problems = {
        "unmatured": len(set(due) - set(matured_ids)),
        "matured_twice": len(matured_ids) - len(set(matured_ids)),
        "ledger_total": ledger.ledger_total(),
        "drifting_accounts": len(ledger.ledger_drift()),
    }
    result = {
        "bench": "history",
        "machine": f"{platform.machine()} cores={os.cpu_count()}",
        "providers": PROVIDERS,
        "history_frames": HISTORY,
        "due_frames": len(due),
        "quiet_run_ms": round(statistics.median(quiet) * 1000, 1),
        "quiet_run_statements": round(quiet_statements, 1),
        "runs": runs,
        "seconds": round(seconds, 2),
        "frames_matured": matured,
        "frames_per_s": round(matured / seconds, 1),
        "statements_per_frame": round(maturing_statements / max(matured, 1), 3),
        "postgres_cpu_ms_per_frame": round(pg_cpu * 1000 / max(matured, 1), 3),
        "app_cpu_ms_per_frame": round(app_cpu * 1000 / max(matured, 1), 3),
        **problems,
        "quiet_periodic": periodic,
    }
    print(
        f"history {HISTORY}, due {len(due)}: quiet run {result['quiet_run_ms']} ms "
        f"({result['quiet_run_statements']} statements); matured {matured} in {runs} runs, {seconds:.2f} s: "
        f"{result['frames_per_s']} frames/s, {result['statements_per_frame']} statements, "
        f"Postgres {result['postgres_cpu_ms_per_frame']} ms and Python {result['app_cpu_ms_per_frame']} ms of CPU "
        f"per frame; {problems}"
    )
    for name, cost in periodic.items():
        print(f"  quiet {name:<40} {cost['ms']:>9} ms {cost['statements']:>6} statements")
    path = ROOT / "bench" / "results" / "history.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")
    if any(problems.values()):
        sys.exit(f"bench_history: a failed run: {problems}")


if __name__ == "__main__":
    main()
