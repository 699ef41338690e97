"""compose.yaml ships no secret, and `check --deploy` is clean with exactly the environment it gives the app."""

import pytest

from tests.deploy.helpers import ROOT, compose, compose_app_env, generated_dotenv, interpolate, manage

SECRET_NAMES = ("SECRET_KEY", "POSTGRES_PASSWORD", "AGENT_BROKER_PASSWORD", "MINIO_ROOT_PASSWORD")


def test_compose_holds_no_secret_and_refuses_to_start_without_one(tmp_path):
    text = (ROOT / "compose.yaml").read_text()
    for known in ("change-me", "market-secret", "POSTGRES_PASSWORD: market"):
        assert known not in text
    full = generated_dotenv(tmp_path)
    for name in SECRET_NAMES:
        with pytest.raises(KeyError, match=f"{name} is required"):
            compose_app_env({k: v for k, v in full.items() if k != name})


def test_the_generated_env_has_strong_distinct_secrets(tmp_path):
    example = (ROOT / ".env.example").read_text()
    line = next(ln.strip().lstrip("#").strip() for ln in example.splitlines() if "> .env" in ln)
    assert line in (ROOT / "README.md").read_text()  # the README shows the same one-liner
    dotenv = generated_dotenv(tmp_path)
    values = [dotenv[name] for name in SECRET_NAMES]
    assert len(set(values)) == len(values) and all(len(v) >= 32 for v in values)
    assert len(dotenv["SECRET_KEY"]) >= 50 and dotenv["PUBLIC_URL"].startswith("https://")


@pytest.mark.slow
def test_check_deploy_reports_nothing_with_the_compose_settings(tmp_path):
    env = compose_app_env(generated_dotenv(tmp_path))
    assert env["DEBUG"] == "0" and "@agent-broker" in env["AGENT_BROKER_URL"]
    done = manage(tmp_path, "check", "--deploy", "--fail-level", "DEBUG", env=env)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "System check identified no issues (0 silenced)." in done.stdout


@pytest.mark.slow
def test_check_deploy_flags_a_passwordless_broker_dev_payments_and_plain_http(tmp_path):
    env = compose_app_env(generated_dotenv(tmp_path)) | {
        "AGENT_BROKER_URL": "redis://agent-broker:6379/0",
        "PUBLIC_URL": "http://market.example.com",
        "PAYMENTS_DEV_PROVIDER": "1",
    }
    done = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING", env=env)
    assert done.returncode != 0
    for check_id in ("market.W001", "market.W002", "market.W003", "security.W008", "security.W012", "security.W004"):
        assert check_id in done.stderr + done.stdout


def test_the_agent_broker_disables_default_and_the_market_logs_in_as_its_own_user(tmp_path):
    dotenv = generated_dotenv(tmp_path)
    argv = [interpolate(a, dotenv) for a in compose()["services"]["agent-broker"]["command"]]
    assert argv[:4] == ["redis-server", "--user", "default", "off"]
    assert f">{dotenv['AGENT_BROKER_PASSWORD']}" in argv
    assert compose_app_env(dotenv)["AGENT_BROKER_URL"].startswith(f"redis://market:{dotenv['AGENT_BROKER_PASSWORD']}@")


def test_the_agent_broker_takes_a_connection_from_each_of_100000_agents():
    """Every running agent holds one connection to the agent broker; Redis' default maxclients (10,000) refused the
    10,000th agent (bench_broker: 501 of 10,500 refused), and the container's open files must cover the setting."""
    broker = compose()["services"]["agent-broker"]
    command = broker["command"]
    maxclients = int(command[command.index("--maxclients") + 1])
    assert maxclients >= 100_000 + 1_000  # the farm size issue 17 names, and the market's own connections
    nofile = broker["ulimits"]["nofile"]
    assert min(nofile["soft"], nofile["hard"]) >= maxclients + 32  # Redis keeps 32 descriptors for itself
