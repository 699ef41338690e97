"""Long operations off Blender's main thread: a worker thread does the I/O, a bpy.app.timers callback (`pump`)
hands its progress and outcome back to the main thread, where only bpy data may be touched.

In headless Blender (`bpy` as a Python module, `--background`) timers never fire: call `wait(key)`, which
pumps by hand.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

POLL_S = 0.2


class Stopped(Exception):
    """The task was asked to stop (Blender is quitting, the add-on unregistered, or the artist cancelled)."""


@dataclass
class Context:
    """What a task's work function gets: `progress(text, **data)` and a stop flag to honour between steps."""

    key: str
    events: queue.Queue
    stop: threading.Event = field(default_factory=threading.Event)

    def progress(self, text: str, **data: Any) -> None:
        self.events.put((self.key, "progress", (text, data)))

    def check_stop(self) -> None:
        if self.stop.is_set():
            raise Stopped(f"{self.key} stopped")

    def sleep(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise Stopped(f"{self.key} stopped")


@dataclass
class _Task:
    thread: threading.Thread
    context: Context
    on_done: Callable[[Any], None]
    on_error: Callable[[str], None]
    on_progress: Callable[[str, dict], None] | None


_events: queue.Queue = queue.Queue()
_tasks: dict[str, _Task] = {}


def running(key: str) -> bool:
    return key in _tasks


def start(
    key: str,
    work: Callable[[Context], Any],
    *,
    on_done: Callable[[Any], None],
    on_error: Callable[[str], None],
    on_progress: Callable[[str, dict], None] | None = None,
    error_words: Callable[[BaseException], str | None] = lambda exc: None,
) -> bool:
    """Run `work(context)` on a thread; False (nothing started) when a task of this key is still running.

    `error_words(exc)`: the message to show for an expected error (the server's words), None for a bug.
    """
    if running(key):
        return False
    context = Context(key=key, events=_events)

    def run() -> None:
        try:
            result = work(context)
        except Stopped:
            _events.put((key, "error", "stopped"))
        except BaseException as exc:  # everything must reach the main thread, or the panel waits forever
            words = error_words(exc)
            _events.put((key, "error", words if words is not None else f"{type(exc).__name__}: {exc}"))
        else:
            _events.put((key, "done", result))

    thread = threading.Thread(target=run, name=f"render_market-{key}", daemon=True)
    _tasks[key] = _Task(thread, context, on_done, on_error, on_progress)
    thread.start()
    _ensure_timer()
    return True


def stop(key: str) -> None:
    task = _tasks.get(key)
    if task is not None:
        task.context.stop.set()


def stop_all(join_s: float = 2.0) -> None:
    for task in list(_tasks.values()):
        task.context.stop.set()
    for task in list(_tasks.values()):
        task.thread.join(join_s)
    pump()


def pump() -> float | None:
    """The timer callback: deliver queued events on the main thread; keep polling while tasks run."""
    while True:
        try:
            key, kind, payload = _events.get_nowait()
        except queue.Empty:
            break
        task = _tasks.get(key)
        if task is None:
            continue
        if kind == "progress":
            if task.on_progress is not None:
                task.on_progress(*payload)
            continue
        del _tasks[key]  # before the callback: it may start the next task of the same key
        (task.on_done if kind == "done" else task.on_error)(payload)
    _redraw()
    return POLL_S if _tasks else None


def wait(key: str, *, timeout: float) -> None:
    """Pump until the task of `key` has finished (headless use and tests); TimeoutError past `timeout`."""
    deadline = time.monotonic() + timeout
    while running(key):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{key} still running after {timeout} s")
        time.sleep(POLL_S / 2)
        pump()


def _ensure_timer() -> None:
    import bpy

    if not bpy.app.timers.is_registered(pump):
        bpy.app.timers.register(pump, first_interval=POLL_S, persistent=True)


def _redraw() -> None:
    import bpy

    wm = getattr(bpy.context, "window_manager", None)
    for window in getattr(wm, "windows", []) or []:
        for area in window.screen.areas:
            if area.type == "PROPERTIES":
                area.tag_redraw()
