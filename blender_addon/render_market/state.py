"""Per-scene state of the add-on (saved in the .blend: ids and the last answers, never the token)."""

from __future__ import annotations

import json
from typing import Any

import bpy
from bpy.props import IntProperty, StringProperty


class RenderMarketScene(bpy.types.PropertyGroup):
    scene_id: IntProperty(name="Scene", description="the uploaded scene on the server", default=0)
    job_id: IntProperty(name="Job", description="the quoted or running job on the server", default=0)
    busy: StringProperty(name="Busy", description="what runs in the background now", default="")
    status: StringProperty(name="Status", default="")
    error: StringProperty(name="Error", description="the last error, in the server's words", default="")
    check_json: StringProperty(default="")
    upload_json: StringProperty(default="")
    quote_json: StringProperty(default="")
    job_json: StringProperty(default="")
    download_json: StringProperty(default="")


def load(scene: bpy.types.Scene, name: str) -> dict[str, Any]:
    raw = getattr(scene.render_market, f"{name}_json")
    return json.loads(raw) if raw else {}


def save(scene: bpy.types.Scene, name: str, value: Any) -> None:
    setattr(scene.render_market, f"{name}_json", json.dumps(value) if value else "")


def tokens(micro: int | None) -> str:
    """Micro-tokens as tokens, as the website shows them."""
    if micro is None:
        return "-"
    return f"{micro / 1_000_000:,.2f}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def progress(job: dict[str, Any]) -> dict[str, Any]:
    """The progress panel's numbers from a job detail: frames done, cost so far, nodes, failures."""
    frames = job.get("frames") or []
    return {
        "state": job.get("state", ""),
        "frames_total": len(frames),
        "frames_done": sum(1 for f in frames if f.get("state") == "settled"),
        "frames_rendering": sum(1 for f in frames if f.get("state") in ("leased", "rendered", "verifying")),
        "frames_failed": sum(1 for f in frames if f.get("state") == "failed"),
        "retries": sum(max(0, int(f.get("attempts") or 0) - 1) for f in frames),
        "nodes": len({f["node"] for f in frames if f.get("node")}),
        "cost_so_far": job.get("cost_so_far"),
        "escrow_left": job.get("escrow_left"),
    }


TERMINAL = ("done", "failed", "cancelled")
