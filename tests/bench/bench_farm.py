"""Farm overhead: the same N frames of the demo scene rendered (a) directly by bpy in one process and
(b) through the whole marketplace (web server, Celery worker + beat, Redis, one local agent, Postgres,
settlement). Prints both times and the overhead ratio (b)/(a); writes bench/results/farm.json.

Both sides render the same frames, size and samples with every CPU core. The marketplace runs twice: its
node at steady trust (check rate at the policy floor, as a long-running provider would be: the platform
verifier's crop renders share this machine's two cores with the agent), and unchecked (dispatch, transfer
and settlement alone). A brand-new node is checked on every frame until it has earned trust.
Run: `make bench BENCH=farm`.
"""

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ["CELERY_TASK_ALWAYS_EAGER"] = "0"
FRAMES = int(os.environ.get("BENCH_FRAMES", "12"))
WIDTH, HEIGHT, SAMPLES = 320, 180, 32


def direct(blend: Path, out: Path) -> float:
    from workers.blend.renderer import Renderer

    t = time.perf_counter()
    with Renderer(timeout_s=600) as renderer:
        renderer.load(blend, blend.parent)
        for n in range(1, FRAMES + 1):
            renderer.render(
                {
                    "frame": n,
                    "samples": SAMPLES,
                    "seed": 0,
                    "resolution_x": WIDTH,
                    "resolution_y": HEIGHT,
                    "file_format": "PNG",
                    "device": "CPU",
                },
                out / f"{n}.png",
            )
    return time.perf_counter() - t


def through_market(blend: Path, tmp: Path, *, checked: bool) -> tuple[float, dict]:
    from django.conf import settings
    from django.core.management import call_command

    from marketplace.accounts.models import User
    from marketplace.dispatch.services import match_frames
    from marketplace.jobs.models import Frame
    from marketplace.ledger import selectors
    from marketplace.ledger.models import LedgerTransaction
    from marketplace.nodes.models import WorkerNode
    from marketplace.nodes.services import node_create
    from marketplace.verification import policy
    from marketplace.verification.models import NodeTrust
    from scripts.services import Redis, free_port, wait_port
    from tests.fixtures.farm import Farm, demo_job
    from tests.fixtures.money import fund

    call_command("migrate", verbosity=0)
    redis_url = settings.REDIS_URL.rsplit("/", 1)[0]
    port = free_port()
    farm = Farm(tmp, f"http://127.0.0.1:{port}", Redis(port=int(redis_url.rsplit(":", 1)[1]), workdir=tmp))
    artist = User.objects.create(username=f"farm-artist-{time.time_ns()}")
    provider = User.objects.create(username=f"farm-provider-{time.time_ns()}", role=User.Role.PROVIDER)
    fund(artist, 10**12)
    node, token = node_create(owner=provider, name="bench agent")
    NodeTrust.objects.create(
        node=node, consecutive_passes=1000, check_rate=policy.check_rate(consecutive_passes=1000) if checked else 0.0
    )
    try:
        farm.start_web(port)
        wait_port(port)
        farm.start_celery()
        farm.start_agent("agent", token, threads=0)  # every core, as the direct render uses
        while node.status == "offline":  # wait for the agent's hello
            time.sleep(0.2)
            node.refresh_from_db()
        # The same frames, size and samples as the direct render: the ratio compares equal work.
        job = demo_job(artist, blend, frames=FRAMES, width=WIDTH, height=HEIGHT, samples=SAMPLES)
        t = time.perf_counter()
        match_frames()
        while Frame.objects.filter(job=job).exclude(state="settled").exists():
            time.sleep(0.1)
            if time.perf_counter() - t > 900:
                raise SystemExit("frames did not settle in 15 minutes:\n" + farm.logs())
        elapsed = time.perf_counter() - t
    finally:
        farm.stop_all()
        # Its agent is gone: the next run's matcher must not lease to this node until it goes silent.
        WorkerNode.objects.filter(pk=node.pk).update(status=WorkerNode.Status.OFFLINE)
    settles = LedgerTransaction.objects.filter(
        idempotency_key__startswith="settle:frame:",
        idempotency_key__in=[f"settle:frame:{f.pk}" for f in job.frames.all()],
    )
    return elapsed, {
        "settlements": settles.count(),
        "ledger_total": selectors.ledger_total(),
        "drift": len(selectors.ledger_drift()),
    }


def main() -> None:
    django.setup()
    from django.db import connection

    from workers.blend import make_demo_scene

    if connection.vendor != "postgresql":
        sys.exit("bench_farm needs Postgres and Redis: run `make bench BENCH=farm`")
    with tempfile.TemporaryDirectory(prefix="bench-farm-") as tmp_s:
        tmp = Path(tmp_s)
        blend = tmp / "demo.blend"
        make_demo_scene(blend, frames=FRAMES, resolution=(WIDTH, HEIGHT), samples=SAMPLES)
        (tmp / "direct").mkdir()
        direct_s = direct(blend, tmp / "direct")
        (tmp / "steady").mkdir()
        market_s, checks = through_market(blend, tmp / "steady", checked=True)
        (tmp / "unchecked").mkdir()
        unchecked_s, unchecked = through_market(blend, tmp / "unchecked", checked=False)
    ratio = market_s / direct_s
    print(
        f"{'frames':>6} {'size':>9} {'samples':>7} {'direct s':>9} {'market s':>9} {'ratio':>6} "
        f"{'unchecked s':>11} {'ratio':>6}"
    )
    print(
        f"{FRAMES:>6} {WIDTH}x{HEIGHT:<5} {SAMPLES:>7} {direct_s:>9.2f} {market_s:>9.2f} {ratio:>6.3f} "
        f"{unchecked_s:>11.2f} {unchecked_s / direct_s:>6.3f}"
    )
    print(
        "settlements:",
        checks["settlements"],
        unchecked["settlements"],
        "ledger sum:",
        checks["ledger_total"],
        "drift:",
        checks["drift"],
    )
    path = ROOT / "bench" / "results" / "farm.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "bench": "farm",
                "machine": f"{platform.machine()} cores={os.cpu_count()}",
                "frames": FRAMES,
                "resolution": [WIDTH, HEIGHT],
                "samples": SAMPLES,
                "direct_seconds": round(direct_s, 2),
                "market_seconds": round(market_s, 2),
                "overhead_ratio": round(ratio, 3),
                **checks,
                "unchecked_market_seconds": round(unchecked_s, 2),
                "unchecked_overhead_ratio": round(unchecked_s / direct_s, 3),
                "unchecked_settlements": unchecked["settlements"],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
