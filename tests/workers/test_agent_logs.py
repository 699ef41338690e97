"""The agent's lines name its node and, while it works on one, the lease and frame; its errors carry no secret."""

import json

from tests.fixtures.manifests import lease_answer
from workers.agent import Agent
from workers.config import AgentConfig


class Market:
    """Stands in for the marketplace: a hello, one lease whose scene URL cannot be reached, a report."""

    SIGNED = "eyJrIjoic2NlbmVzL3gifQ:1xYiUQ:5ppyw7G3aDYjNbX8"

    def __init__(self) -> None:
        self.reports: list[dict] = []

    def hello(self, _capabilities: dict) -> dict:
        return {
            "node": 7,
            "device": "CPU",
            "queue": "agent:node:7:queue",
            "broker_url": "redis://127.0.0.1:9/0",
            "heartbeat_seconds": 10,
        }

    def lease(self, lease_id: int, token: str) -> dict:
        scene = {"scene_sha256": "ab" * 32, "scene_kind": "blend", "blend_path": "scene.blend"}
        return {
            **lease_answer(frame=3, **scene),  # a lease inside the contract: it fails at the download
            "lease": lease_id,
            # Port 9 (discard) refuses: the download fails with an error that quotes the signed URL.
            "scene_url": f"http://127.0.0.1:9/blobs/{self.SIGNED}",
            "upload_url": f"http://127.0.0.1:9/blobs/{self.SIGNED}",
        }

    def report(self, lease_id: int, **report) -> dict:
        self.reports.append({"lease": lease_id, **report})
        return {"accepted": False}

    def goodbye(self) -> dict:
        return {"offline": True}


class Broker:
    def lrem(self, *_args) -> int:
        return 1


def test_a_failed_render_logs_node_lease_and_frame_and_no_signed_url(tmp_path, json_log):
    a = Agent(
        AgentConfig(server="http://127.0.0.1:9", token="t", cache_dir=str(tmp_path)),
        renderer_factory=lambda **_: None,
        devices=[],
        blender_version="5.0.1",
    )
    a.client = market = Market()
    a._connect()
    a.broker = Broker()
    a._handle(json.dumps({"lease": 5, "token": "lease-token-secret"}).encode())
    a.stopping.set()

    assert market.reports and market.reports[0]["ok"] is False  # it did fail, and said so
    assert json_log.one("hello").items() >= {"node_id": 7, "logger": "agent"}.items()
    failed = json_log.one("render_failed")
    assert failed.items() >= {"node_id": 7, "lease_id": 5, "frame": 3, "lease_kind": "render"}.items()
    assert "/blobs/[redacted]" in failed["error"]
    assert Market.SIGNED not in json_log.text and "lease-token-secret" not in json_log.text
    # Once the lease is done, its ids leave the context; the node's stay.
    a._goodbye()
    last = json_log.one("goodbye")
    assert last["node_id"] == 7 and "lease_id" not in last and "frame" not in last
