"""The agent contract (workers/contract.py) on the agent's side: one set of limits, every out-of-range value refused
with an error naming its field, and the agent refusing (and reporting) a lease outside the contract unrendered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import responses

from tests.fixtures.manifests import BLEND, SHA, lease_answer, manifest
from workers.agent import Agent, Current
from workers.config import AgentConfig
from workers.contract import LIMITS, ContractError, Lease, RenderManifest


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"samples": 0}, "samples"),
        ({"device": "METAL"}, "device"),
        ({"file_format": "JPEG"}, "file_format"),
        ({"use_adaptive_sampling": True}, "use_adaptive_sampling"),
        ({"border": [60, 0, 10, 10]}, "border"),
        ({"border": [0, 0, 10]}, "border"),
        ({"resolution_x": 70000}, "resolution_x"),
        ({"frame": "1"}, "frame"),
        ({"frame": True}, "frame"),
        ({"threads": -1}, "threads"),
        ({"seed": -1}, "seed"),
        ({"use_denoising": "yes"}, "use_denoising"),
        ({"camera": 3}, "camera"),
        ({"device_ids": "CUDA_0"}, "device_ids"),
        ({"scene_sha256": "A" * 64}, "scene_sha256"),
        ({"scene_kind": "tar"}, "scene_kind"),
        ({"max_render_seconds": 0}, "max_render_seconds"),
        ({"calibrated_budget_seconds": -1.0}, "calibrated_budget_seconds"),
        ({"calibrated_budget_seconds": float("nan")}, "calibrated_budget_seconds"),
    ],
)
def test_a_value_outside_the_contract_is_refused_by_name(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ContractError, match=field):
        RenderManifest.from_dict(manifest(**change))


@pytest.mark.parametrize("field", ["frame", "samples", "seed", "resolution_x", "resolution_y"])
def test_a_missing_setting_is_refused_by_name(field: str) -> None:
    data = manifest()
    del data[field]
    with pytest.raises(ContractError, match=rf"manifest {field}=None: expected an integer"):
        RenderManifest.from_dict(data)


@pytest.mark.parametrize(
    ("field", "bounds"),
    [
        ("frame", LIMITS.frame),
        ("samples", LIMITS.samples),
        ("seed", LIMITS.seed),
        ("threads", LIMITS.threads),
        ("resolution_x", LIMITS.side),
        ("resolution_y", LIMITS.side),
        ("max_render_seconds", LIMITS.render_seconds),
    ],
)
def test_each_limit_is_inclusive_and_one_past_it_is_refused(field: str, bounds: tuple[int, int]) -> None:
    lo, hi = bounds
    for ok in (lo, hi):
        assert getattr(RenderManifest.from_dict(manifest(**{field: ok})), field) == ok
    for bad in (lo - 1, hi + 1):
        with pytest.raises(ContractError, match=rf"manifest {field}={bad}: expected an integer in \[{lo}, {hi}\]"):
            RenderManifest.from_dict(manifest(**{field: bad}))


def test_the_json_form_reads_back_as_the_same_manifest_and_unknown_keys_are_ignored() -> None:
    m = RenderManifest.from_dict(
        manifest(border=[1, 2, 30, 20], device_ids=["CUDA_0"], camera="Cam", some_future_field={"x": 1})
    )
    assert m.border == (1, 2, 30, 20) and m.device_ids == ("CUDA_0",)
    data = m.as_dict()
    assert "some_future_field" not in data and data["border"] == [1, 2, 30, 20] and data["device_ids"] == ["CUDA_0"]
    assert RenderManifest.from_dict(data) == m


def test_building_a_manifest_checks_it_too() -> None:
    with pytest.raises(ContractError, match=r"border=\[0, 0, 65, 1\] is not inside the 64x48 image"):
        RenderManifest(frame=1, samples=1, seed=0, resolution_x=64, resolution_y=48, border=(0, 0, 65, 1))


def test_a_lease_answer_is_read_whole() -> None:
    lease = Lease.from_answer({**lease_answer(), "noisy_upload_url": "http://market.test/noisy"})
    assert (lease.id, lease.kind, lease.noisy_upload_url) == (7, "render", "http://market.test/noisy")
    assert lease.scene == (SHA, "blend", "scene.blend") and lease.manifest.samples == 8


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"manifest": None}, "manifest=None: expected an object"),
        ({"kind": "mine"}, "lease kind='mine'"),
        ({"lease": "7"}, "lease='7': expected a lease id"),
        ({"lease": None}, "lease=None: expected a lease id"),
        ({"upload_url": ""}, "lease upload_url='': expected a URL"),
        ({"scene_url": None}, "lease scene_url=None: expected a URL"),
    ],
)
def test_a_lease_answer_outside_the_contract_is_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ContractError, match=message):
        Lease.from_answer({**lease_answer(), **change})


def test_a_lease_that_names_no_scene_is_refused() -> None:
    answer = lease_answer()
    del answer["manifest"]["blend_path"]
    with pytest.raises(ContractError, match="names no scene to render"):
        Lease.from_answer(answer)


class RecordingClient:
    """Stands in for the marketplace's agent API: records reports, and `next` calls (nothing fits)."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []
        self.nexts: list[tuple[int, str]] = []

    def report(self, lease_id: int, **kw: Any) -> dict[str, Any]:
        self.reports.append({"lease": lease_id, **kw})
        return {"accepted": True, "message": "accepted"}

    def next(self, lease_id: int, token: str) -> dict[str, Any]:
        self.nexts.append((lease_id, token))
        return {"next": None}


class RecordingBroker:
    """Stands in for the agent broker: records the deliveries acked (removed from the processing list)."""

    def __init__(self) -> None:
        self.acked: list[tuple[str, bytes]] = []

    def lrem(self, key: str, count: int, raw: bytes) -> int:
        self.acked.append((key, raw))
        return 1


class RecordingRenderer:
    """Stands in for the sandboxed Blender: records what it is asked to render and writes a file."""

    def __init__(self) -> None:
        self.loaded: list[Path] = []
        self.rendered: list[RenderManifest] = []

    def load(self, blend: Path, root: Path) -> None:
        self.loaded.append(blend)

    def render(self, manifest: dict[str, Any], out: Path, *, timeout_s: float | None = None) -> dict[str, Any]:
        self.rendered.append(RenderManifest.from_dict(manifest))
        out.write_bytes(b"pixels")
        return {"seconds": 1.5, "noisy_path": None}

    def close(self) -> None:
        pass


def contract_agent(tmp_path: Path, renderer: RecordingRenderer) -> tuple[Agent, RecordingClient]:
    a = Agent(
        AgentConfig(server="http://127.0.0.1:9", token="t", cache_dir=str(tmp_path), threads=3),
        renderer_factory=lambda **_: renderer,
        devices=[],
        blender_version="5.0.1",
        device_ids=["CUDA_0"],
    )
    a.client = client = RecordingClient()
    # What hello sets: the node's broker and its processing list (the sender acks the delivery there).
    a.broker, a.processing = RecordingBroker(), "node:7:processing"  # type: ignore[assignment]
    return a, client


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"samples": LIMITS.samples[1] + 1}, "ContractError: manifest samples=16777217: expected an integer in"),
        ({"resolution_x": 3}, "ContractError: manifest resolution_x=3: expected an integer in [4, 65536]"),
        ({"blend_path": None}, "ContractError: lease manifest names no scene to render"),
    ],
)
def test_the_agent_reports_a_lease_outside_the_contract_as_failed_without_rendering_it(
    tmp_path: Path, change: dict[str, Any], error: str
) -> None:
    renderer = RecordingRenderer()
    a, client = contract_agent(tmp_path, renderer)
    a._work(Current(lease=7, token="tok"), lease_answer(**change))
    assert [(r["lease"], r["token"], r["ok"]) for r in client.reports] == [(7, "tok", False)]
    assert client.reports[0]["error"].startswith(error)
    assert renderer.loaded == [] and renderer.rendered == []


@responses.activate
def test_the_agent_renders_a_lease_with_its_own_threads_and_devices_and_reports_it(tmp_path: Path) -> None:
    renderer = RecordingRenderer()
    a, client = contract_agent(tmp_path, renderer)
    archive = tmp_path / "downloads" / f"{SHA}.blend"  # already downloaded: the scene URL is never fetched
    archive.parent.mkdir(parents=True)
    archive.write_bytes(BLEND)
    upload = responses.put("http://market.test/upload", status=201)
    answer = lease_answer(threads=0, device_ids=None, file_format="PNG", calibrated_budget_seconds=99.0)
    assert a._work(Current(lease=7, token="tok", raw=b"delivery"), answer)  # rendered: the sender sends it
    # The next lease is asked for before the result is sent, so the next frame renders while it travels.
    assert client.nexts == [(7, "tok")]
    a._send_wait()
    [rendered] = renderer.rendered
    assert rendered == RenderManifest.from_dict({**answer["manifest"], "threads": 3, "device_ids": ["CUDA_0"]})
    assert upload.call_count == 1 and [p.name for p in renderer.loaded] == ["scene.blend"]
    stats = {"seconds": 1.5, "noisy_path": None, "device": "CPU"}
    assert client.reports == [{"lease": 7, "token": "tok", "ok": True, "stats": stats}]
    assert a.broker.acked == [("node:7:processing", b"delivery")]  # once reported, the delivery is acked
