"""`make run`: everything on one machine. Redis (system or bundled) if REDIS_URL is unset, migrations,
demo data, two Celery workers (the default queue with beat; the `heavy` queue for inspection and platform crop
renders), the web server on 127.0.0.1:8000 and one local agent. Ctrl-C stops all.

Dev mode is explicit here, never a default of the settings: DEBUG=1 (the dev SECRET_KEY is then allowed) and
PAYMENTS_DEV_PROVIDER=1 (the simulated payment provider, which mints tokens).
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from scripts.services import Redis  # noqa: E402

PY = sys.executable
PORT = int(os.environ.get("PORT", "8000"))


def _stop_on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM stops everything as cleanly as Ctrl-C


def dev_env(base: dict[str, str]) -> dict[str, str]:
    """The environment of every `make run` process: dev mode and the simulated payments, said explicitly."""
    env = dict(base)
    env.setdefault("DEBUG", "1")
    env.setdefault("PAYMENTS_DEV_PROVIDER", "1")
    env.setdefault("PUBLIC_URL", f"http://127.0.0.1:{PORT}")
    return env


def main() -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    env = dev_env(dict(os.environ))
    var = Path(env.setdefault("VAR_DIR", str(ROOT / "var")))
    procs: list[tuple[str, subprocess.Popen]] = []
    redis = None
    if not env.get("REDIS_URL"):
        redis = Redis(port=int(env.get("REDIS_PORT", "6390")), workdir=var / "redis").start()
        env["REDIS_URL"] = f"{redis.url}/0"
        print(f"started Redis at {redis.url}")
    manage = [PY, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=env, check=True)
    subprocess.run([*manage, "demo_setup"], env=env, check=True)
    try:
        celery = [PY, "-m", "celery", "-A", "marketplace", "worker", "-l", "info"]
        procs.append(
            (
                "celery",
                subprocess.Popen(
                    [
                        *celery,
                        "-Q",
                        "celery",
                        "-n",
                        "default@%h",
                        "-B",
                        "--concurrency",
                        "2",
                        "--schedule",
                        str(var / "celerybeat-schedule"),
                    ],
                    env=env,
                    cwd=ROOT,
                ),
            )
        )
        procs.append(
            (
                "celery-heavy",
                subprocess.Popen([*celery, "-Q", "heavy", "-n", "heavy@%h", "--concurrency", "1"], env=env, cwd=ROOT),
            )
        )
        procs.append(
            ("web", subprocess.Popen([*manage, "runserver", f"127.0.0.1:{PORT}", "--noreload"], env=env, cwd=ROOT))
        )
        time.sleep(3)
        procs.append(
            (
                "agent",
                subprocess.Popen(
                    [PY, "-m", "workers", "--config", str(var / "agent" / "config.json"), "run"], env=env, cwd=ROOT
                ),
            )
        )
        print(f"\nRender market running: http://127.0.0.1:{PORT}/  (Redis, Celery workers+beat, web, local agent)")
        print("Log in with the demo passwords printed above. Ctrl-C stops everything.\n", flush=True)
        while all(p.poll() is None for _, p in procs):
            time.sleep(1)
        for name, p in procs:
            if p.poll() is not None:
                print(f"{name} exited with {p.returncode}; stopping the rest")
        return 1
    except KeyboardInterrupt:
        print("\nstopping…")
        return 0
    finally:
        for _, p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for _, p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        if redis:
            redis.stop()


if __name__ == "__main__":
    sys.exit(main())
