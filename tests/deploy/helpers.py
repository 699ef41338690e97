"""Run Django with a given environment in a fresh process: production settings are read once, at import."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
STRONG_KEY = secrets.token_urlsafe(50)

_PRINT = """
import json, django
django.setup()
from django.conf import settings
from marketplace.payments import conf
names = {names!r}
print("SETTINGS=" + json.dumps({{n: getattr(settings, n, None) for n in names}}
                              | {{"dev_provider_allowed": conf.dev_provider_allowed()}}, default=str))
"""


def clean_env(tmp: Path, **env: str) -> dict[str, str]:
    """Only what the process needs, never the test run's own DEBUG or keys."""
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "VAR_DIR": str(tmp / "var"),
        "DJANGO_SETTINGS_MODULE": "marketplace.settings",
        "LOG_LEVEL": "WARNING",
    }
    return base | env


def django_run(tmp: Path, code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        env=clean_env(tmp, **env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def settings_of(tmp: Path, names: list[str], **env: str) -> dict:
    """The named settings as production would load them with `env` (fails the test if Django refuses)."""
    done = django_run(tmp, _PRINT.format(names=names), **env)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("SETTINGS="))
    return json.loads(line.removeprefix("SETTINGS="))


def manage(tmp: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        check=False,
        env=clean_env(tmp, **env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


def generated_dotenv(tmp: Path) -> dict[str, str]:
    """Run the one-line generator documented in .env.example (and the README) and read the .env it writes."""
    example = (ROOT / ".env.example").read_text()
    line = next(ln.strip().lstrip("#").strip() for ln in example.splitlines() if "> .env" in ln)
    line = line.replace("python3 ", f"{sys.executable} ", 1)
    subprocess.run(line, shell=True, cwd=tmp, check=True, timeout=60)
    values = {}
    for raw in (tmp / ".env").read_text().splitlines():
        if raw.strip() and not raw.startswith("#"):
            name, _, value = raw.partition("=")
            values[name.strip()] = value.strip()
    return values


_VAR = re.compile(r"\$\{(\w+)(?::([?-])([^}]*))?\}")


def interpolate(value: str, dotenv: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} against a .env; a missing required one fails."""

    def one(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if dotenv.get(name):
            return dotenv[name]
        if op == "?":
            raise KeyError(f"compose would refuse to start: {name} is required ({arg})")
        return arg if op == "-" else ""

    return _VAR.sub(one, value)


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def compose_app_env(dotenv: dict[str, str]) -> dict[str, str]:
    """The environment compose gives the web, worker and beat containers."""
    env = compose()["services"]["web"]["environment"]
    return {k: interpolate(str(v), dotenv) for k, v in env.items()}
