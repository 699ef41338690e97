"""`make test`: start real PostgreSQL and Redis on loopback in a temp dir, run pytest against them, stop.

Exports DATABASE_URL (Postgres) and REDIS_URL/TEST_REDIS_URL so the whole suite runs on Postgres and the
broker tests use a real Redis. Extra arguments go to pytest.
"""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.services import Postgres, Redis, free_port  # noqa: E402


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="market-test-") as tmp:
        os.chmod(tmp, 0o755)
        pg = Postgres(port=free_port(), workdir=Path(tmp) / "pg")
        redis = Redis(port=free_port(), workdir=Path(tmp) / "redis")
        try:
            pg.start()
            redis.start()
            env = dict(os.environ, DATABASE_URL=pg.url, REDIS_URL=f"{redis.url}/0", TEST_REDIS_URL=redis.url,
                       TEST_REDIS_PORT=str(redis.port), VAR_DIR=str(Path(tmp) / "var"), DEBUG="1")
            print(f"testenv: postgres {pg.url}  redis {redis.url}", flush=True)
            return subprocess.call([sys.executable, "-m", "pytest", *sys.argv[1:]], env=env)
        finally:
            redis.stop()
            pg.stop()


if __name__ == "__main__":
    sys.exit(main())
