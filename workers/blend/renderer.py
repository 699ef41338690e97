"""Parent side of the long-lived render subprocess (see render_server.py), and device listing.

    with Renderer() as r:
        r.load(blend_path, bundle_root)          # opens with scripts off, re-checks paths, refuses escapes
        stats = r.render(manifest, out_path)     # pinned frame/samples/seed/size/device/border/format

One render child serves one bundle at a time: its Landlock allow-list names that bundle, so loading a
scene from another bundle restarts the child (a scene can never read another job's files).
"""

from __future__ import annotations

import json
import logging
import os
import select
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from workers.blend.inspect_scene import check_blend_file, check_blend_location
from workers.blend.sandbox import (
    ChildOutput,
    Limits,
    SandboxError,
    default_gpu_kernel_cache,
    explain_exit,
    kill_group,
    new_job_dir,
    raise_for_payload,
    read_log_tail,
    run_bpy_module,
    spawn,
    wait_child,
)
from workers.contract import RenderManifest

log = logging.getLogger(__name__)

_CPU_HARD_CAP_S = 10**9  # the child re-arms its soft CPU limit per render below this


def noisy_path_for(out_path: Path) -> Path:
    """Where the pre-denoise pass of `out_path` goes: `<name>.noisy.exr` next to it."""
    return out_path.with_name(out_path.stem + ".noisy.exr")


class Renderer:
    """A sandboxed Blender that keeps a scene loaded across renders (JSON lines over a private pipe)."""

    def __init__(
        self,
        *,
        memory_mb: int = 8192,
        timeout_s: float = 600.0,
        load_timeout_s: float = 120.0,
        gpu: bool = False,
        threads: int = 0,
        cpu_s_per_render: float | None = None,
        python: Path | None = None,
        allow_unsandboxed: bool = False,
    ) -> None:
        """`python`: the interpreter of the job's Blender series (workers.runtimes), default the agent's own.
        `gpu=True` caps private memory (RLIMIT_DATA) instead of address space: GPU drivers reserve
        huge virtual ranges. `timeout_s` is the default wall limit of one render, `load_timeout_s` of
        starting Blender plus loading a scene; `cpu_s_per_render` defaults to timeout_s x cores.
        The child refuses to start (SandboxUnavailable) where the Landlock allow-list cannot be applied,
        unless `allow_unsandboxed` (the owner's explicit choice: the path policy alone then protects)."""
        self.memory_mb = memory_mb
        self.timeout_s = timeout_s
        self.load_timeout_s = load_timeout_s
        self.gpu = gpu
        self.threads = threads
        self.cpu_s_per_render = cpu_s_per_render or timeout_s * (os.cpu_count() or 1) + 10
        self.python = python
        self.allow_unsandboxed = allow_unsandboxed
        self._proc: subprocess.Popen[bytes] | None = None
        self._resp_fd: int | None = None
        self._buf = b""
        self._job_dir: Path | None = None
        self._output: ChildOutput | None = None
        self._bundle: str | None = None
        self._next_id = 1
        self.blender_version: str | None = None
        self.loaded: Path | None = None
        self.starts = 0

    # -------------------------------------------------------------- lifecycle

    def __enter__(self) -> Renderer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def _limits(self, timeout_s: float) -> Limits:
        return Limits(
            timeout_s=timeout_s,
            memory_mb=self.memory_mb,
            cpu_s=self.cpu_s_per_render,
            cpu_hard_s=_CPU_HARD_CAP_S,
            threads=self.threads,
            address_space=not self.gpu,
            gpu_kernel_cache=default_gpu_kernel_cache() if self.gpu else None,
            python=self.python,
            require_isolation=not self.allow_unsandboxed,
        )

    def _start(self, bundle_root: str) -> None:
        self.close()
        self._job_dir = new_job_dir("blend-render-")
        r, w = os.pipe()
        try:
            self._proc = spawn(
                "render_server",
                ["--fd", str(w)],
                job_dir=self._job_dir,
                limits=self._limits(self.load_timeout_s),
                read_paths=[Path(bundle_root)],
                pass_fds=(w,),
                stdin=subprocess.PIPE,
            )
        except BaseException:
            os.close(r)
            raise
        finally:
            os.close(w)
        self._resp_fd = r
        self._output = ChildOutput(self._job_dir)
        self._buf = b""
        self._bundle = bundle_root
        self.starts += 1
        hello = self._read_answer(time.monotonic() + self.load_timeout_s, self.load_timeout_s)
        try:
            raise_for_payload(hello, limits=self._limits(self.load_timeout_s), log_tail=self._log_tail())
        except BaseException:
            self.close()  # e.g. SandboxUnavailable: the child is exiting, reap it
            raise
        self.blender_version = hello["result"]["blender_version"]
        log.info("event=render_server_started", extra={"pid": self._proc.pid, "blender_version": self.blender_version})

    def interrupt(self) -> None:
        """Kill the child now, from another thread or a signal handler (a lease the server called off, a second
        Ctrl-C). Only a signal: the thread using the renderer sees the child gone at its next read or write and
        reaps it and closes the pipes itself. Closing them from here raced with that thread (a write to the
        closed pipe, then a second reap of the same child) and crashed the agent."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            kill_group(proc.pid)

    def close(self) -> None:
        """Stop the child (politely, then by killing its process group) and remove its job directory."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            try:
                assert proc.stdin is not None
                proc.stdin.write(b'{"id": -1, "cmd": "quit"}\n')
                proc.stdin.flush()
                proc.stdin.close()
            except (OSError, ValueError):  # a pipe the child closed, or a close() already under way
                pass
            wait_child(proc, time.monotonic() + 5.0)
        if proc is not None and proc.stdin is not None and not proc.stdin.closed:
            try:
                proc.stdin.close()
            except OSError:
                pass
        if self._resp_fd is not None:
            os.close(self._resp_fd)
            self._resp_fd = None
        if self._output is not None:  # the child's last lines (a crash's, a goodbye's) before its directory goes
            self._output.relay()
            self._output = None
        if self._job_dir is not None:
            shutil.rmtree(self._job_dir, ignore_errors=True)
            self._job_dir = None
        self._proc = None
        self._bundle = None
        self.loaded = None

    # -------------------------------------------------------------- protocol

    def _log_tail(self) -> str:
        return read_log_tail(self._job_dir) if self._job_dir is not None else ""

    def _die(self, timeout_s: float, timed_out: bool) -> SandboxError:
        """Reap the child (killing it if needed) and explain why it is gone."""
        proc = self._proc
        assert proc is not None
        status: int | None = proc.returncode
        if status is None:
            # A timed-out child is killed at once; a dying one gets 5 s to finish exiting.
            status, _ = wait_child(proc, time.monotonic() + (0.0 if timed_out else 5.0))
        err = explain_exit(
            status if status is not None else -9,
            limits=self._limits(timeout_s),
            log_tail=self._log_tail(),
            timed_out=timed_out,
        )
        self.close()
        return err

    def _read_answer(self, deadline: float, timeout_s: float) -> dict[str, Any]:
        assert self._resp_fd is not None
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._die(timeout_s, timed_out=True)
            ready, _, _ = select.select([self._resp_fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._resp_fd, 1 << 16)
            if not chunk:  # the child closed its end: it is dead or dying
                raise self._die(timeout_s, timed_out=False)
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        assert self._output is not None
        self._output.relay()  # what the child logged on the way to this answer, under the caller's ids
        try:
            answer: dict[str, Any] = json.loads(line)
        except ValueError:
            self.close()
            raise SandboxError("protocol", f"render server sent an invalid answer: {line[:200]!r}")
        return answer

    def _call(self, cmd: str, timeout_s: float, **payload: Any) -> Any:
        if not self.alive:
            raise SandboxError("protocol", "render server is not running (load a scene first)")
        assert self._proc is not None and self._proc.stdin is not None
        req_id = self._next_id
        self._next_id += 1
        try:
            self._proc.stdin.write(json.dumps({"id": req_id, "cmd": cmd, **payload}).encode() + b"\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            raise self._die(timeout_s, timed_out=False)
        answer = self._read_answer(time.monotonic() + timeout_s, timeout_s)
        if answer.get("id") != req_id:
            self.close()
            raise SandboxError("protocol", f"answer {answer.get('id')} for request {req_id}")
        raise_for_payload(answer, limits=self._limits(timeout_s), log_tail=self._log_tail())
        return answer["result"]

    # ------------------------------------------------------------------ API

    def load(self, blend_path: Path, bundle_root: Path, *, timeout_s: float | None = None) -> dict[str, Any]:
        """Open a scene (scripts off), re-check every external path against `bundle_root`, neutralise
        OSL and Python drivers. Raises RenderRefused (with `.offences`) for files outside the bundle,
        BlendFileError for unusable files, SandboxError on limits."""
        blend, root = check_blend_location(Path(blend_path), Path(bundle_root))
        check_blend_file(blend)
        timeout_s = timeout_s or self.load_timeout_s
        real_root = os.path.realpath(root)
        if not self.alive or self._bundle != real_root:
            self._start(real_root)
        self.loaded = None
        info: dict[str, Any] = self._call("load", timeout_s, blend_path=str(blend), bundle_root=str(root))
        self.loaded = blend
        return info

    def render(
        self, manifest: RenderManifest | Mapping[str, Any], out_path: Path, *, timeout_s: float | None = None
    ) -> dict[str, Any]:
        """Render one pinned frame (or border crop) to `out_path`; returns stats. A manifest given as a mapping
        is validated by the agent contract first (workers.contract.ContractError, a ValueError, names the field).

        With use_denoising the pre-denoise pass is written too, to `<out stem>.noisy.exr`
        (stats["noisy_path"]): crops of a denoised frame are verified against it.
        """
        m = manifest if isinstance(manifest, RenderManifest) else RenderManifest.from_dict(manifest)
        if self.loaded is None or not self.alive:
            raise SandboxError("protocol", "no scene loaded")
        if m.blender_version and m.blender_version != self.blender_version:
            raise ValueError(f"manifest pins Blender {m.blender_version}, this agent runs {self.blender_version}")
        timeout_s = timeout_s or self.timeout_s
        t0 = time.monotonic()
        stats: dict[str, Any] = self._call(
            "render", timeout_s, manifest=m.as_dict(), cpu_budget_s=self.cpu_s_per_render
        )
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(stats.pop("file"), out_path)
        noisy = stats.pop("noisy_file")
        stats["path"] = str(out_path)
        stats["noisy_path"] = None
        if noisy:
            target = noisy_path_for(out_path)
            shutil.move(noisy, target)
            stats["noisy_path"] = str(target)
        stats["total_seconds"] = round(time.monotonic() - t0, 4)
        return stats

    def ping(self, *, timeout_s: float = 10.0) -> dict[str, Any]:
        answer: dict[str, Any] = self._call("ping", timeout_s)
        return answer


def list_devices(*, timeout_s: float = 60.0) -> list[dict[str, Any]]:
    """Cycles devices this machine's Blender can use: [{type, name, id, use}], CPU first."""
    job = run_bpy_module(
        "render_server",
        ["--list-devices"],
        limits=Limits(timeout_s=timeout_s, memory_mb=8192, address_space=False),
    )
    return list(job.result)
