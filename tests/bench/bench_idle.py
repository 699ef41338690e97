"""Idle cost: the CPU the market's services take while nothing happens (no job queued, one agent online and
waiting). On a machine that also renders (`make run`, bench_farm, a provider who hosts a small market), every
idle millisecond is taken from Blender; in production it is what a quiet market costs.

Starts the farm bench_farm starts (web, Celery worker + beat, heavy-queue worker, one agent, Redis, Postgres),
waits until the workers answer a ping and the agent said hello, lets start-up settle, then measures each
service's CPU time (utime + stime of all its processes, from /proc) over BENCH_IDLE_SECONDS (default 60).
Prints CPU milliseconds per second of wall time (1000 = one core busy) by service and writes
bench/results/idle.json.
Run: `make bench BENCH=idle`.
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
SECONDS = float(os.environ.get("BENCH_IDLE_SECONDS", "60"))
SETTLE_SECONDS = 10.0  # start-up work (imports, the first beat round, the agent's benchmark) is not idle cost
TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()  # fields from the 3rd on (the name may hold spaces)


def _processes() -> list[tuple[int, int, int, float]]:
    """(pid, parent pid, session id, CPU seconds incl. reaped children) of every process."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            f = _stat(int(proc.name))
        except OSError:
            continue
        out.append((int(proc.name), int(f[1]), int(f[3]), sum(int(x) for x in f[11:15]) / TICK))
    return out


def cpu_by_service(sessions: dict[str, int], postmaster: int, redis_pid: int) -> dict[str, float]:
    """CPU seconds so far of each farm process's session (a Celery worker's pool and beat are in it), of the
    Postgres server (the postmaster and its children) and of Redis."""
    procs = _processes()
    by_session = {name: sum(cpu for _, _, sid, cpu in procs if sid == leader) for name, leader in sessions.items()}
    postgres = sum(cpu for pid, ppid, _, cpu in procs if postmaster in (pid, ppid))
    redis = sum(cpu for pid, _, _, cpu in procs if pid == redis_pid)
    return {**by_session, "postgres": postgres, "redis": redis}


def main() -> None:
    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from marketplace.accounts.models import User
    from marketplace.celery import app
    from marketplace.nodes.services import node_create
    from scripts.services import Redis, free_port, wait_port
    from tests.fixtures.farm import Farm

    if connection.vendor != "postgresql":
        sys.exit("bench_idle needs Postgres: run `make bench BENCH=idle`")
    call_command("migrate", verbosity=0)
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    postmaster = int(_stat(backend)[1])
    redis_url = settings.REDIS_URL.rsplit("/", 1)[0]
    redis = Redis(port=int(redis_url.rsplit(":", 1)[1]), workdir=Path(tempfile.mkdtemp()))
    redis_pid = next(pid for pid, _, _, _ in _processes() if f":{redis.port}" in _cmdline(pid))
    provider = User.objects.create(username=f"idle-provider-{time.time_ns()}", role=User.Role.PROVIDER)
    node, token = node_create(owner=provider, name="idle agent")
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        farm = Farm(Path(tmp), f"http://127.0.0.1:{port}", redis)
        for quick in ("DISPATCH_LEASE_SECONDS", "REAP_EVERY_SECONDS", "NODE_HEARTBEAT_SECONDS"):
            farm.env.pop(quick)  # the market's own timings, as bench_farm runs them
        try:
            farm.start_web(port)
            wait_port(port)
            farm.start_celery()
            farm.start_agent("agent", token, threads=0)
            while len(app.control.ping(timeout=0.5)) < 2 or node.status == "offline":
                time.sleep(0.2)
                node.refresh_from_db()
            connection.close()  # this process's own connection would be an idle backend; it is not the market's
            time.sleep(SETTLE_SECONDS)
            sessions = {name: proc.pid for name, proc in farm.procs.items()}
            before, t = cpu_by_service(sessions, postmaster, redis_pid), time.monotonic()
            time.sleep(SECONDS)
            after, wall = cpu_by_service(sessions, postmaster, redis_pid), time.monotonic() - t
        finally:
            farm.stop_all()
    per_s = {name: round((after[name] - before[name]) * 1000 / wall, 1) for name in after}
    total = round(sum(per_s.values()), 1)
    print(f"idle for {wall:.0f} s; CPU ms per second of wall time (1000 = one core):")
    for name, ms in sorted(per_s.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<14} {ms:>7}")
    print(f"  {'total':<14} {total:>7}  ({total / 10 / (os.cpu_count() or 1):.1f} % of the machine)")
    path = ROOT / "bench" / "results" / "idle.json"
    path.write_text(
        json.dumps(
            {
                "bench": "idle",
                "machine": f"{platform.machine()} cores={os.cpu_count()}",
                "seconds": round(wall, 1),
                "cpu_ms_per_s": per_s,
                "cpu_ms_per_s_total": total,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {path.relative_to(ROOT)}")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


if __name__ == "__main__":
    main()
