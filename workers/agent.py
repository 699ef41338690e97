"""The agent's work loop: take a lease from this node's queue, render it, upload, report.

Delivery is a reliable Redis queue: BLMOVE moves a message into the node's own processing list and it is
removed (acked) only after the report, so a killed agent finds it again on restart. The marketplace's
lease decides everything; a stale message just gets a refusal and is dropped.

Frames follow each other without a gap: once a frame is rendered, the agent takes its next lease (`next`) and
starts rendering it while a sender thread uploads and reports the finished one. One result is in flight at
most; a graceful stop waits for it and gives back the lease taken ahead.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import random
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar, cast

import redis

from workers import logs, runtimes
from workers.budget import render_within_budget
from workers.bundle import bundle_key, bundle_ready
from workers.client import ApiError, MarketClient, download, upload
from workers.config import AgentConfig
from workers.contract import Device, HelloAnswer, HelloRequest, Lease, LeaseAnswer, RenderManifest

if TYPE_CHECKING:
    from workers.blend.renderer import Renderer

log = logging.getLogger("agent")
T = TypeVar("T")


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
    # When the work loop moved on to the next lease, leaving the upload and report to the sender (epoch).
    handed_off: float | None = None
    next_taken: bool = False  # its `next` call was answered (the node's next lease taken, or none to take)
    raw: bytes = b""  # the delivery, acked once the lease is done

    def step(self, name: str, since: float) -> float:
        now = time.monotonic()
        self.steps[name] = self.steps.get(name, 0.0) + now - since
        return now


# A render lease's next lease is taken this long before its render is expected to end, so that it is there when
# the render ends: the `next` call was on every frame's critical path (~15 ms a frame with the market on this
# machine; a provider's round trip to the market and more). The lead is twice the last `next` call's time, at
# least NEXT_AHEAD_MIN_S; the expectation is the last render of the same shape (kind, scene, size, samples, crop,
# device). With none (a job's first frame) or a render shorter than NEXT_AHEAD_RENDERS_MIN leads, it is taken
# once the render ends, as before. A node takes one lease ahead at most (the market's rule).
NEXT_AHEAD_MIN_S = 0.5
NEXT_AHEAD_RENDERS_MIN = 2
RenderShape = tuple[object, ...]

# How long one wait for a delivery blocks on the agent broker. Each wait that ends empty costs the broker's one
# thread ~17 µs (bench_broker): at 2 s, 100,000 waiting agents would keep 0.85 of it busy doing nothing; at 10 s,
# a fifth of that. A stop signal cuts the wait short (`install_signals`), so it does not delay Ctrl-C.
BROKER_WAIT_SECONDS = 10

# The pace a marketplace may set, whatever it answers: a beat at least every 10 minutes (a lease must not lapse
# because of a bad answer), at most one a second.
HEARTBEAT_PACE_BOUNDS = (1.0, 600.0)


def heartbeat_pace(answer: Mapping[str, Any], every: float) -> float:
    """The pace a heartbeat's (or a hello's) answer sets (the marketplace lengthens it as its farm grows), within
    HEARTBEAT_PACE_BOUNDS; `every`, the pace so far, when the answer has none (a marketplace before session 19)."""
    told = answer.get("heartbeat_seconds")
    if not isinstance(told, int | float) or isinstance(told, bool):
        return every
    low, high = HEARTBEAT_PACE_BOUNDS
    return min(high, max(low, float(told)))


def spread(seconds: float) -> float:
    """A wait drawn evenly from [0, seconds]: agents that lost the same thing at the same moment (a broker restart,
    the marketplace back from an outage) come back spread over it instead of all at once."""
    return random.uniform(0.0, max(seconds, 0.0))


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
    devices: list[dict[str, Any]],
    blender_version: str,
    blender_series: list[str] | None = None,
    sandbox: Mapping[str, str] | None = None,
) -> HelloRequest:
    """The hello body: `devices` as Cycles lists them (workers.blend.list_devices), `sandbox` as
    cli._sandbox_or_refuse found it ({"sandbox": "enforced"|"unsandboxed", "sandbox_detail": ...})."""
    try:
        ram_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    except (ValueError, OSError):
        ram_mb = 0
    hello = HelloRequest(
        devices=[Device(type=str(d["type"]), name=str(d["name"]), use=bool(d.get("use", True))) for d in devices],
        cpu_cores=os.cpu_count() or 1,
        ram_mb=int(ram_mb),
        blender_version=blender_version,
        blender_series=blender_series or [runtimes.series_of_version(blender_version)],
    )
    if sandbox:
        hello["sandbox"] = sandbox["sandbox"]
        hello["sandbox_detail"] = sandbox["sandbox_detail"]
    return hello


class _WaitCut(Exception):
    """A stop signal came while the agent waited for a delivery with nothing in hand."""


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        *,
        renderer_factory: Callable[..., Renderer],
        devices: list[dict[str, Any]],
        blender_version: str,
        once: bool = False,
        device_ids: list[str] | None = None,
        sandbox: Mapping[str, str] | None = None,
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
        self.waiting_for_delivery = False  # blocked on the broker, nothing in hand: a stop signal cuts it short
        self.pace = 10.0  # the heartbeat pace the marketplace gave last: it grows with the farm
        self.current: Current | None = None
        self.renderer: Renderer | None = None
        self.loaded_scene: str | None = None
        self.cache = Path(config.cache_dir)
        self.frames_done = 0
        # The next lease's details, handed back by `next` or by the last report.
        self.next_details: LeaseAnswer | None = None
        self.next_call_s = 0.0  # how long the last `next` call took
        self.last_render: tuple[RenderShape, float] | None = None  # (shape, seconds) of the last render (`_next_ahead`)
        self.sending: Current | None = None  # the rendered lease whose result the sender uploads and reports
        self.sender: threading.Thread | None = None

    # --- signals: first one finishes the frame, second one releases it and exits ------------
    def install_signals(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            if self.stopping.is_set():
                log.warning("event=abort: releasing the current frame", extra={"signal": signum})
                self.abort_now.set()
                if self.renderer is not None:
                    self.renderer.interrupt()
            else:
                log.warning("event=stopping: finishing the current frame (again to abort)", extra={"signal": signum})
                self.stopping.set()
                if self.waiting_for_delivery:
                    raise _WaitCut  # out of the blocked read (redis-py drops that connection), into `run`

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def _connect(self) -> HelloAnswer:
        """Say hello; the marketplace answers with a fresh per-node broker credential."""
        series = sorted(runtimes.installed(self.config.cache_dir))
        hello = self.client.hello(capabilities(self.devices, self.blender_version, series, self.sandbox))
        logs.bind(node_id=hello["node"])  # every later line of this agent names its node
        log.info("event=hello", extra={"device": hello["device"], "queue": hello["queue"]})
        self.queue = hello["queue"]
        self.processing = self.queue.rsplit(":", 1)[0] + ":processing"
        self.broker: redis.Redis = redis.Redis.from_url(hello["broker_url"], socket_timeout=30)
        self.said_hello = True
        return hello

    def _connect_retrying(self) -> HelloAnswer:
        delay = 1.0
        while True:
            try:
                return self._connect()
            except ApiError as exc:
                if exc.status in (401, 403):
                    raise  # a bad token will not get better by retrying
                log.warning("event=hello_failed", extra={"error": str(exc), "retry_in_s": delay})
            except (OSError, redis.RedisError) as exc:
                log.warning("event=hello_failed", extra={"error": str(exc), "retry_in_s": delay})
            # Half the backoff, then a draw over the other half: failed hellos of many agents do not come back
            # in step.
            if self.stopping.wait(delay / 2 + spread(delay / 2)):
                raise SystemExit(0)
            delay = min(delay * 2, 30)

    def run(self) -> int:
        hello = self._connect_retrying()
        self.pace = heartbeat_pace(hello, self.pace)
        # The heartbeat thread logs with this thread's context (the node id): threads start with an empty one.
        beat = threading.Thread(target=contextvars.copy_context().run, args=(self._heartbeat_loop,), daemon=True)
        beat.start()
        try:
            # redis-py types its commands for the sync and the async client alike: these are the sync answers.
            unacked = cast(list[bytes], self.broker.lrange(self.processing, 0, -1))
            for raw in unacked:  # deliveries a previous run never acked
                self._handle(raw)
            while not self.stopping.is_set():
                if self._paused():
                    continue
                try:
                    delivery = self._delivery_wait()
                except _WaitCut:
                    # No connection may keep the cut BLMOVE's answer pending for the next command to read.
                    self.broker.connection_pool.disconnect()
                    break
                except (redis.AuthenticationError, redis.exceptions.NoPermissionError) as exc:
                    # A restarted broker forgot our ACL user: ask the marketplace for a new credential. Every agent
                    # learns it at once, so each waits a draw over one heartbeat pace first: at 100,000 nodes
                    # (60 s) their hellos come ~1,700 a second, as their beats do, not all in the same seconds. A
                    # second at least: a hello that did not mend it is not retried hot.
                    wait = 1.0 + spread(self.pace)
                    log.warning(
                        "event=broker_auth_lost: saying hello again", extra={"error": str(exc), "in_s": round(wait, 1)}
                    )
                    if self.stopping.wait(wait):
                        break
                    self._connect_retrying()
                    continue
                except redis.ConnectionError as exc:
                    log.warning("event=broker_unavailable: retrying", extra={"error": str(exc)})
                    time.sleep(2)
                    continue
                if delivery is not None:
                    self._handle(delivery)
                    if self.once:
                        break
        finally:
            self.stopping.set()
            self._send_wait()
            self._release_queued()
            if self.renderer is not None:
                self.renderer.close()
            self._goodbye()
        return 0

    def _delivery_wait(self) -> bytes | None:
        """The next delivery, moved to this node's processing list, or None after BROKER_WAIT_SECONDS. A stop
        signal meanwhile raises `_WaitCut` (`install_signals`)."""
        self.waiting_for_delivery = True
        try:
            if self.stopping.is_set():
                raise _WaitCut
            # redis-py types its commands for the sync and the async client alike: this is the sync answer.
            return cast(
                bytes | None, self.broker.blmove(self.queue, self.processing, BROKER_WAIT_SECONDS, "RIGHT", "LEFT")
            )
        finally:
            self.waiting_for_delivery = False

    def _paused(self) -> bool:
        """Paused by the owner or outside the owner's schedule: wait a moment, and True. A lease taken ahead before
        the pause was learnt is given back first: its frame goes to another node now, where the heartbeats (which
        name it) would have kept it through the pause."""
        if not self._pausing():
            return False
        if self.next_details is not None:
            self.next_details = None
            self._release_queued(reason="the node is paused")
        self.stopping.wait(1 if self.owner_paused.is_set() else 5)
        return True

    def _pausing(self) -> bool:
        """Paused by the owner from the web, or outside the owner's schedule: take no new frame."""
        return self.owner_paused.is_set() or not in_schedule(self.config.schedule)

    def _release_queued(self, *, reason: str = "the agent is stopping") -> None:
        """Stopping or paused: give back the leases still in this node's queue (the one taken ahead with `next`),
        so their frames go to other nodes now, not when the leases expire (an expiry counts as an abandon)."""
        if not self.said_hello:
            return
        for _ in range(16):
            try:
                raw = cast(bytes | None, self.broker.lmove(self.queue, self.processing, "RIGHT", "LEFT"))
            except redis.RedisError:
                return
            if raw is None:
                return
            try:
                message = json.loads(raw)
                lease_id, token = int(message["lease"]), str(message["token"])
            except (ValueError, KeyError, TypeError):
                self._ack(raw)
                continue
            self._safe(lambda: self.client.release(lease_id, token))  # noqa: B023  # called at once
            log.info(f"event=lease_given_back: {reason}", extra={"lease_id": lease_id})
            self._ack(raw)

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
            log.warning(
                "event=goodbye_failed: the node goes offline when its heartbeats stop", extra={"error": str(exc)}
            )

    def _heartbeat_loop(self) -> None:
        while not self.stopping.wait(self.pace):
            current = self.current
            try:
                answer = self.client.beat(leases=self._held_leases(), paused=not in_schedule(self.config.schedule))
            except (ApiError, OSError) as exc:
                log.warning("event=heartbeat_failed", extra={"error": str(exc)})
                continue
            self.pace = heartbeat_pace(answer, self.pace)
            self._owner_pause(answer.get("owner_pause"))
            state = answer.get("leases", {}).get(str(current.lease)) if current else None
            if current and state is not None and state != "active":
                self._abandon(current, state=state)

    def _held_leases(self) -> list[int]:
        """What a heartbeat keeps alive: the lease rendering, the one whose result is still being sent (a slow
        upload must not let it expire), and the one taken ahead while the render runs on (a render slower than
        the last must not let it expire)."""
        held = [c.lease for c in (self.current, self.sending) if c is not None]
        ahead = self.next_details
        return [*held, int(ahead["lease"])] if ahead is not None and ahead.get("lease") not in held else held

    def _owner_pause(self, mode: str | None) -> None:
        """The owner's pause from the web sticks until resumed. With "release" the marketplace has already given
        the current frame back (its lease reads "released", so `_abandon` stops the render); with "finish" the
        frame in hand is finished and reported, then no new one is taken."""
        if mode and not self.owner_paused.is_set():
            log.warning(
                "event=paused_by_owner: %s",
                "giving the current frame back" if mode == "release" else "finishing the current frame",
                extra={"mode": mode},
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
            log.warning("event=lease_lost: abandoning the frame", extra={"lease_id": current.lease, "state": state})
            current.revoked.set()
            if self.renderer is not None:
                self.renderer.interrupt()  # the work loop reaps it and drops the renderer

    def _ack(self, raw: bytes) -> None:
        for _ in range(30):
            try:
                self.broker.lrem(self.processing, 1, raw)  # type: ignore[arg-type]  # redis-py's stub says str; bytes work
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
            log.warning("event=bad_message", extra={"dropped": repr(raw[:100])})
            self._ack(raw)
            return
        with logs.scope(lease_id=lease_id):  # every line about this lease names it, until it is done
            current = Current(lease=lease_id, token=token, raw=raw)
            # The previous frame's `next` call or report may have brought this lease's details along.
            details, self.next_details = self.next_details, None
            try:
                if details is None or details.get("lease") != lease_id:
                    details = self.client.lease(lease_id, token)
            except ApiError as exc:
                log.info("event=lease_skipped", extra={"reason": str(exc)})
                self._ack(raw)
                return
            current.step("details", current.started)
            self.current = current
            handed_off = False
            try:
                handed_off = self._work(current, details)
            finally:
                self.current = None
                if not handed_off:  # else the sender acks and logs once the result is reported
                    self._done(current, details["kind"])

    def _done(self, current: Current, kind: str) -> None:
        self._ack(current.raw)
        log.info(
            "event=lease_timing",
            extra={
                "kind": kind,
                "received": round(current.received, 3),
                "handed_off": round(current.handed_off or time.time(), 3),
                "done": round(time.time(), 3),
                **{f"{k}_s": round(v, 3) for k, v in current.steps.items()},
            },
        )

    def _scene(self, lease: Lease) -> tuple[Path, Path]:
        sha, kind, blend_path = lease.scene
        root = self.cache / "scenes" / bundle_key(sha256=sha, kind=kind, blend_path=blend_path)
        archive = self.cache / "downloads" / f"{sha}.{kind}"
        if not (root / ".complete").exists() and not archive.exists():
            archive.parent.mkdir(parents=True, exist_ok=True)
            download(lease.scene_url, archive, sha256=sha)
        blend = bundle_ready(archive=archive, kind=kind, blend_path=blend_path, root=root)
        return blend, root

    def _work(self, current: Current, answer: LeaseAnswer) -> bool:
        """Render the lease; True when its result was handed to the sender, which uploads and reports it."""
        lease_id, token = current.lease, current.token
        tmp = Path(tempfile.mkdtemp(prefix="render-"))
        try:
            lease = Lease.from_answer(answer)  # a lease outside the contract is reported as failed, unrendered
            # The market never tells a node its frame's or job's id (a canary must look like real work): the
            # frame number and the lease id are what this side has; the market's lines join them by lease_id.
            logs.bind(frame=lease.manifest.frame, lease_kind=lease.kind)
            # Threads and devices are this machine's own choice, not the marketplace's.
            manifest = replace(
                lease.manifest,
                threads=self.config.threads,
                device_ids=tuple(self.device_ids) if self.device_ids else lease.manifest.device_ids,
            )
            stats, out = self._render(current, lease, manifest, tmp)
        except InterruptedError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            self._drop_renderer()
            if self.abort_now.is_set():
                self._safe(lambda: self.client.release(lease_id, token))
            log.warning("event=frame_abandoned", extra={"reason": str(exc)})
            return False
        except Exception as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            self._drop_renderer()
            if self.abort_now.is_set() or current.revoked.is_set():
                if self.abort_now.is_set():
                    self._safe(lambda: self.client.release(lease_id, token))
                return False
            error = f"{type(exc).__name__}: {exc}"
            log.error("event=render_failed", extra={"error": error})
            self._safe(lambda: self.client.report(lease_id, token=token, ok=False, error=error))
            return False
        self._take_next(current)
        self._send_wait()  # one result in flight at most (the previous one is long sent: a render went by)
        self.sending = current
        # The sender logs with this lease's context (its id, frame): threads start with an empty one.
        self.sender = threading.Thread(
            target=contextvars.copy_context().run,
            args=(self._send, current, lease, out, {**stats, "device": manifest.device}, tmp),
            name=f"send-{lease_id}",
        )
        current.handed_off = time.time()
        self.sender.start()
        return True

    def _take_next(self, current: Current, *, ahead: bool = False) -> None:
        """Take the next lease now, to render it while this result is sent; not when about to stop or pause, nor
        again once taken. `ahead`: while this lease still renders (`_next_ahead`), a step of its own beside the
        render."""
        if current.next_taken or self.once or self.stopping.is_set() or self._pausing():
            return
        mark = time.monotonic()
        try:
            self.next_details = self.client.next(current.lease, current.token).get("next")
            current.next_taken = True
        except (ApiError, OSError) as exc:  # taken again after the render; or the report leases the next frame
            log.warning("event=next_failed", extra={"error": str(exc), "ahead": ahead})
        self.next_call_s = time.monotonic() - mark
        current.step("next_ahead" if ahead else "next", mark)

    def _next_ahead(self, current: Current, shape: RenderShape) -> threading.Timer | None:
        """A timer that takes the next lease before this render is expected to end (NEXT_AHEAD_MIN_S), or None
        when there is no expectation for its shape."""
        if self.last_render is None or self.last_render[0] != shape:
            return None
        lead = max(NEXT_AHEAD_MIN_S, 2 * self.next_call_s)
        expected = self.last_render[1]
        if expected < NEXT_AHEAD_RENDERS_MIN * lead:
            return None
        # The call logs with this lease's context (its id, frame): threads start with an empty one.
        run = contextvars.copy_context().run
        timer = threading.Timer(expected - lead, run, args=(self._take_next, current), kwargs={"ahead": True})
        timer.daemon = True
        timer.start()
        return timer

    def _send(self, current: Current, lease: Lease, out: Path, stats: dict[str, Any], tmp: Path) -> None:
        """The sender thread: upload the result (and its noisy pass), report it, ack the delivery."""
        lease_id, token = current.lease, current.token
        try:
            mark = time.monotonic()
            try:
                upload(lease.upload_url, out)
                if lease.noisy_upload_url:  # denoised frames are verified on their pre-denoise pass
                    upload(lease.noisy_upload_url, Path(stats["noisy_path"]))
            except (ApiError, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"
                log.error("event=upload_failed", extra={"error": error})
                self._safe(lambda: self.client.report(lease_id, token=token, ok=False, error=error))
                return
            mark = current.step("upload", mark)
            result = self._safe(lambda: self.client.report(lease_id, token=token, ok=True, stats=stats))
            current.step("report", mark)
            following = result.get("next") if result else None
            if following is not None:  # no lease was taken ahead: the report leased the next frame
                self.next_details = following
            self.frames_done += 1
            log.info(
                "event=reported",
                extra={
                    "seconds": round(stats.get("seconds", 0), 2),
                    "accepted": result["accepted"] if result else None,  # not the answer: it carries signed URLs
                    "next_lease": following and following["lease"],
                },
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            self.sending = None
            self._done(current, lease.kind)

    def _send_wait(self) -> None:
        if self.sender is not None:
            self.sender.join()
            self.sender = None

    def _render(
        self, current: Current, lease: Lease, manifest: RenderManifest, tmp: Path
    ) -> tuple[dict[str, Any], Path]:
        """Render the lease in `tmp`; returns the render's stats and the image's path."""
        limit = self.config.max_render_seconds or manifest.max_render_seconds or 1800
        out = tmp / ("out.exr" if manifest.file_format == "OPEN_EXR" else "out.png")
        label = f"frame {manifest.frame}" + (" (verify crop)" if lease.kind == "verify" else "")
        mark = time.monotonic()
        blend, root = self._scene(lease)
        mark = current.step("scene", mark)
        series = manifest.blender_series
        # A loaded Blender serves the next frame only for the same scene in the same series.
        loaded = f"{series}:{blend}"
        if self.renderer is None or self.loaded_scene != loaded:
            if self.renderer is not None:
                self.renderer.close()
            self.renderer = self.renderer_factory(timeout_s=limit, series=series)
            self.renderer.load(blend, root)
            self.loaded_scene = loaded
        mark = current.step("load", mark)
        shape: RenderShape = (lease.kind, lease.scene, series, manifest.resolution_x, manifest.resolution_y)
        shape += (manifest.samples, manifest.border, manifest.device, manifest.use_denoising)
        ahead = self._next_ahead(current, shape) if lease.kind == "render" else None
        try:
            with Progress(label, estimate_s=None):
                stats = render_within_budget(self.renderer, manifest.as_dict(), out, limit=limit)
        finally:
            if ahead is not None:  # not fired yet: never; in flight: answered before the work loop goes on
                ahead.cancel()
                ahead.join()
        self.last_render = (shape, current.step("render", mark) - mark)
        with current.lock:
            current.rendered = True
        if current.revoked.is_set() or self.abort_now.is_set():
            raise InterruptedError("lease lost or agent aborted")
        if lease.noisy_upload_url and not stats.get("noisy_path"):
            # denoised frames are verified on their pre-denoise pass (see docs/verification.md)
            raise RuntimeError("the renderer wrote no pre-denoise pass for a denoised frame")
        return stats, out

    def _drop_renderer(self) -> None:
        if self.renderer is not None:
            self.renderer.close()
        self.renderer = None
        self.loaded_scene = None

    def _safe(self, call: Callable[[], T]) -> T | None:
        for attempt in range(20):
            try:
                return call()
            except ApiError as exc:
                log.warning("event=api_refused", extra={"error": str(exc)})
                return None
            except OSError as exc:  # network: retry, the lease may still be alive
                log.warning("event=api_unreachable", extra={"attempt": attempt, "error": str(exc)})
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

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        if self.tty:
            os.write(2, f"\r✓ {self.label}: {time.monotonic() - self.start:6.1f}s          \n".encode())
