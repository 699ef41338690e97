"""What waiting agents cost the agent broker (issue 17): BENCH_AGENTS agents (2,000; run it with 10,500 too) each
connect as its own ACL user (`nodes.broker.node_broker_url`) to a redis-server started with compose.yaml's
agent-broker arguments, and wait for work the way the agent does: BLMOVE on its own queue, blocking
BENCH_BLOCK_SECONDS (the agent's `BROKER_WAIT_SECONDS`, 10), again and again (`workers.agent`). Over BENCH_SECONDS
(20) of waiting: how many agents the broker took (and the refusals, by message), the broker's CPU per agent and
per BLMOVE, its memory per connection, and BLMOVEs a second. Then one message is delivered to every agent's queue
(`dispatch.queues.deliver`) and the time until all are taken. The agents are asyncio connections of this
process, which is the bench's client, not measured.
Run: `make bench BENCH=broker` (env BENCH_AGENTS, BENCH_SECONDS, BENCH_BLOCK_SECONDS, BENCH_BROKER_ARGS: extra
redis-server arguments).
"""

import asyncio
import json
import os
import platform
import secrets
import shlex
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scripts.services import Redis, free_port  # noqa: E402
from tests.bench._cpu import process_trees_cpu_s  # noqa: E402
from tests.deploy.helpers import compose, interpolate  # noqa: E402
from workers.agent import BROKER_WAIT_SECONDS  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
AGENTS = int(os.environ.get("BENCH_AGENTS", "2000"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "20"))
EXTRA_ARGS = shlex.split(os.environ.get("BENCH_BROKER_ARGS", ""))
# The agent's wait for a delivery (`workers.agent.BROKER_WAIT_SECONDS`; 2 s until session 19).
BLOCK_SECONDS = float(os.environ.get("BENCH_BLOCK_SECONDS", str(BROKER_WAIT_SECONDS)))


def broker_start(workdir: Path) -> tuple[Redis, str]:
    """redis-server with compose.yaml's agent-broker arguments (and BENCH_BROKER_ARGS); the market's URL."""
    password = secrets.token_urlsafe(24)
    argv = [
        interpolate(a, {"AGENT_BROKER_PASSWORD": password}) for a in compose()["services"]["agent-broker"]["command"]
    ]
    assert argv[0] == "redis-server"
    server = Redis(port=free_port(), workdir=workdir, args=[*argv[1:], *EXTRA_ARGS]).start()
    return server, f"redis://market:{password}@127.0.0.1:{server.port}/0"


async def agents_wait(urls: list[str], keys: list[tuple[str, str]], stop: asyncio.Event, taken: list[float]):
    """Each agent connects with its own user and BLMOVEs until `stop`; a message taken is timed into `taken`.
    The refusals met, by message."""
    import redis.asyncio as aredis

    refused: Counter[str] = Counter()
    connected = [0]

    async def one(url: str, queue: str, processing: str) -> None:
        client = aredis.Redis.from_url(url, socket_timeout=30)
        try:
            await client.ping()
        except Exception as exc:  # the bench reports every refusal, whatever its kind
            refused[str(exc)[:80]] += 1
            await client.aclose()
            return
        connected[0] += 1
        try:
            while not stop.is_set():
                got = await client.blmove(queue, processing, BLOCK_SECONDS, "RIGHT", "LEFT")
                if got is not None:
                    taken.append(time.monotonic())
                    await client.lrem(processing, 1, got)
        except Exception as exc:  # a connection the broker dropped
            refused[f"while waiting: {str(exc)[:80]}"] += 1
        finally:
            await client.aclose()

    tasks = [asyncio.create_task(one(url, q, p)) for url, (q, p) in zip(urls, keys, strict=True)]
    await asyncio.gather(*tasks)
    return connected[0], refused


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server, market_url = broker_start(Path(tmp) / "broker")
        os.environ["AGENT_BROKER_URL"] = market_url
        os.environ["AGENT_BROKER_PUBLIC_URL"] = ""
        django.setup()
        try:
            run(server)
        finally:
            server.stop()


def run(server: Redis) -> None:
    from marketplace.dispatch import queues
    from marketplace.nodes.broker import agent_redis, node_broker_url

    market = agent_redis()
    maxclients = int(market.config_get("maxclients")["maxclients"])
    t = time.perf_counter()
    urls = [node_broker_url(node_id=i) for i in range(1, AGENTS + 1)]
    keys = [(queues.queue_key(i), queues.queue_key(i).rsplit(":", 1)[0] + ":processing") for i in range(1, AGENTS + 1)]
    print(f"{AGENTS} ACL users in {time.perf_counter() - t:.1f}s; broker maxclients {maxclients}", flush=True)
    memory_before = market.info("memory")["used_memory"]

    async def scenario() -> dict:
        stop, taken = asyncio.Event(), []
        waiting = asyncio.create_task(agents_wait(urls, keys, stop, taken))
        await asyncio.sleep(5)  # every agent connected and waiting
        clients = market.info("clients")["connected_clients"]
        memory = market.info("memory")["used_memory"]
        calls_before = market.info("commandstats").get("cmdstat_blmove", {}).get("calls", 0)
        cpu_before = process_trees_cpu_s({"broker": server.proc.pid})["broker"]
        t0 = time.monotonic()
        await asyncio.sleep(SECONDS)
        cpu = process_trees_cpu_s({"broker": server.proc.pid})["broker"] - cpu_before
        window = time.monotonic() - t0
        calls = market.info("commandstats").get("cmdstat_blmove", {}).get("calls", 0) - calls_before
        sent = time.monotonic()
        for i in range(1, AGENTS + 1):
            queues.deliver(node_id=i, message={"lease": i, "token": "bench"})
        while len(taken) < clients - 1 and time.monotonic() - sent < 10:
            await asyncio.sleep(0.05)
        delivered_s = (max(taken) - sent) if taken else None
        stop.set()
        connected, refused = await waiting
        return {
            "agents_connected": connected,
            "refused": dict(refused),
            "broker_clients": clients,
            "memory_per_connection_kb": round((memory - memory_before) / max(connected, 1) / 1024, 1),
            "blmove_per_s": round(calls / window, 1),
            "broker_cpu_share": round(cpu / window, 4),
            "broker_cpu_us_per_blmove": round(cpu / max(calls, 1) * 1e6, 2),
            "broker_cpu_ms_per_agent_hour": round(cpu / window / max(connected, 1) * 3600 * 1000, 2),
            "messages_taken": len(taken),
            "all_taken_after_s": round(delivered_s, 3) if delivered_s is not None else None,
        }

    row = {"agents": AGENTS, "seconds": SECONDS, "block_seconds": BLOCK_SECONDS, "maxclients": maxclients}
    row.update(asyncio.run(scenario()))
    row["broker_args_extra"] = EXTRA_ARGS
    print(json.dumps(row, indent=2))
    share = row["broker_cpu_share"] / max(row["agents_connected"], 1)
    for farm in (10_000, 100_000):
        cores, calls = share * farm, farm / BLOCK_SECONDS
        print(f"  at {farm:,} waiting agents: ~{cores:.2f} of the broker's one core, {calls:,.0f} BLMOVE/s")
    suffix = ("" if AGENTS == 2000 else f"_{AGENTS}") + (
        "" if BLOCK_SECONDS == BROKER_WAIT_SECONDS else f"_block{BLOCK_SECONDS:g}"
    )
    path = ROOT / "bench" / "results" / f"broker{suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.machine()} cores={os.cpu_count()}"
    path.write_text(json.dumps({"bench": "broker", "machine": machine, **row}, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")
    if row["agents_connected"] < AGENTS:
        sys.exit(f"FAILED RUN: the broker took {row['agents_connected']} of {AGENTS} agents: {row['refused']}")


if __name__ == "__main__":
    main()
