"""compose.yaml's production topology on one machine, without Docker, with agents on their own network hosts.

Servers as compose wires them: PostgreSQL with a password, the internal Redis (with a password here too), the
agent broker with compose's own arguments (`default` user off, the market's ACL user; the market adds one ACL
user per node), an S3 server (moto's, standing in for MinIO), gunicorn with several workers, one Celery worker
per queue (`celery`, `heavy`) and beat, all with compose's environment (DEBUG off, generated secrets, S3).

The market's public address lives on a bridge with no ports (it survives any agent host going away). Each
agent host is a network namespace joined to the host by a veth pair on its own /24 (10.77.N.0/24) with a
default route through the host: an agent reaches the web, the agent broker and S3 only at the public address,
over its veth; its own loopback has nothing on it. Postgres and the internal Redis listen on loopback only,
as on compose's private network.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import psycopg
import requests

from scripts.services import Postgres, Redis, free_port, wait_port
from tests.deploy.helpers import clean_env, compose, compose_app_env, generated_dotenv, interpolate

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
PREFIX = "mc"  # names of this module's namespaces and links: mc<pid in hex>-<role>, at most 15 characters
# Shortened timings so lost agents and lost messages are noticed within seconds (the test farm's, but for the
# lease: on a loaded machine an agent's first heartbeat naming a new lease can come more than 8 s after it).
FAST_TIMINGS = {
    "DISPATCH_LEASE_SECONDS": "15",
    "REAP_EVERY_SECONDS": "2",
    "NODE_HEARTBEAT_SECONDS": "2",
    "NODE_OFFLINE_AFTER_SECONDS": "30",
    "VERIFICATION_PLATFORM_RESUME_AFTER_S": "20",
}


def unavailable() -> str | None:
    """Why this machine cannot run the cluster (None when it can): network namespaces need root and iproute2."""
    if os.geteuid() != 0:
        return "needs root: network namespaces and veth pairs (CI runs as root)"
    if not shutil.which("ip"):
        return "needs the `ip` command (iproute2) for network namespaces"
    if not shutil.which("unshare"):
        return "needs `unshare` (util-linux) to check that network namespaces work"
    if subprocess.run(["unshare", "--net", "true"], check=False, capture_output=True).returncode != 0:
        return "this kernel or container does not allow new network namespaces (unshare --net failed)"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _kill_netns(name: str, veth: str) -> None:
    """SIGKILL every process in the namespace (the host's power cut), then delete its veth pair and the
    namespace. The veth goes explicitly: the kernel frees a namespace's devices only some time after its last
    process is gone."""
    for pid in _ip("netns", "pids", name, check=False).stdout.split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    _ip("link", "del", veth, check=False)
    _ip("netns", "del", name, check=False)


def remove_stale_networks() -> None:
    """Namespaces and links left by a run that was itself killed (its pid, in the names, is gone)."""
    stale = re.compile(rf"^{PREFIX}([0-9a-f]+)-")
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if (m := stale.match(name)) and not _alive(int(m.group(1), 16)):
            _kill_netns(name, veth=name.replace("-a", "-h"))
    for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if (m := stale.match(name)) and not _alive(int(m.group(1), 16)):
            _ip("link", "del", name, check=False)


def _free_block(size: int) -> int:
    """A third octet b with 10.77.b.0/24 … 10.77.(b+size-1).0/24 unused on this host (parallel runs)."""
    used = {int(m) for m in re.findall(r"inet 10\.77\.(\d+)\.", _ip("-o", "-4", "addr", "show").stdout)}
    for block in range(0, 256 - size, size):
        if not used & set(range(block, block + size)):
            return block
    raise RuntimeError("no free 10.77.x.0/24 block for the cluster's networks")


@dataclass
class AgentHost:
    """One agent machine: a network namespace with a veth to the host, on 10.77.N.0/24."""

    netns: str
    veth: str  # the host's end of the pair
    host_ip: str  # the host's end of the veth, the namespace's default gateway
    ip: str  # the agent's address, the only one it can send from

    def run(self, argv: list[str], **popen) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.netns, *argv], **popen)


class Network:
    """The market's public address and the agent hosts' namespaces; `close()` deletes all of it."""

    def __init__(self, hosts: int) -> None:
        remove_stale_networks()
        self.tag = f"{PREFIX}{os.getpid():x}"
        self.block = _free_block(hosts + 1)
        self.bridge = f"{self.tag}-pub"
        self.public_ip = f"10.77.{self.block}.1"
        self.hosts: list[AgentHost] = []
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.public_ip}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for n in range(1, hosts + 1):
                self._add_host(n)
        except subprocess.CalledProcessError as exc:
            self.close()
            raise RuntimeError(f"ip {' '.join(exc.cmd[1:])}: {exc.stderr}") from exc

    def _add_host(self, n: int) -> None:
        net = f"10.77.{self.block + n}"
        outside, inside = f"{self.tag}-h{n}", f"{self.tag}-a{n}"
        host = AgentHost(netns=inside, veth=outside, host_ip=f"{net}.1", ip=f"{net}.2")
        _ip("netns", "add", host.netns)
        self.hosts.append(host)  # from here on close() removes it
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", inside)
        _ip("addr", "add", f"{host.host_ip}/24", "dev", outside)
        _ip("link", "set", outside, "up")
        _ip("-n", host.netns, "addr", "add", f"{host.ip}/24", "dev", inside)
        _ip("-n", host.netns, "link", "set", inside, "up")
        _ip("-n", host.netns, "link", "set", "lo", "up")
        _ip("-n", host.netns, "route", "add", "default", "via", host.host_ip)

    def kill_host(self, host: AgentHost) -> None:
        _kill_netns(host.netns, host.veth)

    def close(self) -> None:
        for host in self.hosts:
            _kill_netns(host.netns, host.veth)
        _ip("link", "del", self.bridge, check=False)


class Cluster:
    """Every process of the topology; `running_cluster()` starts it and always stops all of it."""

    def __init__(self, tmp: Path, *, agent_hosts: int = 3, web_workers: int = 3) -> None:
        self.tmp, self.agent_hosts, self.web_workers = tmp, agent_hosts, web_workers
        self.procs: dict[str, subprocess.Popen] = {}
        self.servers: list[Postgres | Redis] = []
        self.network: Network | None = None
        self.pg_dir: Path | None = None
        self.started = time.monotonic()

    def mark(self, what: str) -> None:
        """A line of the run's timeline (pytest shows it with -s, and with a failure)."""
        print(f"cluster +{time.monotonic() - self.started:5.1f}s {what}", flush=True)

    # --- start ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.network = Network(self.agent_hosts)
        public = self.network.public_ip
        dotenv = generated_dotenv(self.tmp)  # the documented .env generator: fresh strong secrets
        self.web_port, self.broker_port, self.s3_port = free_port(), free_port(), free_port()
        self.public_url = f"http://{public}:{self.web_port}"

        # PostgreSQL runs as an unprivileged user, which cannot enter pytest's root-only temp dirs.
        self.pg_dir = Path(tempfile.mkdtemp(prefix="market-cluster-pg-"))
        os.chmod(self.pg_dir, 0o755)
        self.postgres = Postgres(port=free_port(), workdir=self.pg_dir / "pg", password=dotenv["POSTGRES_PASSWORD"])
        self._server(self.postgres)
        self.redis_password = secrets.token_urlsafe(24)
        self.redis = Redis(port=free_port(), workdir=self.tmp / "redis", args=["--requirepass", self.redis_password])
        self._server(self.redis)
        broker_argv = [interpolate(a, dotenv) for a in compose()["services"]["agent-broker"]["command"]]
        assert broker_argv[0] == "redis-server"
        # compose publishes the broker's port to other machines: here it listens on the public address too.
        self.broker = Redis(
            port=self.broker_port, workdir=self.tmp / "broker", args=[*broker_argv[1:], "--bind", "127.0.0.1", public]
        )
        self._server(self.broker)
        self.mark("network, postgres, redis, agent broker up")
        s3_env = clean_env(self.tmp, HOME=str(self.tmp / "home"))
        self._spawn("s3", [PY, "-m", "moto.server", "-H", public, "-p", str(self.s3_port)], env=s3_env)
        wait_port(self.s3_port, host=public)

        self.env = self._app_env(dotenv)
        s3 = boto3.client(
            "s3",
            endpoint_url=self.env["AWS_S3_ENDPOINT_URL"],
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket=self.env["STORAGE_URL"].removeprefix("s3://").split("/")[0])

        # As compose's `web` command: migrate, then gunicorn with several workers.
        migrate = subprocess.run(
            [PY, "manage.py", "migrate", "--noinput", "-v", "0"],
            check=False,
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert migrate.returncode == 0, migrate.stderr[-3000:]
        self.mark("s3 up, migrated")
        self._spawn(
            "web",
            [
                PY,
                "-m",
                "gunicorn",
                "marketplace.wsgi:application",
                "-b",
                f"{public}:{self.web_port}",
                "-w",
                str(self.web_workers),
                "--access-logfile",
                str(self.tmp / "web-access.log"),
            ],
        )
        self.start_celery("default")
        self.start_celery("heavy")
        self._spawn("beat", [PY, "-m", "celery", "-A", "marketplace", "beat", "-s", str(self.tmp / "beat-schedule")])
        self._wait_web()
        self.mark(f"web ({self.web_workers} gunicorn workers), celery, heavy, beat up at {self.public_url}")

    def _app_env(self, dotenv: dict[str, str]) -> dict[str, str]:
        """compose's app environment, every variable of it, with this machine's addresses in the service names'
        place. No TLS proxy here, so PUBLIC_URL is plain http and no forwarded header is trusted."""
        public = self.network.public_ip
        addresses = {
            "DATABASE_URL": self.postgres.url,
            "REDIS_URL": f"redis://:{self.redis_password}@127.0.0.1:{self.redis.port}/0",
            "AGENT_BROKER_URL": f"redis://market:{dotenv['AGENT_BROKER_PASSWORD']}@127.0.0.1:{self.broker_port}/0",
            "AGENT_BROKER_PUBLIC_URL": f"redis://{public}:{self.broker_port}/0",
            "AWS_S3_ENDPOINT_URL": f"http://{public}:{self.s3_port}",
            "ALLOWED_HOSTS": public,
            "PUBLIC_URL": self.public_url,
            "TRUST_X_FORWARDED_PROTO": "0",
            "TRUSTED_PROXY_COUNT": "0",
        }
        env = compose_app_env(dotenv)
        assert set(addresses) <= set(env) and env["DEBUG"] == "0", "compose's environment changed: update this"
        extra = {"LOG_LEVEL": "INFO", "HOME": str(self.tmp / "home")}
        if runtimes := os.environ.get("BLENDER_RUNTIMES_DIR"):
            extra["BLENDER_RUNTIMES_DIR"] = runtimes
        return clean_env(self.tmp, **(env | addresses | FAST_TIMINGS | extra))

    def _server(self, server: Postgres | Redis) -> None:
        self.servers.append(server)
        server.start()

    def _log(self, name: str):
        return open(self.tmp / f"{name}.log", "ab")  # the child process keeps it open

    def _spawn(self, name: str, argv: list[str], *, host: AgentHost | None = None, env: dict | None = None) -> None:
        popen = {
            "env": env or self.env,
            "cwd": ROOT,
            "stdout": self._log(name),
            "stderr": subprocess.STDOUT,
            "start_new_session": True,
        }
        self.procs[name] = host.run(argv, **popen) if host else subprocess.Popen(argv, **popen)

    def _wait_web(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.public_url}/accounts/login/", timeout=5).status_code == 200:
                    return
            if self.procs["web"].poll() is not None:
                break
            time.sleep(0.5)
        raise RuntimeError(f"gunicorn did not answer at {self.public_url}\n{self.logs()}")

    def start_celery(self, queue: str) -> None:
        """compose's `worker` (-Q celery, concurrency 2) or `worker-heavy` (-Q heavy, concurrency 1)."""
        queues = {"default": ("celery", "2"), "heavy": ("heavy", "1")}
        q, concurrency = queues[queue]
        tag = self.network.tag
        argv = [PY, "-m", "celery", "-A", "marketplace", "worker", "-Q", q, "-n", f"{queue}-{tag}@%h"]
        self._spawn(f"celery-{queue}", [*argv, "-l", "info", "--concurrency", concurrency])

    def start_agent(self, n: int, token: str) -> AgentHost:
        """`python -m workers run` inside agent host n (1-based), configured with the public address only."""
        host = self.network.hosts[n - 1]
        cache = self.tmp / f"agent{n}"
        cache.mkdir(exist_ok=True)
        config = cache / "config.json"
        settings = {"server": self.public_url, "token": token, "cache_dir": str(cache), "threads": 1}
        config.write_text(json.dumps(settings))
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOME": str(cache), "LOG_LEVEL": "INFO"}
        self._spawn(f"agent{n}", [PY, "-m", "workers", "--config", str(config), "run"], host=host, env=env)
        return host

    # --- chaos ---------------------------------------------------------------------------------------------
    def kill_agent_host(self, n: int) -> None:
        """The whole machine goes: every process in its namespace SIGKILLed, the namespace and veth deleted."""
        self.network.kill_host(self.network.hosts[n - 1])
        self.procs.pop(f"agent{n}").wait(10)

    def restart_broker(self) -> None:
        """The agent broker restarts: queued messages and per-node ACL users are gone (compose's arguments stay)."""
        self.broker.stop()
        self.broker.start()

    def kill(self, name: str) -> None:
        """SIGKILL a process with its children (a Celery worker's pool), like the OOM killer."""
        proc = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    # --- the market's own view -----------------------------------------------------------------------------
    def market(self, *args: str, timeout: float = 300) -> dict:
        """`python -m tests.cluster.market <args>` in the market's environment: its JSON answer."""
        done = subprocess.run(
            [PY, "-m", "tests.cluster.market", *args],
            check=False,
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT=")), "")
        if done.returncode != 0 or not line:
            raise RuntimeError(f"market {' '.join(args)} failed:\n{done.stderr[-4000:]}\n{self.logs()}")
        return json.loads(line.removeprefix("RESULT="))

    def wait_active_lease(self, node_id: int, timeout: float = 120) -> dict:
        """The first active lease of a node, seen within a tenth of a second: straight from Postgres, because a
        Django process can take longer to start on a loaded machine than a frame takes to render."""
        query = "SELECT id, frame_id, kind FROM dispatch_framelease WHERE node_id = %s AND state = 'active'"
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.postgres.url, autocommit=True) as db:
            while time.monotonic() < deadline:
                if row := db.execute(query, (node_id,)).fetchone():
                    return {"lease": row[0], "frame": row[1], "kind": row[2]}
                time.sleep(0.1)
        raise RuntimeError(f"node {node_id} held no lease within {timeout}s\n{self.logs()}")

    def broker_clients(self) -> list[dict[str, str]]:
        """The agent broker's CLIENT LIST (as the market's user): who is connected, as which user, from where."""
        import redis

        client = redis.Redis.from_url(self.env["AGENT_BROKER_URL"])
        try:
            return client.client_list()
        finally:
            client.close()

    def web_clients(self) -> set[str]:
        """Client addresses in gunicorn's access log (its default format starts with the remote address)."""
        return {line.split()[0] for line in (self.tmp / "web-access.log").read_text().splitlines() if line.strip()}

    def logs(self, tail: int = 3000) -> str:
        files = sorted(self.tmp.glob("*.log"))
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-tail:]}" for p in files)

    # --- stop ----------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Everything, whatever state it is in: agents (with their namespaces), app processes, servers, links."""
        if self.network:
            self.network.close()
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        for server in reversed(self.servers):
            with contextlib.suppress(Exception):
                server.stop()
        if self.pg_dir:
            shutil.rmtree(self.pg_dir, ignore_errors=True)


@contextlib.contextmanager
def running_cluster(tmp: Path, **options) -> Iterator[Cluster]:
    cluster = Cluster(tmp, **options)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
