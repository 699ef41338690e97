"""The scene sandbox fails closed: where Landlock cannot be applied the agent refuses strangers' scenes,
unless its owner passes --allow-unsandboxed; `doctor` says whether the sandbox works; hello reports it.

Landlock being unavailable is simulated with $BLEND_SANDBOX_NO_LANDLOCK=1 (it reaches the sandboxed
children, where `_landlock.abi_version()` then answers 0 as on a kernel without Landlock).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.fixtures.blend_factory import BlendFactory
from tests.fixtures.market import database_sessions_left
from workers.blend import _landlock
from workers.blend.renderer import Renderer
from workers.blend.sandbox import Limits, SandboxUnavailable, check_isolation, run_bpy_module
from workers.cli import cli
from workers.config import AgentConfig

pytest_plugins = ["tests.fixtures.blend_fixtures"]
needs_landlock = pytest.mark.skipif(_landlock.abi_version() < 1, reason="kernel without Landlock")
PROBE = "tests.fixtures._sandbox_probe"


@pytest.fixture
def no_landlock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_landlock.SIMULATE_UNAVAILABLE_ENV, "1")


@needs_landlock
def test_check_isolation_reads_outside_for_real() -> None:
    assert check_isolation() == {"works": True, "detail": f"Landlock enabled (ABI {_landlock.abi_version()})"}


def test_check_isolation_says_when_it_does_not_work(no_landlock: None) -> None:
    out = check_isolation()
    assert out["works"] is False and "Landlock unavailable" in out["detail"]


def test_a_child_that_requires_isolation_refuses_to_run_without_it(no_landlock: None, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    with pytest.raises(SandboxUnavailable) as err:
        run_bpy_module(PROBE, [json.dumps({"read": [str(secret)]})], limits=Limits(require_isolation=True))
    assert err.value.reason == "sandbox" and "could not be applied" in str(err.value)
    # Not required: it runs (and, with Landlock gone, can read what it should not: why the default matters).
    out = run_bpy_module(PROBE, [json.dumps({"read": [str(secret)]})], limits=Limits()).result
    assert out["readable"][str(secret)] is True


@pytest.mark.slow
def test_the_renderer_refuses_a_scene_without_the_sandbox(
    no_landlock: None, blend_factory: BlendFactory, tmp_path: Path
) -> None:
    case = blend_factory.get("demo")
    with Renderer() as r:
        with pytest.raises(SandboxUnavailable, match="filesystem isolation is required"):
            r.load(case.blend, case.bundle_root)
        assert r.loaded is None and not r.alive
    # The owner's explicit choice: the same scene loads and renders, on the path policy alone.
    with Renderer(allow_unsandboxed=True) as r:
        r.load(case.blend, case.bundle_root)
        stats = r.render(
            {"frame": 1, "samples": 1, "seed": 0, "resolution_x": 16, "resolution_y": 16, "device": "CPU"},
            tmp_path / "f.png",
        )
    assert (tmp_path / "f.png").stat().st_size > 0 and stats["width"] == 16


# ------------------------------------------------------------------ the agent CLI


def invoke(config_path: Path, *args: str):
    return CliRunner().invoke(cli, ["--config", str(config_path), *args], catch_exceptions=False)


@pytest.mark.slow
def test_doctor_says_whether_the_sandbox_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if _landlock.abi_version() >= 1:
        ok = invoke(tmp_path / "c.json", "doctor")
        assert ok.exit_code == 0 and "scene sandbox: works (Landlock enabled" in ok.output
    monkeypatch.setenv(_landlock.SIMULATE_UNAVAILABLE_ENV, "1")
    bad = invoke(tmp_path / "c.json", "doctor")
    assert "scene sandbox: NOT WORKING (Landlock unavailable" in bad.output
    assert "--allow-unsandboxed" in bad.output
    as_json = json.loads(invoke(tmp_path / "c.json", "doctor", "--json").stdout)  # logs go to stderr
    assert as_json["sandbox"]["works"] is False


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("agent_queues")
def test_run_refuses_without_the_sandbox_unless_allowed(
    live_server, provider, tmp_path: Path, no_landlock: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from marketplace.nodes.models import WorkerNode
    from marketplace.nodes.services import node_create
    from workers import devices
    from workers.agent import Agent

    node, token = node_create(owner=provider, name="rig")
    config_path = tmp_path / "agent.json"
    AgentConfig(server=live_server.url, token=token, cache_dir=str(tmp_path / "cache"), device="cpu").save(config_path)
    # Device listing needs a bpy child: what it finds does not matter here.
    monkeypatch.setattr(
        devices, "diagnose", lambda: {"blender_version": "5.0.1", "devices": [{"type": "CPU", "name": "cpu"}]}
    )
    monkeypatch.setattr(devices, "resolve_device", lambda *_a, **_k: "CPU")
    # Say hello (for real, over HTTP), then stop instead of waiting for frames.
    monkeypatch.setattr(Agent, "run", lambda self: self._connect() and 0)

    refused = CliRunner().invoke(cli, ["--config", str(config_path), "run", "--once"])
    assert refused.exit_code == 1
    assert "the scene sandbox cannot be applied on this machine" in refused.output
    assert "refusing to render strangers' scenes" in refused.output and "--allow-unsandboxed" in refused.output
    node.refresh_from_db()
    assert node.status == WorkerNode.Status.OFFLINE and node.sandbox == "unknown"  # it never said hello

    allowed = invoke(config_path, "run", "--once", "--allow-unsandboxed")
    assert allowed.exit_code == 0, allowed.output
    node.refresh_from_db()
    assert node.status == WorkerNode.Status.IDLE
    assert node.sandbox == "unsandboxed" and "Landlock unavailable" in node.sandbox_detail
    assert database_sessions_left() == 0  # the agent hung up on the market when it stopped


@needs_landlock
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("agent_queues")
def test_run_reports_an_enforced_sandbox_at_hello(
    live_server, provider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from marketplace.nodes.services import node_create
    from workers import devices
    from workers.agent import Agent

    node, token = node_create(owner=provider, name="rig")
    config_path = tmp_path / "agent.json"
    AgentConfig(server=live_server.url, token=token, cache_dir=str(tmp_path / "cache")).save(config_path)
    monkeypatch.setattr(
        devices, "diagnose", lambda: {"blender_version": "5.0.1", "devices": [{"type": "CPU", "name": "cpu"}]}
    )
    monkeypatch.setattr(devices, "resolve_device", lambda *_a, **_k: "CPU")
    monkeypatch.setattr(Agent, "run", lambda self: self._connect() and 0)
    result = invoke(config_path, "run", "--once")
    assert result.exit_code == 0, result.output
    node.refresh_from_db()
    assert node.sandbox == "enforced" and node.sandbox_detail.startswith("Landlock enabled (ABI ")
    assert database_sessions_left() == 0


@pytest.mark.slow
def test_local_render_refuses_without_the_sandbox_unless_allowed(tmp_path: Path, no_landlock: None) -> None:
    from workers.blend import make_demo_scene

    scene = make_demo_scene(tmp_path / "demo.blend", frames=2, resolution=(32, 24), samples=2)
    out = tmp_path / "f1.png"
    refused = invoke(tmp_path / "c.json", "render", str(scene), "--frame", "1", "--out", str(out))
    assert refused.exit_code == 1 and "filesystem isolation is required" in refused.output
    assert "pass --allow-unsandboxed" in refused.output and not out.exists()
    allowed = invoke(
        tmp_path / "c.json", "render", str(scene), "--frame", "1", "--out", str(out), "--allow-unsandboxed"
    )
    assert allowed.exit_code == 0, allowed.output
    assert out.stat().st_size > 0
