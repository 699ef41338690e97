"""The agent contract: what the marketplace and an agent say to each other, and the limits of a render manifest.

One module without Django, imported by both sides (`workers` never imports `marketplace`):

- `RenderManifest`: a lease's pinned render settings. The marketplace builds every manifest through it
  (`marketplace.dispatch.services.manifest_for`); the agent validates every lease with it (`Lease.from_answer`),
  and the renderer every manifest it is given (`workers.blend.renderer.Renderer.render`).
- `LIMITS`: the one set of bounds a manifest's values must lie in. The marketplace's own limits are derived from
  them or checked against them (`marketplace.jobs.conf`, `marketplace.checks`).
- The agent API's requests and answers as TypedDicts: `workers.client` sends and returns them, the marketplace's
  serializers (`marketplace.dispatch.serializers`) put the same fields in the OpenAPI schema, and
  tests/api/test_agent_contract.py checks the client against that schema.

A reader is tolerant: keys it does not know are ignored, so the marketplace can add a field before every agent
knows it; a value it knows that is out of range is refused with a ContractError naming the field.
"""

# No `from __future__ import annotations`: TypedDict reads NotRequired from evaluated annotations only (3.11).
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, NotRequired, Self, TypedDict

DEVICES = ("CPU", "CUDA", "OPTIX", "HIP", "ONEAPI")
FILE_FORMATS = ("PNG", "OPEN_EXR")
SCENE_KINDS = ("blend", "zip")
LEASE_KINDS = ("render", "verify")
LEASE_STATES = ("active", "done", "failed", "expired", "released", "revoked")
PAUSE_MODES = ("finish", "release")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ManifestLimits:
    """Inclusive (lowest, highest) bounds of a manifest's numbers."""

    frame: tuple[int, int] = (-1_048_574, 1_048_574)  # Blender's own frame range (MINAFRAME, MAXFRAME)
    side: tuple[int, int] = (4, 65_536)  # pixels per side: the renderer's smallest, Blender's largest
    samples: tuple[int, int] = (1, 1 << 24)  # Cycles' largest sample count
    seed: tuple[int, int] = (0, 2**31 - 1)  # Cycles' seed is a 32-bit signed int
    threads: tuple[int, int] = (0, 1024)  # 0: as many as the machine has
    render_seconds: tuple[int, int] = (1, 86_400)  # a render's wall-time cap: a day at most


LIMITS = ManifestLimits()


class ContractError(ValueError):
    """A manifest or an answer outside the contract; the message names the field and what was expected."""


def _integer(name: str, value: object, bounds: tuple[int, int]) -> int:
    lo, hi = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ContractError(f"manifest {name}={value!r}: expected an integer in [{lo}, {hi}]")
    return value


def _choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ContractError(f"manifest {name}={value!r}: expected one of {', '.join(choices)}")
    return str(value)


def _text_or_none(name: str, value: object, what: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ContractError(f"manifest {name}={value!r}: expected {what}")
    return value


@dataclass(frozen=True, kw_only=True)
class RenderManifest:
    """One frame's (or one crop's) pinned render settings. Constructing one validates it (ContractError).

    `border` is [x, y, w, h] in pixels with y from the top, inside the image; `threads` (0 = all) and
    `device_ids` are the agent's own choice, set by it before rendering. The scene fields and the time caps are
    the marketplace's: a lease's manifest always names its scene (Lease.from_answer); a manifest for a scene
    already loaded (calibration, benchmark, tests) needs none.
    """

    frame: int
    samples: int
    seed: int
    resolution_x: int
    resolution_y: int
    device: str = "CPU"
    file_format: str = "PNG"
    use_denoising: bool = False
    camera: str | None = None  # None or "": the scene's active camera
    border: tuple[int, int, int, int] | None = None
    threads: int = 0
    device_ids: tuple[str, ...] | None = None
    blender_version: str | None = None  # refused by a renderer that runs another version
    blender_series: str | None = None  # the runtime the agent renders it with (workers.runtimes)
    scene_sha256: str | None = None
    scene_kind: str | None = None
    blend_path: str | None = None
    max_render_seconds: int | None = None
    calibrated_budget_seconds: float | None = None  # a render lease's "slower than calibrated" budget (budget.py)

    def __post_init__(self) -> None:
        _integer("frame", self.frame, LIMITS.frame)
        _integer("samples", self.samples, LIMITS.samples)
        _integer("seed", self.seed, LIMITS.seed)
        _integer("resolution_x", self.resolution_x, LIMITS.side)
        _integer("resolution_y", self.resolution_y, LIMITS.side)
        _integer("threads", self.threads, LIMITS.threads)
        _choice("device", self.device, DEVICES)
        _choice("file_format", self.file_format, FILE_FORMATS)
        if not isinstance(self.use_denoising, bool):
            raise ContractError(f"manifest use_denoising={self.use_denoising!r}: expected true or false")
        _text_or_none("camera", self.camera, "a camera object name")
        _text_or_none("blender_version", self.blender_version, "a Blender version such as 5.0.1")
        _text_or_none("blender_series", self.blender_series, "a Blender series such as 5.0")
        _text_or_none("blend_path", self.blend_path, "the .blend file's path in the scene bundle")
        if self.device_ids is not None and not all(isinstance(i, str) for i in self.device_ids):
            raise ContractError("manifest device_ids must be a list of device ids (see list_devices())")
        if self.scene_sha256 is not None and not (
            isinstance(self.scene_sha256, str) and _SHA256.fullmatch(self.scene_sha256)
        ):
            raise ContractError(f"manifest scene_sha256={self.scene_sha256!r}: expected 64 lowercase hex digits")
        if self.scene_kind is not None:
            _choice("scene_kind", self.scene_kind, SCENE_KINDS)
        if self.max_render_seconds is not None:
            _integer("max_render_seconds", self.max_render_seconds, LIMITS.render_seconds)
        budget = self.calibrated_budget_seconds
        # No upper bound: a budget past the render's own cap is simply not the one that stops it.
        if budget is not None and (
            isinstance(budget, bool) or not isinstance(budget, int | float) or not 0 < budget < math.inf
        ):
            raise ContractError(f"manifest calibrated_budget_seconds={budget!r}: expected a positive number of seconds")
        if self.border is not None:
            x, y, w, h = self.border
            if x < 0 or y < 0 or w < 1 or h < 1 or x + w > self.resolution_x or y + h > self.resolution_y:
                raise ContractError(
                    f"manifest border={list(self.border)!r} is not inside the "
                    f"{self.resolution_x}x{self.resolution_y} image"
                )

    @classmethod
    def from_dict(cls, data: object) -> Self:
        """The manifest a JSON object describes; raises ContractError naming the first bad field."""
        if not isinstance(data, Mapping):
            raise ContractError(f"manifest={data!r}: expected an object")
        if data.get("use_adaptive_sampling"):
            raise ContractError("manifest use_adaptive_sampling must be false: adaptive sampling is not reproducible")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known and v is not None}
        for name in ("frame", "samples", "seed", "resolution_x", "resolution_y"):
            values.setdefault(name, None)  # missing: refused by name below
        border = values.get("border")
        if border is not None:
            if (
                not isinstance(border, list | tuple)
                or len(border) != 4
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in border)
            ):
                raise ContractError(f"manifest border={border!r}: expected [x, y, w, h] integer pixels")
            values["border"] = tuple(border)
        ids = values.get("device_ids")
        if ids is not None:
            if not isinstance(ids, list | tuple):
                raise ContractError("manifest device_ids must be a list of device ids (see list_devices())")
            values["device_ids"] = tuple(ids)
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """The JSON object of this manifest (what a lease stores and the agent API sends)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["border"] = list(self.border) if self.border is not None else None
        out["device_ids"] = list(self.device_ids) if self.device_ids is not None else None
        return out


@dataclass(frozen=True, kw_only=True)
class Lease:
    """A lease's work as the agent API gives it (LeaseAnswer), validated: what to render and where it goes.
    Constructing one checks it (ContractError): a known kind, and a manifest that names its scene."""

    id: int
    kind: str
    expires_at: str
    manifest: RenderManifest
    scene_url: str
    upload_url: str
    noisy_upload_url: str | None = None  # a denoised frame's pre-denoise pass goes here (docs/verification.md)

    def __post_init__(self) -> None:
        if isinstance(self.id, bool) or not isinstance(self.id, int) or self.id < 1:
            raise ContractError(f"lease={self.id!r}: expected a lease id")
        if self.kind not in LEASE_KINDS:
            raise ContractError(f"lease kind={self.kind!r}: expected one of {', '.join(LEASE_KINDS)}")
        _scene_of(self.manifest)

    @property
    def scene(self) -> tuple[str, str, str]:
        """The scene to render: (scene_sha256, scene_kind, blend_path) of the manifest."""
        return _scene_of(self.manifest)

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any]) -> Self:
        """The lease an answer describes; raises ContractError for one outside the contract."""
        noisy = answer.get("noisy_upload_url")
        return cls(
            id=answer.get("lease", 0),
            kind=answer.get("kind", ""),
            expires_at=str(answer.get("expires_at", "")),
            manifest=RenderManifest.from_dict(answer.get("manifest")),
            scene_url=_url(answer, "scene_url"),
            upload_url=_url(answer, "upload_url"),
            noisy_upload_url=noisy if isinstance(noisy, str) and noisy else None,
        )


def _scene_of(manifest: RenderManifest) -> tuple[str, str, str]:
    m = manifest
    if m.scene_sha256 is None or m.scene_kind is None or m.blend_path is None:
        raise ContractError("lease manifest names no scene to render (scene_sha256, scene_kind, blend_path)")
    return m.scene_sha256, m.scene_kind, m.blend_path


def _url(answer: Mapping[str, Any], name: str) -> str:
    url = answer.get(name)
    if not isinstance(url, str) or not url:
        raise ContractError(f"lease {name}={url!r}: expected a URL")
    return url


# --------------------------------------------------------------- the agent API's bodies (JSON objects)


class Device(TypedDict):
    """A Cycles device the agent can render with (hello)."""

    type: str
    name: str
    use: NotRequired[bool]
    vram_mb: NotRequired[int]


class HelloRequest(TypedDict):
    devices: list[Device]
    cpu_cores: int
    ram_mb: int
    blender_version: str
    blender_series: list[str]
    sandbox: NotRequired[str]  # "enforced" or "unsandboxed": the scene sandbox (Landlock) on this machine
    sandbox_detail: NotRequired[str]


class HelloAnswer(TypedDict):
    node: int
    name: str
    status: str
    device: str
    broker_url: str
    queue: str
    heartbeat_seconds: int


class HeartbeatRequest(TypedDict):
    leases: list[int]
    paused: bool


class HeartbeatAnswer(TypedDict):
    leases: dict[str, str]  # lease id -> one of LEASE_STATES
    status: str
    owner_pause: str | None  # None, or the mode the owner paused with (PAUSE_MODES)
    heartbeat_seconds: NotRequired[int]  # the pace from now on (a marketplace before session 19 does not send it)


class GoodbyeAnswer(TypedDict):
    offline: bool
    released: int


class BenchRequest(TypedDict):
    results: dict[str, float]


class BenchAnswer(TypedDict):
    bench_score: float


class LeaseAnswer(TypedDict):
    lease: int
    kind: str
    expires_at: str
    manifest: dict[str, Any]  # a RenderManifest's as_dict()
    scene_url: str
    upload_url: str
    noisy_upload_url: NotRequired[str]


class ReportRequest(TypedDict):
    token: str
    ok: bool
    stats: dict[str, Any]  # the renderer's stats: the marketplace keeps seconds, peak_rss_mb and device
    error: str


class ReportAnswer(TypedDict):
    accepted: bool
    message: str
    # An accepted report leases the node its next frame at once when one fits: that lease's details, or None.
    next: NotRequired[LeaseAnswer | None]


class LeaseTokenRequest(TypedDict):
    """A lease call whose only argument is the lease's token (release; next)."""

    token: str


class NextAnswer(TypedDict):
    # The node's next lease, taken while this one's result is sent: its details, or None when none was leased.
    next: LeaseAnswer | None


class ReleaseAnswer(TypedDict):
    released: bool
