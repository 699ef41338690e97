"""Canary offers at farm scale (issue 17): what `verification.canary_offers_renew` costs with BENCH_NODES online
nodes (10,000; run it with 100,000 too), BENCH_NODES_PER_PROVIDER nodes per provider (5) and BENCH_SCENES canary
jobs of 4 frames each, each its own scene (3). It runs every CANARY_OFFERS_EVERY_SECONDS (30 s) and, coalesced,
after each node's hello, so its cost recurs with the fleet.

Measured, each the median of BENCH_REPEAT runs (5) in the bench's process: the first renewal (every provider is
offered every scene, on one node each), a renewal with nothing to change (every provider holds every scene: the
steady state, where most nodes hold no offer and can get none), the renewal a node's hello asks for (its own
offer), and a renewal after a tenth of the offers were
leased (their canaries then look leased to the offer: they are withdrawn and the scenes are gone for those
providers). Wall and CPU milliseconds of this process and of Postgres, and statements.
Run: `make bench BENCH=canaries` (env BENCH_NODES, BENCH_NODES_PER_PROVIDER, BENCH_SCENES, BENCH_REPEAT).
"""

import inspect
import io
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

from tests.bench._cpu import postgres_cpu_seconds  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ["CELERY_TASK_ALWAYS_EAGER"] = "0"  # the renewals measured are the bench's own, not the opening's
NODES = int(os.environ.get("BENCH_NODES", "10000"))
PER_PROVIDER = int(os.environ.get("BENCH_NODES_PER_PROVIDER", "5"))
SCENES = int(os.environ.get("BENCH_SCENES", "3"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "5"))


def setup() -> None:
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from marketplace import blobs
    from marketplace.accounts.models import User
    from marketplace.nodes.models import WorkerNode
    from marketplace.verification import canaries
    from marketplace.verification.models import CanaryAnswer, NodeTrust
    from tests.fixtures.market import REPORT, make_node, png_bytes

    call_command("migrate", verbosity=0)
    providers = User.objects.bulk_create(
        [User(username=f"bench-provider{i}", role=User.Role.PROVIDER) for i in range(-(-NODES // PER_PROVIDER))]
    )
    # One node the way an agent registers; the others copied from it in bulk.
    template, _ = make_node(providers[0], name="sim0")
    fields = {f.attname: getattr(template, f.attname) for f in WorkerNode._meta.concrete_fields if not f.primary_key}
    copies = [
        WorkerNode(
            **{**fields, "name": f"sim{i}", "token_prefix": f"b{i:011d}", "owner_id": providers[i // PER_PROVIDER].pk}
        )
        for i in range(1, NODES)
    ]
    WorkerNode.objects.bulk_create(copies, batch_size=2000)
    trusted = NodeTrust.objects.values("node_id")  # every node has its trust row, as after its first renewal
    NodeTrust.objects.bulk_create(
        (NodeTrust(node_id=pk) for pk in WorkerNode.objects.exclude(pk__in=trusted).values_list("pk", flat=True)),
        batch_size=5000,
    )
    WorkerNode.objects.update(last_heartbeat=timezone.now() + timezone.timedelta(hours=1))  # online all along
    png = png_bytes(32, 24)
    for s in range(SCENES):
        report = {**REPORT, "frame_start": 1, "frame_end": 4}
        owner = canaries.canary_owner()
        job = canaries.canary_job_store(owner=owner, blend=f"canary scene {s}".encode(), report=report, name="scene")
        for frame in job.frames.all():
            key = blobs.blob_put(key=f"canaries/bench/{frame.pk}.png", fileobj=io.BytesIO(png))
            CanaryAnswer.objects.create(frame=frame, answer_key=key)
        canaries.canary_job_open(job_id=job.pk)
    with connection.cursor() as cur:
        cur.execute("ANALYZE")


def offers_leased(share: float) -> int:
    """A `share` of the offers taken by their nodes: each offered frame's row changes (as a lease changes it) and
    its node's provider has a lease of the scene. Returns how many."""
    from django.db.models import F
    from django.utils import timezone

    from marketplace.dispatch.models import FrameLease
    from marketplace.jobs.models import Frame
    from marketplace.verification.models import NodeTrust

    taken = list(NodeTrust.objects.filter(canary__isnull=False).order_by("pk").values_list("node_id", "canary_id"))
    taken = taken[:: round(1 / share)]
    FrameLease.objects.bulk_create(
        FrameLease(frame_id=f, node_id=n, state="done", token_hash="x", expires_at=timezone.now()) for n, f in taken
    )
    Frame.objects.filter(pk__in={f for _, f in taken}).update(updated_at=F("updated_at") + timezone.timedelta(1))
    return len(taken)


def measured(work) -> dict:
    from django.db import connection

    statements = [0]

    def count(execute, sql, params, many, context):
        statements[0] += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        pg, cpu, t = postgres_cpu_seconds(), time.process_time(), time.perf_counter()
        changed = work()
        wall, cpu, pg = time.perf_counter() - t, time.process_time() - cpu, postgres_cpu_seconds() - pg
    return {
        "wall_ms": wall * 1000,
        "cpu_ms": cpu * 1000,
        "postgres_cpu_ms": pg * 1000,
        "statements": statements[0],
        "changed": changed,
    }


def median_of(runs: list[dict]) -> dict:
    return {k: round(statistics.median(r[k] for r in runs), 1) for k in runs[0]}


def main() -> None:
    django.setup()
    from django.db import connection, transaction

    from marketplace.verification.models import NodeTrust
    from marketplace.verification.services import canary_offers_renew

    if connection.vendor != "postgresql":
        sys.exit("bench_canaries needs Postgres: run `make bench BENCH=canaries`")
    t0 = time.perf_counter()
    setup()
    print(f"setup: {NODES} nodes, {SCENES} canary scenes, {time.perf_counter() - t0:.0f} s", flush=True)
    cases: dict[str, list[dict]] = {"first": [], "steady": [], "one node's hello": [], "after a tenth leased": []}
    per_node = "node_id" in inspect.signature(canary_offers_renew).parameters
    if not per_node:
        del cases["one node's hello"]
    waiting = NodeTrust.objects.order_by("-node_id").values_list("node_id", flat=True)[0]  # its provider's last
    for _ in range(REPEAT):
        with transaction.atomic():  # each repetition starts from no offer and leaves the market as it found it
            NodeTrust.objects.update(canary=None, canary_updated_at=None)
            cases["first"].append(measured(canary_offers_renew))
            offers = NodeTrust.objects.filter(canary__isnull=False).count()
            cases["steady"].append(measured(canary_offers_renew))
            if per_node:  # a hello asks for its node's own offer (since session 18; before, for the farm's)
                cases["one node's hello"].append(measured(lambda: canary_offers_renew(node_id=waiting)))
            leased = offers_leased(0.1)
            cases["after a tenth leased"].append(measured(canary_offers_renew))
            transaction.set_rollback(True)
    rows = {name: median_of(runs) for name, runs in cases.items()}
    print(f"{NODES} nodes, {-(-NODES // PER_PROVIDER)} providers, {SCENES} scenes: {offers} offers, {leased} leased")
    print(f"{'renewal':<22} {'wall ms':>9} {'CPU ms':>9} {'pg CPU ms':>10} {'statements':>11} {'changed':>8}")
    for name, r in rows.items():
        print(
            f"{name:<22} {r['wall_ms']:>9} {r['cpu_ms']:>9} {r['postgres_cpu_ms']:>10} {r['statements']:>11} "
            f"{r['changed']:>8}"
        )
    result = {
        "bench": "canaries",
        "machine": f"{platform.machine()} cores={os.cpu_count()}",
        "nodes": NODES,
        "nodes_per_provider": PER_PROVIDER,
        "scenes": SCENES,
        "repeat": REPEAT,
        "offers": offers,
        "leased": leased,
        "renewals": rows,
    }
    name = "canaries.json" if NODES == 10000 else f"canaries_{NODES}.json"
    path = ROOT / "bench" / "results" / name
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
