"""The agent's work loop: take a lease from this node's queue, render it, upload, report.

Delivery is a reliable Redis queue: BLMOVE moves a message into the node's own processing list and it is
removed (acked) only after the report, so a killed agent finds it again on restart. The marketplace's
lease decides everything; a stale message just gets a refusal and is dropped.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import redis

from workers import runtimes
from workers.budget import render_within_budget
from workers.bundle import bundle_key, bundle_ready
from workers.client import ApiError, MarketClient, download, upload
from workers.config import AgentConfig

log = logging.getLogger("agent")


@dataclass
class Current:
    lease: int
    token: str
    started: float = field(default_factory=time.monotonic)
    revoked: threading.Event = field(default_factory=threading.Event)
    # Guards `rendered` against the heartbeat thread: only a render still running is aborted for a lost lease.
    lock: threading.Lock = field(default_factory=threading.Lock)
    rendered: bool = False
    # Wall-clock seconds of each step of this lease (details, scene, load, render, upload, report), logged with
    # the epoch times it was received and done: an operator (and bench_farm) reads where a frame's time went.
    steps: dict[str, float] = field(default_factory=dict)
    received: float = field(default_factory=time.time)

    def step(self, name: str, since: float) -> float:
        now = time.monotonic()
        self.steps[name] = self.steps.get(name, 0.0) + now - since
        return now


def in_schedule(schedule: str, now: datetime | None = None) -> bool:
    """`22:00-07:00` style window (may wrap midnight); empty means always."""
    if not schedule:
        return True
    start_s, _, end_s = schedule.partition("-")
    now = now or datetime.now()
    minutes = now.hour * 60 + now.minute

    def parse(t: str) -> int:
        h, _, m = t.strip().partition(":")
        return int(h) * 60 + int(m or 0)

    start, end = parse(start_s), parse(end_s)
    return start <= minutes < end if start <= end else minutes >= start or minutes < end


def capabilities(
    devices: list[dict], blender_version: str, blender_series: list[str] | None = None, sandbox: dict | None = None
) -> dict:
    try:
        ram_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    except (ValueError, OSError):
        ram_mb = 0
    return {
        "devices": devices,
        "cpu_cores": os.cpu_count() or 1,
        "ram_mb": int(ram_mb),
        "blender_version": blender_version,
        "blender_series": blender_series or [runtimes.series_of_version(blender_version)],
        **(sandbox or {}),
    }


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        *,
        renderer_factory,
        devices: list[dict],
        blender_version: str,
        once: bool = False,
        device_ids: list[str] | None = None,
        sandbox: dict | None = None,
    ) -> None:
        self.config = config
        self.client = MarketClient(config.server, config.token)
        self.renderer_factory = renderer_factory
        self.devices = devices
        self.blender_version = blender_version
        self.once = once
        self.device_ids = device_ids
        self.sandbox = sandbox  # {"sandbox": "enforced"|"unsandboxed", "sandbox_detail": ...}, told at hello
        self.stopping = threading.Event()
        self.abort_now = threading.Event()
        # Set while the owner has paused this node from the web (learnt from heartbeats): take no new frame.
        self.owner_paused = threading.Event()
        self.said_hello = False
        self.current: Current | None = None
        self.renderer = None
        self.loaded_scene: str | None = None
        self.cache = Path(config.cache_dir)
        self.frames_done = 0
        self.next_details: dict | None = None  # the next lease's details, handed back by the last report

    # --- signals: first one finishes the frame, second one releases it and exits ------------
    def install_signals(self) -> None:
        def handler(signum, _frame):
            if self.stopping.is_set():
                log.warning("event=abort signal=%s: releasing the current frame", signum)
                self.abort_now.set()
                if self.renderer is not None:
                    self.renderer.close()
            else:
                log.warning("event=stopping signal=%s: finishing the current frame (again to abort)", signum)
                self.stopping.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def _connect(self) -> dict:
        """Say hello; the marketplace answers with a fresh per-node broker credential."""
        series = sorted(runtimes.installed(self.config.cache_dir))
        hello = self.client.hello(capabilities(self.devices, self.blender_version, series, self.sandbox))
        log.info("event=hello node=%s device=%s queue=%s", hello["node"], hello["device"], hello["queue"])
        self.queue = hello["queue"]
        self.processing = self.queue.rsplit(":", 1)[0] + ":processing"
        self.broker = redis.Redis.from_url(hello["broker_url"], socket_timeout=30)
        self.said_hello = True
        return hello

    def _connect_retrying(self) -> dict:
        delay = 1.0
        while True:
            try:
                return self._connect()
            except ApiError as exc:
                if exc.status in (401, 403):
                    raise  # a bad token will not get better by retrying
                log.warning("event=hello_failed error=%s: retrying in %.0fs", exc, delay)
            except (OSError, redis.RedisError) as exc:
                log.warning("event=hello_failed error=%s: retrying in %.0fs", exc, delay)
            if self.stopping.wait(delay):
                raise SystemExit(0)
            delay = min(delay * 2, 30)

    def run(self) -> int:
        hello = self._connect_retrying()
        beat = threading.Thread(target=self._heartbeat_loop, args=(hello["heartbeat_seconds"],), daemon=True)
        beat.start()
        try:
            for raw in self.broker.lrange(self.processing, 0, -1):  # deliveries a previous run never acked
                self._handle(raw)
            while not self.stopping.is_set():
                if not in_schedule(self.config.schedule) or self.owner_paused.is_set():
                    self.stopping.wait(1 if self.owner_paused.is_set() else 5)
                    continue
                try:
                    raw = self.broker.blmove(self.queue, self.processing, 2, "RIGHT", "LEFT")
                except (redis.AuthenticationError, redis.exceptions.NoPermissionError) as exc:
                    # A restarted broker forgot our ACL user: ask the marketplace for a new credential.
                    log.warning("event=broker_auth_lost error=%s: saying hello again", exc)
                    self._connect_retrying()
                    time.sleep(1)
                    continue
                except redis.ConnectionError as exc:
                    log.warning("event=broker_unavailable error=%s: retrying", exc)
                    time.sleep(2)
                    continue
                if raw is not None:
                    self._handle(raw)
                    if self.once:
                        break
        finally:
            self.stopping.set()
            if self.renderer is not None:
                self.renderer.close()
            self._goodbye()
        return 0

    def _goodbye(self) -> None:
        """Tell the marketplace we are gone (the frame in hand was finished or released before this), so the
        node stops counting as idle now rather than when its heartbeats are missed. Best effort: a killed agent
        never gets here and is caught by the missing heartbeats and the lease reaper instead."""
        if not self.said_hello:
            return
        try:
            self.client.goodbye()
            log.info("event=goodbye: the marketplace no longer counts this node")
        except (ApiError, OSError) as exc:
            log.warning("event=goodbye_failed error=%s: the node goes offline when its heartbeats stop", exc)

    def _heartbeat_loop(self, every: float) -> None:
        while not self.stopping.wait(every):
            current = self.current
            try:
                answer = self.client.beat(
                    leases=[current.lease] if current else [], paused=not in_schedule(self.config.schedule)
                )
            except (ApiError, OSError) as exc:
                log.warning("event=heartbeat_failed error=%s", exc)
                continue
            states = answer.get("leases", {})
            self._owner_pause(answer.get("owner_pause"))
            if current and states.get(str(current.lease)) not in (None, "active"):
                self._abandon(current, state=states.get(str(current.lease)))

    def _owner_pause(self, mode: str | None) -> None:
        """The owner's pause from the web sticks until resumed. With "release" the marketplace has already given
        the current frame back (its lease reads "released", so `_abandon` stops the render); with "finish" the
        frame in hand is finished and reported, then no new one is taken."""
        if mode and not self.owner_paused.is_set():
            log.warning(
                "event=paused_by_owner mode=%s: %s",
                mode,
                "giving the current frame back" if mode == "release" else "finishing the current frame",
            )
            self.owner_paused.set()
        elif not mode and self.owner_paused.is_set():
            log.info("event=resumed_by_owner: taking frames again")
            self.owner_paused.clear()

    def _abandon(self, current: Current, *, state: str) -> None:
        """The server says this lease is over: stop its render if it is still running.

        A lease we just reported reads "done" to a heartbeat sent a moment earlier; its renderer is already
        rendering the next frame's scene and must not be closed.
        """
        with current.lock:
            if current.rendered or self.current is not current:
                return
            log.warning("event=lease_lost lease=%s state=%s: abandoning the frame", current.lease, state)
            current.revoked.set()
            if self.renderer is not None:
                self.renderer.close()

    def _ack(self, raw: bytes) -> None:
        for _ in range(30):
            try:
                self.broker.lrem(self.processing, 1, raw)
                return
            except (redis.AuthenticationError, redis.exceptions.NoPermissionError):
                return  # the broker restarted and lost this delivery anyway
            except redis.ConnectionError:
                time.sleep(1)

    def _handle(self, raw: bytes) -> None:
        try:
            message = json.loads(raw)
            lease_id, token = int(message["lease"]), str(message["token"])
        except (ValueError, KeyError, TypeError):
            log.warning("event=bad_message dropped=%r", raw[:100])
            self._ack(raw)
            return
        current = Current(lease=lease_id, token=token)
        # The report of the previous frame may have brought this lease's details along (its `next`).
        details, self.next_details = self.next_details, None
        try:
            if details is None or details.get("lease") != lease_id:
                details = self.client.lease(lease_id, token)
        except ApiError as exc:
            log.info("event=lease_skipped lease=%s reason=%s", lease_id, exc)
            self._ack(raw)
            return
        current.step("details", current.started)
        self.current = current
        try:
            self._work(details)
        finally:
            self.current = None
            self._ack(raw)
            log.info(
                "event=lease_timing lease=%s kind=%s received=%.3f done=%.3f %s",
                lease_id,
                details["kind"],
                current.received,
                time.time(),
                " ".join(f"{k}_s={v:.3f}" for k, v in current.steps.items()),
            )

    def _scene(self, details: dict) -> tuple[Path, Path]:
        manifest = details["manifest"]
        sha = manifest["scene_sha256"]
        root = (
            self.cache
            / "scenes"
            / bundle_key(sha256=sha, kind=manifest["scene_kind"], blend_path=manifest["blend_path"])
        )
        archive = self.cache / "downloads" / f"{sha}.{manifest['scene_kind']}"
        if not (root / ".complete").exists() and not archive.exists():
            archive.parent.mkdir(parents=True, exist_ok=True)
            download(details["scene_url"], archive, sha256=sha)
        blend = bundle_ready(archive=archive, kind=manifest["scene_kind"], blend_path=manifest["blend_path"], root=root)
        return blend, root

    def _work(self, details: dict) -> None:
        current = self.current
        lease_id, token = current.lease, current.token
        manifest = dict(details["manifest"])
        manifest["threads"] = self.config.threads
        if self.device_ids:
            manifest["device_ids"] = self.device_ids
        limit = self.config.max_render_seconds or manifest.get("max_render_seconds") or 1800
        ext = ".exr" if manifest.get("file_format") == "OPEN_EXR" else ".png"
        label = f"frame {manifest['frame']}" + (" (verify crop)" if details["kind"] == "verify" else "")
        with tempfile.TemporaryDirectory(prefix="render-") as tmp:
            out = Path(tmp) / f"out{ext}"
            try:
                mark = time.monotonic()
                blend, root = self._scene(details)
                mark = current.step("scene", mark)
                series = manifest.get("blender_series")
                # A loaded Blender serves the next frame only for the same scene in the same series.
                loaded = f"{series}:{blend}"
                if self.renderer is None or self.loaded_scene != loaded:
                    if self.renderer is not None:
                        self.renderer.close()
                    self.renderer = self.renderer_factory(timeout_s=limit, series=series)
                    self.renderer.load(blend, root)
                    self.loaded_scene = loaded
                mark = current.step("load", mark)
                with Progress(label, estimate_s=None):
                    stats = render_within_budget(self.renderer, manifest, out, limit=limit)
                mark = current.step("render", mark)
                with self.current.lock:
                    self.current.rendered = True
                if self.current.revoked.is_set() or self.abort_now.is_set():
                    raise InterruptedError("lease lost or agent aborted")
                upload(details["upload_url"], out)
                if details.get("noisy_upload_url"):
                    # denoised frames are verified on their pre-denoise pass (see docs/verification.md)
                    if not stats.get("noisy_path"):
                        raise RuntimeError("the renderer wrote no pre-denoise pass for a denoised frame")
                    upload(details["noisy_upload_url"], Path(stats["noisy_path"]))
                current.step("upload", mark)
            except InterruptedError as exc:
                self._drop_renderer()
                if self.abort_now.is_set():
                    self._safe(lambda: self.client.release(lease_id, token))
                log.warning("event=frame_abandoned lease=%s reason=%s", lease_id, exc)
                return
            except Exception as exc:
                self._drop_renderer()
                if self.abort_now.is_set() or self.current.revoked.is_set():
                    if self.abort_now.is_set():
                        self._safe(lambda: self.client.release(lease_id, token))
                    return
                error = f"{type(exc).__name__}: {exc}"
                log.error("event=render_failed lease=%s error=%s", lease_id, error)
                self._safe(lambda: self.client.report(lease_id, token=token, ok=False, error=error))
                return
        stats = {**(stats or {}), "device": manifest.get("device", "CPU")}
        mark = time.monotonic()
        result = self._safe(lambda: self.client.report(lease_id, token=token, ok=True, stats=stats))
        current.step("report", mark)
        result = dict(result or {})
        self.next_details = result.pop("next", None)  # its signed URLs stay out of the log
        self.frames_done += 1
        log.info(
            "event=reported lease=%s frame=%s seconds=%.2f result=%s next=%s",
            lease_id,
            manifest["frame"],
            stats.get("seconds", 0),
            result or None,
            self.next_details and self.next_details["lease"],
        )

    def _drop_renderer(self) -> None:
        if self.renderer is not None:
            self.renderer.close()
        self.renderer = None
        self.loaded_scene = None

    def _safe(self, call):
        for attempt in range(20):
            try:
                return call()
            except ApiError as exc:
                log.warning("event=api_refused error=%s", exc)
                return None
            except OSError as exc:  # network: retry, the lease may still be alive
                log.warning("event=api_unreachable attempt=%d error=%s", attempt, exc)
                time.sleep(min(10, 0.5 * 2**attempt))
        return None


class Progress:
    """One line per frame that updates in place on a terminal: elapsed time while Blender renders."""

    def __init__(self, label: str, *, estimate_s: float | None) -> None:
        self.label, self.estimate_s = label, estimate_s
        self.done = threading.Event()
        self.tty = os.isatty(2)

    def __enter__(self) -> Progress:
        self.start = time.monotonic()
        if self.tty:
            threading.Thread(target=self._draw, daemon=True).start()
        return self

    def _draw(self) -> None:
        spinner = "|/-\\"
        i = 0
        while not self.done.wait(0.25):
            elapsed = time.monotonic() - self.start
            os.write(2, f"\r{spinner[i % 4]} rendering {self.label}: {elapsed:6.1f}s ".encode())
            i += 1

    def __exit__(self, *exc) -> None:
        self.done.set()
        if self.tty:
            os.write(2, f"\r✓ {self.label}: {time.monotonic() - self.start:6.1f}s          \n".encode())
