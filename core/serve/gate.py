"""The outermost layer of the app (plain ASGI): the API key check and the per-request metrics, for
every path, the ones FastAPI does not route (404s) included."""

from __future__ import annotations

import json
import time
from typing import Any

from tl.serve.auth import OPEN_PATHS, authorized
from tl.serve.metrics import Metrics


class Gate:
    """Refuses requests without ``Authorization: Bearer <key>`` (when a key is set) with 401 and
    counts every request by endpoint and status."""

    def __init__(self, app: Any, *, key: str | None, metrics: Metrics):
        self.app = app
        self.key = key
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what an exception that escapes the app becomes

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            path = scope["path"]
            if self.key is not None and path not in OPEN_PATHS:
                header = dict(scope["headers"]).get(b"authorization")
                if not authorized(header, self.key):
                    why = "wrong API key" if header else "missing API key"
                    await _unauthorized(send_status, f"{why}: send the header Authorization: Bearer <key>")
                    return
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe_request(scope["path"], status, time.perf_counter() - start)


async def _unauthorized(send: Any, message: str) -> None:
    body = json.dumps({"error": {"code": "unauthorized", "message": message}}, separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": 401, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", b'Bearer realm="tl"')]})
    await send({"type": "http.response.body", "body": body})
