"""HTTP client for the marketplace's agent API. The agent never touches the database."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, cast

import requests

from workers.contract import (
    BenchAnswer,
    BenchRequest,
    GoodbyeAnswer,
    HeartbeatAnswer,
    HeartbeatRequest,
    HelloAnswer,
    HelloRequest,
    LeaseAnswer,
    LeaseTokenRequest,
    NextAnswer,
    ReleaseAnswer,
    ReportAnswer,
    ReportRequest,
)

TIMEOUT = (5, 60)


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class MarketClient:
    """The agent API's calls; bodies and answers are the agent contract's shapes (workers.contract)."""

    def __init__(self, server: str, token: str) -> None:
        self.base = server.rstrip("/") + "/api/v1/agent"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Node {token}"

    def close(self) -> None:
        """Close the kept-alive connections: the market's server keeps a worker (and its database session) on
        each until the agent hangs up."""
        self.session.close()

    def __enter__(self) -> MarketClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        status, body = self._send(method, path, **kwargs)
        if status >= 400:
            # The market answers errors as RFC 9457 problem details: `detail` says what went wrong.
            message = body.get("detail") or body.get("error") or body.get("message") if isinstance(body, dict) else ""
            raise ApiError(status, message or str(body))
        return body

    def _send(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        # The response stays in this frame: an ApiError's traceback (kept by a CLI's error) holding it would hold
        # its socket open after `close`, and the market's worker on the other end.
        with self.session.request(method, self.base + path, timeout=TIMEOUT, **kwargs) as response:
            try:
                return response.status_code, response.json()
            except ValueError:
                return response.status_code, {"error": response.text[:200]}

    def hello(self, capabilities: HelloRequest) -> HelloAnswer:
        return cast(HelloAnswer, self._call("POST", "/hello/", json=capabilities))

    def beat(self, *, leases: list[int], paused: bool = False) -> HeartbeatAnswer:
        """The whole heartbeat answer: lease states, the node's status and the owner's pause (None or the mode
        the owner chose: "finish" or "release")."""
        body = HeartbeatRequest(leases=leases, paused=paused)
        return cast(HeartbeatAnswer, self._call("POST", "/heartbeat/", json=body))

    def goodbye(self) -> GoodbyeAnswer:
        """The agent is exiting: the marketplace stops counting this node at once."""
        return cast(GoodbyeAnswer, self._call("POST", "/goodbye/"))

    def bench(self, results: dict[str, float]) -> BenchAnswer:
        return cast(BenchAnswer, self._call("POST", "/bench/", json=BenchRequest(results=results)))

    def lease(self, lease_id: int, token: str) -> LeaseAnswer:
        """A lease's work, as sent: the agent checks it with workers.contract.Lease.from_answer."""
        return cast(LeaseAnswer, self._call("GET", f"/leases/{lease_id}/", headers={"X-Lease-Token": token}))

    def report(
        self, lease_id: int, *, token: str, ok: bool, stats: dict[str, Any] | None = None, error: str = ""
    ) -> ReportAnswer:
        body = ReportRequest(token=token, ok=ok, stats=stats or {}, error=error[:4000])
        return cast(ReportAnswer, self._call("POST", f"/leases/{lease_id}/report/", json=body))

    def next(self, lease_id: int, token: str) -> NextAnswer:
        """This lease's render has ended or is about to, its result to be sent: the node's next lease, taken now."""
        return cast(NextAnswer, self._call("POST", f"/leases/{lease_id}/next/", json=LeaseTokenRequest(token=token)))

    def release(self, lease_id: int, token: str) -> ReleaseAnswer:
        body = LeaseTokenRequest(token=token)
        return cast(ReleaseAnswer, self._call("POST", f"/leases/{lease_id}/release/", json=body))


def download(url: str, dest: Path, *, sha256: str, max_bytes: int = 4 << 30) -> Path:
    """Fetch a signed URL to dest, checking size and SHA-256 (a mismatch is never used)."""
    tmp = dest.with_suffix(dest.suffix + ".part")
    digest = hashlib.sha256()
    size = 0
    with requests.get(url, stream=True, timeout=TIMEOUT) as response:
        if response.status_code != 200:
            raise ApiError(response.status_code, f"download failed: {response.text[:200]}")
        with open(tmp, "wb") as f:
            for chunk in response.iter_content(1 << 20):
                size += len(chunk)
                if size > max_bytes:
                    raise ApiError(413, "download larger than allowed")
                digest.update(chunk)
                f.write(chunk)
    if digest.hexdigest() != sha256:
        tmp.unlink(missing_ok=True)
        raise ApiError(422, f"scene checksum mismatch: expected {sha256[:12]}…, got {digest.hexdigest()[:12]}…")
    tmp.replace(dest)
    return dest


def upload(url: str, path: Path) -> None:
    with open(path, "rb") as f:
        response = requests.put(url, data=f, timeout=TIMEOUT, headers={"Content-Type": "application/octet-stream"})
    if response.status_code >= 300:
        raise ApiError(response.status_code, f"upload failed: {response.text[:200]}")
