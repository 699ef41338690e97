"""Farm overhead: the same N frames of the demo scene rendered (a) directly by bpy in one process and
(b) through the whole marketplace (web server, Celery worker + beat, Redis, one local agent, Postgres,
settlement). Prints both times and the overhead ratio (b)/(a); writes bench/results/farm.json.

Both sides render the same frames, size and samples with every CPU core, and both pay one Blender start and
scene load inside the timed window. The marketplace runs twice: its node at steady trust (check rate at the
policy floor, as a long-running provider would be: the platform verifier's crop renders share this machine's
two cores with the agent), and unchecked (dispatch, transfer and settlement alone). A brand-new node is
checked on every frame until it has earned trust. BENCH_RUNS runs (default 3), each direct, steady, direct,
unchecked, direct: each market side is divided by the mean of the direct renders on either side of it, so a
drift of the machine's speed within a run biases neither; the JSON keeps every run, the median and the worst.

Every second of the marketplace's wall time is accounted for (`breakdown`): the agent's critical path from its
own per-lease step times (`event=lease_timing`: lease details, scene download/unpack, Blender start + scene
load, render, upload, report), the gaps between a report and the next lease's arrival, and the tail from the
last report to the last settlement (frame_rendered, crops, settle; Frame.settled_at); `unaccounted` is what
is left (the agent's time in a lease outside its named steps). Work beside the
critical path (`beside`) is listed with its compute: platform crop renders (cold or warm, from
`event=platform_render`), Celery task seconds by task, thumbnails (made by the report; the settlement
checks the digest), canaries. `steal_share` is the hypervisor's share of the machine's CPU time in each
phase (/proc/stat): on a shared virtual machine a phase with more of it renders slower for reasons neither
side of the ratio owns.
BENCH_HOSTS=split keeps the provider's machine and the market's servers apart, as production does: the
renders (direct, and the agent with its Blender) run on the first core, the market (web, Celery and the
platform verifier, Postgres, Redis, this bench's polling) on the others, and the results go to
farm_split.json. With "shared" (the default, farm.json) everything shares every core, so the market's own
compute (Celery tasks, the platform verifier's crop renders) slows the render it is compared with; `cpu_s`
says how much of it there was.
Run: `make bench BENCH=farm` (env BENCH_FRAMES, BENCH_RUNS, BENCH_HOSTS).
"""

import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench._cpu import (  # noqa: E402
    cpu_ticks,
    on_cpus,
    pids_running,
    pin_tree,
    postmaster_pid,
    process_trees_cpu_s,
    steal_share,
)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ["CELERY_TASK_ALWAYS_EAGER"] = "0"
FRAMES = int(os.environ.get("BENCH_FRAMES", "12"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
WIDTH, HEIGHT, SAMPLES = 320, 180, 32
# "shared": every process on every core, as on one machine. "split": the provider's machine and the market's
# servers apart, as in production: the renders (direct, and the agent with its Blender) on the first core, the
# market (web, Celery and the platform verifier, Postgres, Redis, this bench's polling) on the others.
HOSTS = os.environ.get("BENCH_HOSTS", "shared")
_CPUS = sorted(os.sched_getaffinity(0))
RENDER_CPUS, MARKET_CPUS = ({_CPUS[0]}, set(_CPUS[1:])) if HOSTS == "split" else (None, None)
RESULTS = ROOT / "bench" / "results" / ("farm.json" if HOSTS == "shared" else f"farm_{HOSTS}.json")

os.environ["LOG_FORMAT"] = "json"  # the farm's processes (agent, Celery) log JSON lines, which this bench reads
CELERY_TASK = re.compile(r"Task ([\w.]+)\[[^\]]+\] succeeded in ([\d.e-]+)s")


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def direct(blend: Path, out: Path) -> dict:
    from workers.blend.renderer import Renderer

    ticks, children = cpu_ticks(), os.times()
    t = time.perf_counter()
    render_s = 0.0
    with on_cpus(RENDER_CPUS), Renderer(timeout_s=600) as renderer:
        renderer.load(blend, blend.parent)
        load_s = time.perf_counter() - t
        for n in range(1, FRAMES + 1):
            stats = renderer.render(
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
            render_s += stats["total_seconds"]
    seconds, reaped = time.perf_counter() - t, os.times()
    blender_cpu_s = reaped.children_user + reaped.children_system - children.children_user - children.children_system
    return {
        "seconds": seconds,
        "load_s": load_s,
        "render_s": render_s,
        "steal": steal_share(ticks),
        "blender_cpu_s": round(blender_cpu_s, 2),
    }


def _log_events(path: Path) -> list[dict]:
    """The JSON log lines of a farm process (other output, such as Blender's, is skipped)."""
    events = []
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events


def _celery_tasks(paths: list[Path], start: float, end: float) -> dict[str, dict]:
    """Seconds per Celery task name over the tasks that finished inside [start, end] (epoch seconds)."""
    tasks: dict[str, dict] = defaultdict(lambda: {"count": 0, "seconds": 0.0})
    for path in paths:
        for event in _log_events(path):
            m = CELERY_TASK.search(str(event.get("event", "")))
            if not m:
                continue
            finished = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
            if start <= finished <= end + 1:
                tasks[m.group(1)]["count"] += 1
                tasks[m.group(1)]["seconds"] += float(m.group(2))
    return {name: {"count": t["count"], "seconds": round(t["seconds"], 3)} for name, t in sorted(tasks.items())}


def _platform_renders(path: Path) -> dict:
    events = _log_events(path)
    renders = [e for e in events if e.get("event") == "platform_render"]
    # Loaded when the job was accepted (verification.platform_prewarm), beside the agent's own scene load.
    prewarms = [e for e in events if e.get("event") == "platform_prewarm"]
    return {
        "prewarm_loads": len(prewarms),
        "prewarm_load_s": round(sum(float(e["scene_s"]) + float(e["load_s"]) for e in prewarms), 3),
        "crops": len(renders),
        "blender_starts": sum(bool(r["blender_started"]) for r in renders),
        "scene_loads": sum(bool(r["scene_loaded"]) for r in renders),
        "scene_fetch_s": round(sum(float(r["scene_s"]) for r in renders), 3),
        "blender_load_s": round(sum(float(r["load_s"]) for r in renders), 3),
        "crop_render_s": round(sum(float(r["render_s"]) for r in renders), 3),
    }


def thumbnail_seconds(job) -> float:
    """The result work beside the render since session 8, on this job's frozen results, repeated here after the
    run (the logs give only totals): the settlement's digest-checked read, and the report's thumbnail (encoded
    from the image its checks decode anyway, and stored). The decode itself is not counted: the report's checks
    did it before thumbnails moved there."""
    import io

    from marketplace import blobs
    from marketplace.dispatch import conf
    from marketplace.jobs.models import Frame
    from render_kernels import image_from_bytes, thumbnail_png

    spent = 0.0
    for key, sha in Frame.objects.filter(job=job).values_list("result_key", "result_sha256"):
        t = time.perf_counter()
        data = blobs.blob_read_checked(key, sha256=sha, max_bytes=conf.RESULT_MAX_BYTES)
        spent += time.perf_counter() - t
        image = image_from_bytes(data, size=(WIDTH, HEIGHT))
        t = time.perf_counter()
        png = thumbnail_png(image)
        blobs.blob_put(key=f"thumbs/bench-{sha[:16]}.png", fileobj=io.BytesIO(png))
        spent += time.perf_counter() - t
    return spent


def breakdown(tmp: Path, job, *, start: float, end: float) -> dict:
    """Where the market's wall time [start, end] (epoch seconds) went; the critical-path entries sum to it."""
    from marketplace.dispatch.models import FrameLease
    from marketplace.jobs.models import Frame
    from marketplace.verification.models import CropCheck, FrameCheck

    leases = []
    for event in _log_events(tmp / "agent.log"):
        if event.get("event") == "lease_timing":
            steps = {k.removesuffix("_s"): float(v) for k, v in event.items() if k.endswith("_s")}
            leases.append(
                {
                    "kind": event["kind"],
                    "received": event["received"],
                    # When the work loop moved on (the sender uploads and reports while the next frame renders).
                    "handed_off": event.get("handed_off", event["done"]),
                    "done": event["done"],
                    **steps,
                }
            )
    leases = [le for le in leases if le["received"] >= start]
    leases.sort(key=lambda le: le["received"])
    path: dict[str, float] = defaultdict(float)
    sent_beside: dict[str, float] = defaultdict(float)
    next_ahead = sum(le.get("next_ahead", 0.0) for le in leases)  # taken while the render ran on (workers.agent)
    path["first_lease_wait"] = leases[0]["received"] - start
    for prev, le in zip([None, *leases], leases, strict=False):
        if prev is not None:
            path["lease_gaps"] += le["received"] - prev["handed_off"]  # moved on -> next lease message taken
        steps = {k: le.get(k, 0.0) for k in ("details", "scene", "load", "render", "next")}
        sending = {k: le.get(k, 0.0) for k in ("upload", "report")}
        if le["handed_off"] < le["done"]:  # sent by the sender thread, beside the next frame's render
            for k, v in sending.items():
                sent_beside[k] += v
        else:
            steps.update(sending)
        for k, v in steps.items():
            path[k] += v
        path["agent_other"] += le["handed_off"] - le["received"] - sum(steps.values())
    settled = [f.timestamp() for f in Frame.objects.filter(job=job).values_list("settled_at", flat=True)]
    # The last result's upload, report and settlement: nothing renders beside them.
    path["settle_tail"] = max(settled) - leases[-1]["handed_off"]
    named = {
        "first_lease_wait": "match_frames -> first lease at the agent",
        "details": "GET lease details",
        "scene": "scene download + unpack",
        "load": "Blender start + scene load",
        "render": "render (agent's step)",
        "next": "next lease taken once the render ended (POST next), before the result is sent",
        "upload": "result upload (on the path only when not sent beside the next render)",
        "report": "report (idem)",
        "lease_gaps": "work loop moved on -> next lease's message taken",
        "settle_tail": "last lease handed off -> last frame settled (its upload, report, settlement)",
    }
    wall = end - start
    out = {k: round(path[k], 3) for k in named}
    out["unaccounted"] = round(wall - sum(out.values()), 3)  # agent_other + clock rounding
    checks = FrameCheck.objects.filter(frame__job=job)
    render_leases = FrameLease.objects.filter(frame__job=job, kind=FrameLease.Kind.RENDER)
    node_ids = list(render_leases.values_list("node_id", flat=True).distinct())
    celery_logs = [tmp / "celery.log", tmp / "celery-heavy.log"]
    return {
        "wall_s": round(wall, 3),
        "critical_path": out,
        "unaccounted_parts": {"agent_other": round(path["agent_other"], 3)},
        "leases": len(leases),
        "renders_per_frame": round(render_leases.count() / FRAMES, 3),
        "beside": {
            # the results' upload and report, by the sender thread while the next frame rendered
            "sent_beside_render": {k: round(v, 3) for k, v in sent_beside.items()},
            # next leases taken while the render ran on, before it ended (`next` is on the path when taken after)
            "next_ahead": round(next_ahead, 3),
            "next_ahead_leases": sum(1 for le in leases if "next_ahead" in le),
            "checks": checks.filter(kind=FrameCheck.Kind.CROPS).count(),
            "platform_crops": CropCheck.objects.filter(
                frame_check__frame__job=job, verifier=CropCheck.Verifier.PLATFORM
            ).count(),
            "platform": _platform_renders(tmp / "celery-heavy.log"),
            "canaries": FrameLease.objects.filter(node_id__in=node_ids, frame__job__is_canary=True).count(),
            "thumbnails_s": round(thumbnail_seconds(job), 3),
            "celery_tasks": _celery_tasks(celery_logs, start, end),
        },
    }


def market_cpu_s(farm) -> dict[str, float]:
    """CPU seconds so far of each farm process (with what it started; a Blender render server apart), of
    Postgres and of this bench's own polling."""
    roots = {name: proc.pid for name, proc in farm.procs.items()} | {"postgres": postmaster_pid()}
    return process_trees_cpu_s(roots) | {"bench": time.process_time()}


def through_market(blend: Path, tmp: Path, *, checked: bool) -> tuple[float, dict]:
    from django.conf import settings
    from django.core.management import call_command

    from marketplace.accounts.models import User
    from marketplace.celery import app
    from marketplace.dispatch.services import match_frames, node_goodbye
    from marketplace.jobs import events
    from marketplace.jobs.models import Frame
    from marketplace.ledger import selectors
    from marketplace.ledger.models import LedgerTransaction
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
    # The market's own timings, not the farm tests' quick ones (those reap every 2 s to catch a killed agent
    # fast: a reaper round and its matching pass every 2 s is CPU taken from the render that no farm pays).
    for quick in (
        "DISPATCH_LEASE_SECONDS",
        "REAP_EVERY_SECONDS",
        "NODE_HEARTBEAT_SECONDS",
        "NODE_OFFLINE_AFTER_SECONDS",
    ):
        farm.env.pop(quick)
    artist = User.objects.create(username=f"farm-artist-{time.time_ns()}")
    provider = User.objects.create(username=f"farm-provider-{time.time_ns()}", role=User.Role.PROVIDER)
    fund(artist, 10**12)
    node, token = node_create(owner=provider, name="bench agent")
    NodeTrust.objects.create(
        node=node, consecutive_passes=1000, check_rate=policy.check_rate(consecutive_passes=1000) if checked else 0.0
    )
    try:
        with on_cpus(MARKET_CPUS):
            farm.start_web(port)
            wait_port(port)
            farm.start_celery()
        with on_cpus(RENDER_CPUS):
            farm.start_agent("agent", token, threads=0)  # every core it has, as the direct render uses
        # A farm's services run all along: the clock starts once both Celery workers answer (their start-up
        # imports otherwise share the cores with the first frame's render) and the agent said hello.
        while len(app.control.ping(timeout=0.5)) < 2 or node.status == "offline":
            time.sleep(0.2)
            node.refresh_from_db()
        # The same frames, size and samples as the direct render: the ratio compares equal work.
        job = demo_job(artist, blend, frames=FRAMES, width=WIDTH, height=HEIGHT, samples=SAMPLES)
        start, ticks, cpu_before = time.time(), cpu_ticks(), market_cpu_s(farm)
        # What accepting the job emits (jobs.lifecycle.frames_create; the fixture stores the frames directly):
        # the platform verifier loads the scene ahead of its first crop, and a matching round starts.
        events.emit(events.FRAMES_QUEUED, frame_ids=list(job.frames.values_list("pk", flat=True)))
        match_frames()
        while Frame.objects.filter(job=job).exclude(state="settled").exists():
            time.sleep(0.25)  # seldom: the bench's own polling shares the two cores with the render
            if time.time() - start > 900:
                raise SystemExit("frames did not settle in 15 minutes:\n" + farm.logs())
        # Done when the last frame settled (Frame.settled_at), not when this poll noticed.
        end = max(f.timestamp() for f in Frame.objects.filter(job=job).values_list("settled_at", flat=True))
        elapsed, steal = end - start, steal_share(ticks)
        cpu_after = market_cpu_s(farm)
        cpu = {name: round(cpu_after[name] - cpu_before.get(name, 0.0), 2) for name in sorted(cpu_after)}
    finally:
        farm.stop_all()
        # Its agent is gone: the next run's matcher must not lease to it (a heartbeat a second old would
        # otherwise keep it matchable until it goes silent, and its leases would wait out their expiry).
        node_goodbye(node=node)
    settles = LedgerTransaction.objects.filter(
        idempotency_key__startswith="settle:frame:",
        idempotency_key__in=[f"settle:frame:{f.pk}" for f in job.frames.all()],
    )
    return elapsed, {
        "settlements": settles.count(),
        "ledger_total": selectors.ledger_total(),
        "drift": len(selectors.ledger_drift()),
        "steal": steal,
        "cpu_s": cpu,
        "breakdown": breakdown(tmp, job, start=start, end=end),
    }


def one_run(blend: Path, tmp: Path) -> dict:
    """Direct, steady, direct, unchecked, direct: each market side is compared with the mean of the direct
    renders just before and just after it, so a machine that speeds up or slows down during the run (a shared
    one drifts by several per cent within minutes) biases neither side."""
    load_before = load_average()
    directs = []

    def direct_now(name: str) -> dict:
        (tmp / name).mkdir()
        directs.append(direct(blend, tmp / name))
        return directs[-1]

    direct_now("direct-0")
    (tmp / "steady").mkdir()
    market_s, checks = through_market(blend, tmp / "steady", checked=True)
    direct_now("direct-1")
    (tmp / "unchecked").mkdir()
    unchecked_s, unchecked = through_market(blend, tmp / "unchecked", checked=False)
    direct_now("direct-2")
    steady_base = statistics.mean(d["seconds"] for d in directs[:2])
    unchecked_base = statistics.mean(d["seconds"] for d in directs[1:])
    return {
        "load_average_1m": [load_before, load_average()],
        "direct_seconds": round(steady_base, 2),
        "direct_seconds_each": [round(d["seconds"], 2) for d in directs],
        "direct_breakdown": {
            "load": round(statistics.mean(d["load_s"] for d in directs[:2]), 3),
            "render": round(statistics.mean(d["render_s"] for d in directs[:2]), 3),
        },
        "market_seconds": round(market_s, 2),
        "overhead_ratio": round(market_s / steady_base, 3),
        "unchecked_direct_seconds": round(unchecked_base, 2),
        "unchecked_market_seconds": round(unchecked_s, 2),
        "unchecked_overhead_ratio": round(unchecked_s / unchecked_base, 3),
        "settlements": checks["settlements"],
        "unchecked_settlements": unchecked["settlements"],
        "ledger_total": unchecked["ledger_total"],
        "drift": unchecked["drift"],
        # The hypervisor's share of the CPU in each phase (direct-0, steady, direct-1, unchecked, direct-2).
        "steal_share": [
            directs[0]["steal"],
            checks["steal"],
            directs[1]["steal"],
            unchecked["steal"],
            directs[2]["steal"],
        ],
        # CPU seconds in each market phase by process (the agent's Blender apart), and the direct renders' Blender.
        "cpu_s": {
            "direct_blender": [d["blender_cpu_s"] for d in directs],
            "steady": checks["cpu_s"],
            "unchecked": unchecked["cpu_s"],
        },
        "breakdown": checks["breakdown"],
        "unchecked_breakdown": unchecked["breakdown"],
    }


def print_run(i: int, run: dict) -> None:
    path, beside = run["breakdown"]["critical_path"], run["breakdown"]["beside"]
    print(
        f"run {i}: load {run['load_average_1m']}  direct {run['direct_seconds_each']} s  "
        f"steady {run['market_seconds']:.2f} s ({run['overhead_ratio']:.3f})  "
        f"unchecked {run['unchecked_market_seconds']:.2f} s ({run['unchecked_overhead_ratio']:.3f})  "
        f"checks {beside['checks']} crops {beside['platform']['crops']} "
        f"(blender starts {beside['platform']['blender_starts']}, scene loads {beside['platform']['scene_loads']})"
    )
    print("   steal share (direct, steady, direct, unchecked, direct):", run["steal_share"])
    print("   CPU s:", run["cpu_s"])
    print("   direct:", run["direct_breakdown"])
    print("   steady:", path)
    print("   unchecked:", run["unchecked_breakdown"]["critical_path"])


def derived(run: dict) -> dict:
    """Figures that do not depend on how fast Blender rendered in each phase (other work on a shared machine
    changes that by up to 2-3x between the direct and the market phases of one run): the market's wall time
    against a direct render at the market's own Blender speed (its render + load seconds plus the direct
    side's few seconds outside Blender), and the platform verifier's compute. The equal-render ratio leaves
    out what the market's own processes (verifier included) do to the render's speed: on a loaded 2-core
    machine that cannot be told apart from the other engineers' load."""
    direct_other = run["direct_seconds"] - sum(run["direct_breakdown"].values())
    out = {"direct_outside_blender_s": round(direct_other, 3)}
    for side, key in (("steady", "breakdown"), ("unchecked", "unchecked_breakdown")):
        path = run[key]["critical_path"]
        blender = path["render"] + path["load"]
        out[f"{side}_outside_blender_s"] = round(run[key]["wall_s"] - blender, 3)
        out[f"{side}_ratio_equal_render"] = round(run[key]["wall_s"] / (blender + direct_other), 4)
        out[f"{side}_render_s_per_frame"] = round(path["render"] / FRAMES, 3)
    platform = run["breakdown"]["beside"]["celery_tasks"].get("verification.platform_crop", {"seconds": 0.0})
    render = run["breakdown"]["critical_path"]["render"]
    out["direct_render_s_per_frame"] = round(run["direct_breakdown"]["render"] / FRAMES, 3)
    out["platform_crop_task_s"] = platform["seconds"]
    out["platform_crop_task_s_per_render_s"] = round(platform["seconds"] / render, 4)
    return out


def write_results(runs: list[dict]) -> Path:
    """farm.json over the runs so far (written after each run: a loaded machine may not finish them all)."""
    for run in runs:
        run["derived"] = derived(run)
    equal = [r["derived"]["steady_ratio_equal_render"] for r in runs]
    ratios = [r["overhead_ratio"] for r in runs]
    unchecked = [r["unchecked_overhead_ratio"] for r in runs]
    median_run = sorted(runs, key=lambda r: r["overhead_ratio"])[(len(runs) - 1) // 2]
    summary = {
        "runs_done": len(runs),
        "overhead_ratio": round(statistics.median(ratios), 3),
        "overhead_ratio_worst": max(ratios),
        "unchecked_overhead_ratio": round(statistics.median(unchecked), 3),
        "unchecked_overhead_ratio_worst": max(unchecked),
        "overhead_ratio_equal_render": round(statistics.median(equal), 4),
        "overhead_ratio_equal_render_worst": max(equal),
    }
    print(f"{FRAMES} frames {WIDTH}x{HEIGHT} {SAMPLES} spp, {len(runs)} runs on a shared machine:", summary)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "bench": "farm",
                "hosts": HOSTS,
                "cpus": {"render": sorted(RENDER_CPUS), "market": sorted(MARKET_CPUS)} if RENDER_CPUS else "all",
                "machine": f"{platform.machine()} cores={os.cpu_count()}",
                "note": "a machine shared with other engineers' tests: load_average_1m is uptime's, before and after",
                "frames": FRAMES,
                "resolution": [WIDTH, HEIGHT],
                "samples": SAMPLES,
                **summary,
                # The median run's figures under the keys earlier versions wrote.
                "direct_seconds": median_run["direct_seconds"],
                "market_seconds": median_run["market_seconds"],
                "unchecked_market_seconds": median_run["unchecked_market_seconds"],
                "settlements": median_run["settlements"],
                "ledger_total": median_run["ledger_total"],
                "drift": median_run["drift"],
                "breakdown": median_run["breakdown"],
                "runs": runs,
            },
            indent=2,
        )
        + "\n"
    )
    return RESULTS


def main() -> None:
    django.setup()
    from django.conf import settings
    from django.db import connection

    from workers.blend import make_demo_scene

    if sys.argv[1:] == ["--summarize"]:  # the summary again over the runs farm.json holds (after a bench change)
        write_results(json.loads(RESULTS.read_text())["runs"])
        return
    if connection.vendor != "postgresql":
        sys.exit("bench_farm needs Postgres and Redis: run `make bench BENCH=farm`")
    if HOSTS == "split":
        if not MARKET_CPUS:
            sys.exit("BENCH_HOSTS=split needs two cores at least")
        redis_port = settings.REDIS_URL.rsplit("/", 1)[0].rsplit(":", 1)[1]
        for server in [postmaster_pid(), *pids_running(b"redis-server", f":{redis_port}".encode())]:
            pin_tree(server, MARKET_CPUS)
        os.sched_setaffinity(0, MARKET_CPUS)  # this bench's polling is the market's too
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-farm-") as tmp_s:
        tmp = Path(tmp_s)
        blend = tmp / "demo.blend"
        make_demo_scene(blend, frames=FRAMES, resolution=(WIDTH, HEIGHT), samples=SAMPLES)
        for i in range(RUNS):
            (tmp / f"run{i}").mkdir()
            runs.append(one_run(blend, tmp / f"run{i}"))
            print_run(i, runs[-1])
            path = write_results(runs)
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
