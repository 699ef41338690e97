"""The web tier's CPU per agent call: what one frame costs the market's web workers, by endpoint.

bench_dispatch calls the services directly, so it leaves out what every agent request adds: Django's handler and
middleware, the node's authentication, request parsing and response rendering. At farm scale that is the biggest
share of the market's Python (100,000 nodes heartbeating every NODE_HEARTBEAT_SECONDS are ~10,000 requests a
second before any frame is rendered). One agent renders BENCH_FRAMES frames the way the real one calls the API
(`workers/`): its heartbeat, the lease's details, the upload to the signed URL, the next lease taken ahead, the
report, through Django's request handler in this process (no HTTP server: a server's parsing is the same for
every framework), on Postgres and Redis. Celery tasks go to Redis and are not run here (bench_dispatch measures
the settlement). CPU is this process's (time.process_time: Postgres' and Redis' work is theirs), per call:
median and mean by endpoint, after BENCH_WARMUP frames. `cpu_ms_per_frame` sums the five; `cpu_ms_per_agent_frame`
only the calls a busy agent makes each frame (it takes the details from `next`'s answer and beats per pace).
BENCH_SIZE (default 32x24) is the frames' size: at 1920x1080 the upload is a render-like 8-bit PNG (gradients and
Cycles-like noise, ~4 MB) and the report's check of it (decode, blank check, thumbnail) weighs as it does in a
farm; that run writes agent_api_1920x1080.json.
BENCH_CHECK_RATE (default 0: the node is never checked) is the node's check rate: at 0.5 half its leases are
drawn for a check when granted (`verification.services.lease_sampled`), and a tenth of that rate are canaries
(`verification.policy.CANARY_SHARE`). The node must not be able to tell either, so `next_wall_by_draw` compares
the wall time the agent waits for `next` when the lease it gets is sampled and when it is not (the network's
jitter comes on top in production), `next_wall_by_canary` the calls that handed it a canary with the others, and
`report_wall_by_canary` the reports of canaries with the others.
That run queues a canary scene for each canary the node can get (a provider never gets a scene twice) and renews
the node's canary offer after each frame, as the periodic task does (`canary_offers_renew`, outside the calls);
it writes agent_api_rate<rate>.json.
BENCH_STORAGE=s3 puts the results on an S3 server (moto's, in its own process) as a deployment does: the agent
uploads to the presigned URL over HTTP, and the report's storage requests (boto3's signing and parsing) are in
the web tier's CPU; `agent_api_s3.json`.
Run: `make bench BENCH=agent_api` (env BENCH_FRAMES, default 300); writes bench/results/agent_api.json.
"""

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import django
import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ["CELERY_TASK_ALWAYS_EAGER"] = "0"  # tasks go to Redis, as in production; nothing runs them here
FRAMES = int(os.environ.get("BENCH_FRAMES", "300"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "20"))
CALLS = ("heartbeat", "details", "upload", "next", "report")
SIZE = os.environ.get("BENCH_SIZE", "32x24")
CHECK_RATE = float(os.environ.get("BENCH_CHECK_RATE", "0"))
# "s3": results go to an S3 server (moto's, in a process of its own, so its CPU is not the web tier's) as in
# production, and the agent uploads to the presigned URL over HTTP; "local" (default): this server's disk.
STORAGE = os.environ.get("BENCH_STORAGE", "local")


def s3_start() -> subprocess.Popen:
    """A moto S3 server with the bench's bucket; STORAGE_URL and its endpoint set as a deployment sets them."""
    import boto3

    from scripts.services import free_port, wait_port

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_port(port)
    for name, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench")):
        os.environ[name] = value
    os.environ["AWS_S3_REGION_NAME"] = os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    os.environ["AWS_S3_ENDPOINT_URL"] = endpoint = f"http://127.0.0.1:{port}"
    os.environ["STORAGE_URL"] = "s3://bench/market"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="bench")
    return server


def render_like_png(width: int, height: int) -> bytes:
    """An 8-bit PNG that compresses like a render: smooth gradients under per-pixel noise."""
    import io

    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(0).normal(0, 8, (height, width, 3))
    pixels = np.stack([x / width * 255, y / height * 255, (x + y) % 256], axis=-1) + noise
    buf = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def main() -> None:
    s3 = s3_start() if STORAGE == "s3" else None
    try:
        run()
    finally:
        if s3 is not None:
            s3.terminate()


def run() -> None:
    django.setup()
    import redis
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from marketplace.accounts.models import User
    from marketplace.dispatch import queues, services
    from marketplace.dispatch.models import FrameLease
    from marketplace.verification import canaries, policy
    from marketplace.verification import services as verification
    from marketplace.verification.models import CanaryAnswer, NodeTrust
    from tests.fixtures.market import REPORT, make_node, make_queued_job, png_bytes
    from tests.fixtures.money import fund

    if connection.vendor != "postgresql":
        sys.exit("bench_agent_api needs Postgres: run `make bench BENCH=agent_api`")
    call_command("migrate", verbosity=0)
    artist = User.objects.create(username="bench-artist")
    fund(artist, 10**15)
    width, height = (int(side) for side in SIZE.split("x"))
    make_queued_job(artist, frames=FRAMES + WARMUP + 2, price=1_000_000, width=width, height=height)
    provider = User.objects.create(username="bench-provider", role=User.Role.PROVIDER)
    node, token = make_node(provider, name="bench-node", unchecked=True)
    NodeTrust.objects.filter(node=node).update(check_rate=CHECK_RATE)
    canary_report = {**REPORT, "frame_start": 1, "frame_end": 1, "effective_width": width, "effective_height": height}
    for n in range(int((FRAMES + WARMUP) * CHECK_RATE * policy.CANARY_SHARE * 2) + 5 if CHECK_RATE else 0):
        job = canaries.canary_job_store(
            owner=canaries.canary_owner(), blend=b"canary %d" % n, report=canary_report, name=f"canary {n}"
        )
        CanaryAnswer.objects.create(frame=job.frames.get(), answer_key=f"bench/answer{n}.png")  # never judged here
        canaries.canary_job_open(job_id=job.pk)
    verification.canary_offers_renew()
    broker = redis.Redis.from_url(settings.AGENT_BROKER_URL)
    agent = Client(HTTP_AUTHORIZATION=f"Node {token}")
    storage = Client()  # the signed upload URL needs no token (in production it is S3's)
    png = png_bytes(32, 24) if (width, height) == (32, 24) else render_like_png(width, height)
    services.match_frames()
    message = json.loads(broker.rpop(queues.queue_key(node.pk)))

    def timed(name: str, method, *args, **kwargs):
        start, start_wall = time.process_time(), time.perf_counter()
        response = method(*args, **kwargs)
        spent[name].append(time.process_time() - start)
        waited[name].append(time.perf_counter() - start_wall)
        assert response.status_code in (200, 201), (name, response.status_code, response.content[:300])
        return response

    spent: dict[str, list[float]] = {name: [] for name in CALLS}
    waited: dict[str, list[float]] = {name: [] for name in CALLS}
    next_by_draw: dict[bool, list[float]] = {True: [], False: []}
    next_by_canary: dict[bool, list[float]] = {True: [], False: []}
    report_by_canary: dict[bool, list[float]] = {True: [], False: []}
    reporting_canary = False  # whether the lease reported next is a canary
    wall = time.perf_counter()
    for i in range(FRAMES + WARMUP):
        if i == WARMUP:
            spent = {name: [] for name in CALLS}
            waited = {name: [] for name in CALLS}
            next_by_draw = {True: [], False: []}
            next_by_canary = {True: [], False: []}
            report_by_canary = {True: [], False: []}
            wall = time.perf_counter()
        lease, lease_token = message["lease"], message["token"]
        body = json.dumps({"leases": [lease]})
        timed("heartbeat", agent.post, "/api/v1/agent/heartbeat/", body, content_type="application/json")
        details = timed("details", agent.get, f"/api/v1/agent/leases/{lease}/", HTTP_X_LEASE_TOKEN=lease_token).json()
        if STORAGE == "s3":  # the agent's PUT to S3: this process's CPU, but none of the web tier's
            timed("upload", requests.put, details["upload_url"], data=png, timeout=30)
        else:
            upload = details["upload_url"].removeprefix(settings.PUBLIC_URL)
            timed("upload", storage.generic, "PUT", upload, png, content_type="application/octet-stream")
        token_body = json.dumps({"token": lease_token})
        timed("next", agent.post, f"/api/v1/agent/leases/{lease}/next/", token_body, "application/json")
        message = json.loads(broker.rpop(queues.queue_key(node.pk)))  # the next lease, as the agent takes it
        sampled, canary = (
            FrameLease.objects.filter(pk=message["lease"]).values_list("sampled", "frame__job__is_canary").get()
        )
        next_by_draw[bool(sampled)].append(waited["next"][-1])
        next_by_canary[canary].append(waited["next"][-1])
        report = json.dumps({"token": lease_token, "ok": True, "stats": {"seconds": 1.0}})
        timed("report", agent.post, f"/api/v1/agent/leases/{lease}/report/", report, "application/json")
        report_by_canary[reporting_canary].append(waited["report"][-1])
        reporting_canary = canary
        if CHECK_RATE:
            verification.canary_offers_renew()  # the periodic task's work, outside the agent's calls
    wall = time.perf_counter() - wall
    row = {
        name: {
            "median_ms": round(statistics.median(times) * 1000, 3),
            "mean_ms": round(statistics.mean(times) * 1000, 3),
        }
        for name, times in spent.items()
    }
    per_frame = sum(sum(times) for times in spent.values()) * 1000 / FRAMES
    print(f"{'call':<10} {'median ms':>10} {'mean ms':>8}   (CPU of this process per call, {FRAMES} frames)")
    for name, figures in row.items():
        print(f"{name:<10} {figures['median_ms']:>10} {figures['mean_ms']:>8}")
    print(f"per frame: {per_frame:.2f} ms of CPU in {len(CALLS)} calls; {FRAMES / wall:.1f} frames/s on one process")
    # What a busy node's frame costs the web tier: the real agent takes a lease's details from the `next` answer
    # that leased it (it GETs them only for its first lease), beats once per heartbeat pace, not per frame, and on
    # S3 uploads past the web tier. This bench times every call on every frame, to have each call's cost.
    agent_calls = ("next", "report") if STORAGE == "s3" else ("upload", "next", "report")
    agent_frame = sum(sum(spent[name]) for name in agent_calls) * 1000 / FRAMES
    print(f"a busy agent's frame: {agent_frame:.2f} ms of CPU ({', '.join(agent_calls)}), heartbeats apart")
    by_draw = _wall_figures({("sampled" if draw else "not_sampled"): times for draw, times in next_by_draw.items()})
    by_canary = _wall_figures({("canary" if c else "not_canary"): times for c, times in next_by_canary.items()})
    report_canary = _wall_figures({("canary" if c else "not_canary"): t for c, t in report_by_canary.items()})
    for call, groups in (("next", {**by_draw, **by_canary}), ("report", report_canary)):
        for group, figures in groups.items():
            calls, median, p90 = figures["calls"], figures["median_ms"], figures["p90_ms"]
            print(f"{call}, {group}: {calls} calls, wall median {median} ms, p90 {p90} ms")
    settlement_check = digest_checks() if STORAGE == "s3" else {}
    for way, figures in settlement_check.items():
        cpu_ms, wall_ms = figures["cpu_ms"], figures["wall_ms"]
        print(f"settlement's digest check, {way}: CPU median {cpu_ms} ms, wall median {wall_ms} ms")
    name = ("agent_api" if SIZE == "32x24" else f"agent_api_{SIZE}") + ("_s3" if STORAGE == "s3" else "")
    path = ROOT / "bench" / "results" / (f"{name}.json" if not CHECK_RATE else f"{name}_rate{CHECK_RATE:g}.json")
    path.write_text(
        json.dumps(
            {
                "bench": "agent_api",
                "machine": f"{platform.machine()} cores={os.cpu_count()}",
                "frames": FRAMES,
                "frame_size": SIZE,
                "storage": STORAGE,
                "upload_bytes": len(png),
                "cpu_ms_per_call": row,
                "cpu_ms_per_frame": round(per_frame, 2),
                "cpu_ms_per_agent_frame": round(agent_frame, 2),
                "agent_frame_calls": list(agent_calls),
                "frames_per_s_one_process": round(FRAMES / wall, 1),
                "check_rate": CHECK_RATE,
                "next_wall_by_draw": by_draw,
                "next_wall_by_canary": by_canary,
                "report_wall_by_canary": report_canary,
                "settlement_digest_check": settlement_check,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {path.relative_to(ROOT)}")


def digest_checks() -> dict[str, dict]:
    """What the settlement's check of a reported frame's result costs (`dispatch.batch.results_check`, in Celery),
    for the frames this run reported: read back whole and hashed (`blob_read_checked`, what it did until session
    19 and still does for a result without S3's checksum), and S3's checksum of it in a HEAD
    (`blob_digest_check`). Median CPU and wall milliseconds a frame."""
    from marketplace import blobs
    from marketplace.jobs.models import Frame

    frames = list(Frame.objects.exclude(result_key="").values_list("result_key", "result_sha256")[:100])
    out = {}
    for way, check in (("read_and_hash", blobs.blob_read_checked), ("s3_checksum_head", blobs.blob_digest_check)):
        cpu, wall = [], []
        for key, sha in frames:
            start, start_wall = time.process_time(), time.perf_counter()
            check(key, sha256=sha)
            cpu.append(time.process_time() - start)
            wall.append(time.perf_counter() - start_wall)
        out[way] = {
            "frames": len(frames),
            "cpu_ms": round(statistics.median(cpu) * 1000, 3),
            "wall_ms": round(statistics.median(wall) * 1000, 3),
        }
    return out


def _wall_figures(groups: dict[str, list[float]]) -> dict[str, dict]:
    """Calls, median and p90 (ms) of each group of wall times with at least two."""
    return {
        name: {
            "calls": len(times),
            "median_ms": round(statistics.median(times) * 1000, 3),
            "p90_ms": round(statistics.quantiles(times, n=10)[-1] * 1000, 3),
        }
        for name, times in groups.items()
        if len(times) >= 2
    }


if __name__ == "__main__":
    main()
