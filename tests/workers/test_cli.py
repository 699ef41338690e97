"""The agent CLI through click's runner: register, doctor, render, and clear errors."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from tests.fixtures.market import database_sessions_left
from workers.cli import cli
from workers.config import AgentConfig


@pytest.fixture
def config_path(tmp_path) -> Path:
    return tmp_path / "agent.json"


def invoke(config_path: Path, *args: str):
    return CliRunner().invoke(cli, ["--config", str(config_path), *args], catch_exceptions=False)


@pytest.mark.django_db(transaction=True)
def test_register_checks_the_token_with_the_marketplace_and_saves_the_config(live_server, provider, config_path):
    from marketplace.nodes.services import node_create

    _, token = node_create(owner=provider, name="rig")
    bad = invoke(config_path, "register", "--server", live_server.url, "--token", token + "x")
    assert bad.exit_code != 0 and "refused this token" in bad.output and not config_path.exists()
    ok = invoke(
        config_path,
        "register",
        "--server",
        live_server.url,
        "--token",
        token,
        "--threads",
        "2",
        "--gpus",
        "0,1",
        "--schedule",
        "22:00-07:00",
    )
    assert ok.exit_code == 0, ok.output
    saved = AgentConfig.load(config_path)
    assert (saved.token, saved.threads, saved.gpus, saved.schedule) == (token, 2, [0, 1], "22:00-07:00")
    assert config_path.stat().st_mode & 0o077 == 0  # the token is not readable by other users
    assert database_sessions_left() == 0  # the command hung up: the market's worker and its session are free


def test_register_explains_an_unreachable_server(config_path):
    result = invoke(config_path, "register", "--server", "http://127.0.0.1:9", "--token", "nd1.x")
    assert result.exit_code != 0 and "cannot reach" in result.output


def test_commands_needing_a_config_say_how_to_get_one(config_path):
    result = invoke(config_path, "run")
    assert result.exit_code != 0 and "python -m workers register" in result.output


def test_doctor_lists_the_cpu_and_explains_the_missing_gpu(config_path):
    result = invoke(config_path, "doctor", "--json")
    report = json.loads(result.output)
    assert report["chosen"] == "CPU" and any(d["type"] == "CPU" for d in report["devices"])
    assert report["explanations"] and report["blender_version"].startswith("5.0")


def test_render_writes_one_frame_with_the_sandboxed_renderer(config_path, tmp_path):
    from workers.blend import make_demo_scene

    scene = make_demo_scene(tmp_path / "demo.blend", frames=3, resolution=(48, 32), samples=4)
    out = tmp_path / "f2.png"
    result = invoke(config_path, "render", str(scene), "--frame", "2", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (48, 32)
    bad = invoke(config_path, "render", str(scene), "--frame", "2", "--out", str(out), "--resolution", "big")
    assert bad.exit_code != 0 and "WxH" in bad.output
