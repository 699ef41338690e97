"""`make test` / `make bench`: start real PostgreSQL and Redis on loopback in a temp dir, run pytest against them, stop.

Exports DATABASE_URL (Postgres) and REDIS_URL/TEST_REDIS_URL so the whole suite runs on Postgres and the
broker tests use a real Redis. Extra arguments go to pytest. `--sqlite` (`make test-sqlite`): Redis only, and
the database `make run` uses, SQLite in the temp dir (the tests marked postgres skip themselves there).
"""

import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.services import Postgres, Redis, chromium_binary, free_port

ROOT = Path(__file__).resolve().parent.parent


def run_benches(names: list[str], env: dict) -> int:
    """`make bench [BENCH=name]`: each tests/bench/bench_*.py as a script, with the same services."""
    scripts = sorted((ROOT / "tests" / "bench").glob("bench_*.py"))
    if names:
        scripts = [s for s in scripts if any(n in s.name for n in names)]
    failed = 0
    for script in scripts:
        print(f"== {script.name}", flush=True)
        failed += subprocess.call([sys.executable, str(script)], env=dict(env, PYTHONPATH=str(ROOT)), cwd=ROOT) != 0
    return 1 if failed else 0


def main() -> int:
    bench = sys.argv[1:2] == ["--bench"]
    sqlite = sys.argv[1:2] == ["--sqlite"]
    args = sys.argv[2:] if sqlite else sys.argv[1:]
    chromium = "" if bench or sqlite else chromium_binary()
    if chromium is None:
        print(
            "testenv: no Chromium for the browser tests: apt-get install chromium "
            "(or, with internet access, python -m playwright install chromium)",
            file=sys.stderr,
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="market-test-") as tmp:
        os.chmod(tmp, 0o755)
        pg = None if sqlite else Postgres(port=free_port(), workdir=Path(tmp) / "pg", statement_stats=bench)
        redis = Redis(port=free_port(), workdir=Path(tmp) / "redis")
        try:
            if pg is not None:
                pg.start()
            redis.start()
            database = pg.url if pg is not None else f"sqlite:///{tmp}/test.sqlite3"
            env = dict(
                os.environ,
                DATABASE_URL=database,
                REDIS_URL=f"{redis.url}/0",
                TEST_REDIS_URL=redis.url,
                TEST_REDIS_PORT=str(redis.port),
                VAR_DIR=str(Path(tmp) / "var"),
                BLENDER_RUNTIMES_DIR=os.environ.get("BLENDER_RUNTIMES_DIR", str(ROOT / "var" / "blender")),
                CHROMIUM_PATH=chromium,
                DEBUG="1",
            )  # dev mode said explicitly (the settings default is off); dev payments stay off
            print(f"testenv: database {database}  redis {redis.url}", flush=True)
            if bench:
                # Benches measure the production configuration: DEBUG off (no SQL capture in connection.queries,
                # JSON logs), so they need a strong key of their own.
                env.update(DEBUG="0", SECRET_KEY=secrets.token_urlsafe(50))
                return run_benches(sys.argv[2:], env)
            return subprocess.call([sys.executable, "-m", "pytest", *args], env=env)
        finally:
            redis.stop()
            if pg is not None:
                pg.stop()


if __name__ == "__main__":
    sys.exit(main())
