"""The marketplace's REST API as the add-on uses it: standard library only (urllib), safe to call off the main thread.

Errors come back as ApiError carrying the server's own words: a problem-details `detail` when the server sends
one, else its `error`, else DRF's field messages.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

API_PREFIX = "/api/v1/"
CHUNK = 1 << 20


class ApiError(Exception):
    """A refusal or failure, in the server's words (`status` 0: the server could not be reached)."""

    def __init__(self, message: str, *, status: int = 0, body: Any = None) -> None:
        super().__init__(message)
        self.message, self.status, self.body = message, status, body


def server_words(body: Any, status: int) -> str:
    """What the server said: problem details' `detail`, else `error`, else DRF's {field: [messages]}."""
    if isinstance(body, dict):
        for key in ("detail", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
        parts = []
        for field, value in body.items():
            messages = value if isinstance(value, list) else [value]
            parts.append(f"{field}: {' '.join(str(m) for m in messages)}")
        if parts:
            return "; ".join(parts)
    if isinstance(body, list) and body:
        return "; ".join(str(m) for m in body)
    if isinstance(body, str) and body.strip():
        return f"HTTP {status}: {body.strip()[:300]}"
    return f"HTTP {status}"


class Client:
    def __init__(self, server: str, token: str, *, timeout: float = 120) -> None:
        server = server.strip().rstrip("/")
        if not server.startswith(("http://", "https://")):
            raise ApiError("set the server URL (http:// or https://) in the add-on preferences")
        if not token.strip():
            raise ApiError("set your API token in the add-on preferences (make one on the website: /accounts/tokens/)")
        self.server, self.token, self.timeout = server, token.strip(), timeout

    def url(self, path: str) -> str:
        return self.server + API_PREFIX + path.lstrip("/")

    def _open(self, method: str, path: str, *, data: Any = None, headers: dict[str, str] | None = None):
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json", **(headers or {})}
        request = urllib.request.Request(self.url(path), data=data, method=method, headers=headers)
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
            raise ApiError(server_words(body, exc.code), status=exc.code, body=body) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(f"cannot reach the server at {self.server}: {reason}") from None

    def call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        with self._open(method, path, data=data, headers=headers) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    # Scenes ---------------------------------------------------------------------------------------------------
    def missing(self, digests: Iterable[str]) -> list[str]:
        return self.call("POST", "scenes/files/missing/", {"digests": list(digests)})["missing"]

    def put_file(self, sha256: str, path: Path) -> int:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
            with self._open("PUT", f"scenes/files/{sha256}/", data=f, headers=headers) as response:
                response.read()
        return size

    def bundle(self, files: list[dict[str, str]], *, name: str) -> dict[str, Any]:
        return self.call("POST", "scenes/bundle/", {"files": files, "name": name})

    def scene(self, scene_id: int) -> dict[str, Any]:
        return self.call("GET", f"scenes/{scene_id}/")

    # Jobs -----------------------------------------------------------------------------------------------------
    def quote(self, **fields: Any) -> dict[str, Any]:
        return self.call("POST", "jobs/", fields)

    def accept(self, job_id: int) -> dict[str, Any]:
        return self.call("POST", f"jobs/{job_id}/accept/")

    def job(self, job_id: int) -> dict[str, Any]:
        return self.call("GET", f"jobs/{job_id}/")

    def cancel(self, job_id: int) -> dict[str, Any]:
        return self.call("POST", f"jobs/{job_id}/cancel/")

    def download(self, job_id: int, dest: Path, *, progress: Callable[[int], None] | None = None) -> int:
        """Stream the settled frames' zip into `dest`; the number of bytes."""
        total = 0
        with self._open("GET", f"jobs/{job_id}/download/", headers={"Accept": "application/zip"}) as response:
            with open(dest, "wb") as out:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    total += len(chunk)
                    if progress:
                        progress(total)
        return total
