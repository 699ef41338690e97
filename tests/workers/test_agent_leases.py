"""The agent's heartbeat thread against its work loop: a lease the server calls over stops the render that
is still running for it, and nothing else (found by bench_farm: a heartbeat sent just before a report read
"done" and closed the renderer the next frame was about to use, which crashed the agent)."""

import json
import os
import subprocess
import threading
import time

import pytest

from workers.agent import Agent, Current
from workers.blend.renderer import Renderer
from workers.blend.sandbox import SandboxError
from workers.config import AgentConfig


class StandInRenderer:
    """Counts interrupts; stands in for the bpy render server (the thread logic is what is tested here)."""

    def __init__(self) -> None:
        self.interrupted = 0

    def interrupt(self) -> None:
        self.interrupted += 1


def agent(tmp_path) -> Agent:
    a = Agent(
        AgentConfig(server="http://127.0.0.1:9", token="t", cache_dir=str(tmp_path)),
        renderer_factory=lambda **_: StandInRenderer(),
        devices=[],
        blender_version="5.0.1",
    )
    a.renderer = StandInRenderer()
    return a


def test_a_lease_lost_mid_render_stops_that_render(tmp_path):
    a = agent(tmp_path)
    a.current = current = Current(lease=1, token="t")
    a._abandon(current, state="expired")
    assert current.revoked.is_set() and a.renderer.interrupted == 1


def test_a_lease_reported_a_moment_ago_leaves_the_renderer_alone(tmp_path):
    a = agent(tmp_path)
    a.current = current = Current(lease=1, token="t")
    current.rendered = True  # rendered, now uploading or reporting: the server already says "done"
    a._abandon(current, state="done")
    assert not current.revoked.is_set() and a.renderer.interrupted == 0


def test_a_heartbeat_about_a_previous_lease_leaves_the_next_frame_alone(tmp_path):
    a = agent(tmp_path)
    previous = Current(lease=1, token="t")
    a.current = Current(lease=2, token="t")  # the work loop moved on while the heartbeat was in flight
    a._abandon(previous, state="done")
    assert not previous.revoked.is_set() and a.renderer.interrupted == 0


def test_the_work_loop_and_the_heartbeat_agree_under_the_lease_lock(tmp_path):
    """Whichever takes the lock first decides: abandoned before `rendered`, or left alone after it."""
    a = agent(tmp_path)
    a.current = current = Current(lease=1, token="t")
    current.lock.acquire()  # the work loop is marking the frame rendered
    beat = threading.Thread(target=a._abandon, args=(current,), kwargs={"state": "done"})
    beat.start()
    current.rendered = True
    current.lock.release()
    beat.join(5)
    assert not current.revoked.is_set() and a.renderer.interrupted == 0


def test_a_lease_lost_while_the_renderer_waits_for_its_child_ends_in_a_sandbox_error():
    """The heartbeat thread interrupts a render server the work loop is waiting on (found by the cluster test: a
    lease lost while Blender was starting closed the pipes under the work loop, whose write then raised
    ValueError and whose reap raised ChildProcessError, and the agent died). Now the work loop gets the usual
    SandboxError, reaps the child itself, and a close() after it is harmless."""
    renderer = Renderer(timeout_s=5)
    answers, child_end = os.pipe()
    child = subprocess.Popen(
        ["sleep", "30"], stdin=subprocess.PIPE, pass_fds=(child_end,), start_new_session=True
    )  # holds the answer pipe open and never answers, like a Blender still loading
    os.close(child_end)
    renderer._proc, renderer._resp_fd, renderer._buf = child, answers, b""
    beat = threading.Timer(0.2, renderer.interrupt)
    beat.start()
    with pytest.raises(SandboxError):
        renderer._read_answer(time.monotonic() + 10, 10)
    beat.join(5)
    assert child.returncode is not None and not renderer.alive
    renderer.close()


def test_closing_a_renderer_whose_pipe_is_already_closed_is_harmless():
    """The heartbeat thread and the work loop may both close the renderer: the second close must not raise."""
    renderer = Renderer(timeout_s=5)
    child = subprocess.Popen(["cat"], stdin=subprocess.PIPE, start_new_session=True)
    child.stdin.close()  # as a first close() left it, before the child's exit was collected
    renderer._proc = child
    renderer.close()  # raised "ValueError: write to closed file" before
    assert child.wait(5) == 0


class RecordingClient:
    """Stands in for the marketplace: records the agent's calls."""

    def __init__(self, owner_pause=None) -> None:
        self.calls: list[str] = []
        self.owner_pause = owner_pause

    def goodbye(self) -> dict:
        self.calls.append("goodbye")
        return {"offline": True}


def test_the_owners_pause_stops_taking_frames_until_resumed(tmp_path):
    a = agent(tmp_path)
    a._owner_pause("finish")
    assert a.owner_paused.is_set() and a.renderer.interrupted == 0  # the frame in hand is finished, not dropped
    a._owner_pause("finish")  # every heartbeat repeats it: still paused
    assert a.owner_paused.is_set()
    a._owner_pause(None)
    assert not a.owner_paused.is_set()


def test_the_agent_says_goodbye_only_after_a_hello(tmp_path):
    a = agent(tmp_path)
    a.client = client = RecordingClient()
    a._goodbye()
    assert client.calls == []  # never connected: nothing to say
    a.said_hello = True
    a._goodbye()
    assert client.calls == ["goodbye"]


class QueueBroker:
    """The node's queue and processing list, as the agent uses them (LMOVE, LREM)."""

    def __init__(self, queued: list[bytes]) -> None:
        self.lists: dict[str, list[bytes]] = {"queue": list(queued), "processing": []}

    def lmove(self, src: str, dst: str, _where_from: str, _where_to: str) -> bytes | None:
        if not self.lists[src]:
            return None
        raw = self.lists[src].pop()
        self.lists[dst].insert(0, raw)
        return raw

    def lrem(self, name: str, _count: int, raw: bytes) -> int:
        self.lists[name].remove(raw)
        return 1


class LeaseCalls:
    def __init__(self) -> None:
        self.released: list[tuple[int, str]] = []
        self.nexts: list[int] = []

    def release(self, lease_id: int, token: str) -> dict:
        self.released.append((lease_id, token))
        return {"released": True}

    def next(self, lease_id: int, token: str) -> dict:
        self.nexts.append(lease_id)
        return {"next": None}


def test_a_stopping_agent_gives_back_the_lease_it_took_ahead(tmp_path):
    """Its frame goes to another node now, not when the lease expires (which would count as an abandon)."""
    a = agent(tmp_path)
    a.client = calls = LeaseCalls()
    a.said_hello, a.queue, a.processing = True, "queue", "processing"
    a.broker = broker = QueueBroker([json.dumps({"lease": 8, "token": "ahead"}).encode(), b"not json"])
    a._release_queued()
    assert calls.released == [(8, "ahead")]
    assert broker.lists == {"queue": [], "processing": []}  # each one acked


def test_the_heartbeat_keeps_the_lease_being_sent_alive(tmp_path):
    a = agent(tmp_path)
    assert a._held_leases() == []
    a.current, a.sending = Current(lease=2, token="t"), Current(lease=1, token="t")
    assert a._held_leases() == [2, 1]  # a slow upload of frame 1 must not let its lease expire
    a.sending = None
    assert a._held_leases() == [2]


def test_no_lease_is_taken_ahead_when_the_agent_is_about_to_stop_or_pause(tmp_path):
    a = agent(tmp_path)
    a.client = calls = LeaseCalls()
    a._take_next(Current(lease=1, token="t"))
    assert calls.nexts == [1]
    a.owner_paused.set()
    a._take_next(Current(lease=2, token="t"))
    a.owner_paused.clear()
    a.stopping.set()
    a._take_next(Current(lease=3, token="t"))
    assert calls.nexts == [1]


class TimedLeaseCalls(LeaseCalls):
    """`next` answers a lease of its own after `delay` seconds, or fails while `failing`."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay, self.failing, self.at = delay, False, []

    def next(self, lease_id: int, token: str) -> dict:
        time.sleep(self.delay)
        self.at.append(time.monotonic())
        if self.failing:
            raise OSError("unreachable")
        super().next(lease_id, token)
        return {"next": {"lease": 100 + lease_id}}


SHAPE = ("render", ("sha", "blend", "scene.blend"), "5.0", 320, 180, 32, None, "CPU", False)


def test_the_next_lease_is_taken_before_a_render_of_a_known_shape_ends(tmp_path):
    """The render's expected end is the last render of its shape; the next lease is asked for the lead before it,
    so it is there when the render ends (the call is off the critical path), and is not asked for again."""
    a = agent(tmp_path)
    a.client = calls = TimedLeaseCalls(delay=0.05)
    a.last_render, a.next_call_s = (SHAPE, 1.5), 0.05  # lead: NEXT_AHEAD_MIN_S, 0.5 s
    current = Current(lease=1, token="t")
    start = time.monotonic()
    timer = a._next_ahead(current, SHAPE)
    assert timer is not None
    timer.join(5)  # "the render" goes on meanwhile
    assert calls.nexts == [1] and 0.95 <= calls.at[0] - start <= 1.4
    assert a.next_details == {"lease": 101} and a._held_leases() == [101]  # its heartbeats keep it alive
    assert "next_ahead" in current.steps and "next" not in current.steps
    a._take_next(current)  # the render ended: taken already
    assert calls.nexts == [1] and "next" not in current.steps


def test_no_lease_is_taken_ahead_without_an_expectation_for_the_render(tmp_path):
    a = agent(tmp_path)
    a.client = calls = TimedLeaseCalls()
    current = Current(lease=1, token="t")
    assert a._next_ahead(current, SHAPE) is None  # a first frame: nothing rendered yet
    a.last_render = ((*SHAPE[:3], 640, *SHAPE[4:]), 30.0)
    assert a._next_ahead(current, SHAPE) is None  # another shape's time says nothing of this one
    a.last_render, a.next_call_s = (SHAPE, 30.0), 20.0
    assert a._next_ahead(current, SHAPE) is None  # a render shorter than two leads (a 20 s call): after it
    a._take_next(current)  # the render ended: taken now, on the critical path
    assert calls.nexts == [1] and "next" in current.steps and a.next_call_s < 1


def test_a_lease_not_taken_ahead_is_taken_once_the_render_ends(tmp_path):
    """A failed call ahead is tried again when the render ends; a stop or a pause meanwhile takes none."""
    a = agent(tmp_path)
    a.client = calls = TimedLeaseCalls()
    a.last_render, a.next_call_s = (SHAPE, 1.1), 0.0
    calls.failing = True
    current = Current(lease=1, token="t")
    a._next_ahead(current, SHAPE).join(5)
    assert not current.next_taken and a.next_details is None
    calls.failing = False
    a._take_next(current)
    assert calls.nexts == [1] and current.next_taken
    stopped = Current(lease=2, token="t")
    timer = a._next_ahead(stopped, SHAPE)
    a.stopping.set()  # a first stop signal: this frame is finished, none is taken after it
    timer.join(5)
    assert calls.nexts == [1]


def test_a_render_ending_before_its_lease_is_taken_ahead_takes_it_once(tmp_path):
    """The timer cancelled at the render's end never fires; the work loop takes the lease itself."""
    a = agent(tmp_path)
    a.client = calls = TimedLeaseCalls()
    a.last_render = (SHAPE, 5.0)
    current = Current(lease=1, token="t")
    timer = a._next_ahead(current, SHAPE)
    timer.cancel()  # the render ended well before its expectation
    timer.join(5)
    a._take_next(current)
    time.sleep(0.1)
    assert calls.nexts == [1] and "next_ahead" not in current.steps


def test_a_pause_gives_back_the_lease_taken_ahead(tmp_path):
    """A lease taken ahead just before the owner's pause (or the schedule's end) was learnt is not held through the
    pause (the heartbeats name it, so it would never expire): it is given back, once."""
    a = agent(tmp_path)
    a.client = calls = LeaseCalls()
    a.said_hello, a.queue, a.processing = True, "queue", "processing"
    a.broker = broker = QueueBroker([json.dumps({"lease": 9, "token": "ahead"}).encode()])
    a.next_details = {"lease": 9}
    assert a._held_leases() == [9]
    a.stopping.set()  # the pause's wait returns at once
    assert not a._paused()  # not paused: nothing given back
    assert calls.released == [] and a.next_details == {"lease": 9}
    a.owner_paused.set()
    assert a._paused() and a._paused()
    assert calls.released == [(9, "ahead")] and broker.lists == {"queue": [], "processing": []}
    assert a.next_details is None and a._held_leases() == []
