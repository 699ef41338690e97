"""The sandbox itself, with a tiny non-bpy probe child: environment, limits, timeouts, filesystem."""

from __future__ import annotations

import json
import logging
import os
import resource
import time
from pathlib import Path

import pytest

from workers import logs
from workers.blend import _landlock
from workers.blend.sandbox import Limits, SandboxError, run_bpy_module

PROBE = "tests.fixtures._sandbox_probe"


def probe(opts: dict, limits: Limits | None = None, read_paths: tuple[Path, ...] = ()) -> dict:
    return run_bpy_module(
        PROBE, [json.dumps(opts)], limits=limits or Limits(timeout_s=20), read_paths=read_paths
    ).result


def test_environment_is_minimal_and_limits_are_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    monkeypatch.setenv("AGENT_API_TOKEN", "do-not-leak")
    out = probe({}, Limits(timeout_s=20, memory_mb=1024, max_open_files=200, max_file_mb=10))
    env = out["env"]
    assert "AWS_SECRET_ACCESS_KEY" not in env and "AGENT_API_TOKEN" not in env
    assert not any("do-not-leak" in v for v in env.values())
    assert set(env) >= {"PATH", "LANG", "PYTHONPATH", "HOME", "TMPDIR", "OMP_NUM_THREADS"}
    assert env["HOME"] == env["TMPDIR"] == out["cwd"]  # the job's own directory
    assert out["rlimits"]["RLIMIT_AS"] == [1024 << 20, 1024 << 20]
    assert out["rlimits"]["RLIMIT_NOFILE"] == [200, 200]
    assert out["rlimits"]["RLIMIT_FSIZE"] == [10 << 20, 10 << 20]
    assert out["rlimits"]["RLIMIT_CORE"] == [0, 0]
    assert out["rlimits"]["RLIMIT_CPU"][0] != resource.RLIM_INFINITY
    assert out["pgid_is_own"]


@pytest.mark.skipif(_landlock.abi_version() < 1, reason="kernel without Landlock")
def test_filesystem_allow_list_blocks_reads_outside(tmp_path: Path) -> None:
    bundle, private = tmp_path / "bundle", tmp_path / "private"
    bundle.mkdir()
    private.mkdir()
    (bundle / "ok.txt").write_text("ok")
    (private / "secret.txt").write_text("secret")
    home_file = Path.home() / ".bashrc"
    agent_env = f"/proc/{os.getpid()}/environ"  # the caller's credentials live here
    paths = [
        str(bundle / "ok.txt"),
        str(private / "secret.txt"),
        agent_env,
        "/proc/self/status",
        str(home_file),
    ]
    out = probe({"read": paths}, read_paths=(bundle,))
    assert out["readable"][paths[0]] is True
    assert out["readable"][paths[3]] is True
    assert out["readable"][paths[1]] != True  # noqa: E712 - an error string
    assert out["readable"][agent_env] != True  # noqa: E712
    if home_file.exists():
        assert out["readable"][paths[4]] != True  # noqa: E712


def test_wall_timeout_kills_the_process_group() -> None:
    t0 = time.monotonic()
    with pytest.raises(SandboxError) as err:
        probe({"action": "sleep", "seconds": 30}, Limits(timeout_s=0.5))
    assert err.value.reason == "timeout"
    assert "0.5 s wall-clock limit" in str(err.value)
    assert time.monotonic() - t0 < 5


def test_cpu_limit_is_reported() -> None:
    with pytest.raises(SandboxError) as err:
        probe({"action": "spin"}, Limits(timeout_s=20, cpu_s=1))
    assert err.value.reason == "cpu"
    assert "CPU time limit" in str(err.value)


def test_memory_limit_is_reported() -> None:
    with pytest.raises(SandboxError) as err:
        probe({"action": "allocate", "mb": 600}, Limits(timeout_s=20, memory_mb=300))
    assert err.value.reason == "memory"
    assert "300 MB" in str(err.value)


def test_job_dir_is_removed() -> None:
    out = probe({})
    assert not os.path.exists(out["cwd"])


def test_the_childs_log_records_come_out_as_the_callers_own_lines_and_its_stdout_as_one_field(json_log) -> None:
    logging.getLogger().setLevel(logging.DEBUG)  # Blender's output is a debug line (json_log puts the level back)
    with logs.scope(node_id=7, lease_id=5, frame=3):  # as the agent binds them around a render
        probe({"action": "log"})
    said = json_log.one("probe_logged")
    ids = {"node_id": 7, "lease_id": 5, "frame": 3}  # the caller's, not those the child tried to set
    assert said.items() >= {**ids, "logger": "workers.blend.probe", "level": "warning", "path": "scene.blend"}.items()
    failed = json_log.one("probe_failed")
    assert failed.items() >= {**ids, "level": "error"}.items() and "ValueError: boom" in failed["exception"]
    isolation = json_log.one("sandbox_isolation")  # the sandbox's own line in the child
    assert isolation.items() >= {**ids, "logger": "workers.blend.sandbox"}.items()
    output = json_log.one("blender_output")
    assert output.items() >= {**ids, "level": "debug"}.items()
    assert "Rendering 1 / 64 samples" in output["output"]
    assert [line for line in json_log.all() if "Rendering 1 / 64" in json.dumps(line)] == [output]
