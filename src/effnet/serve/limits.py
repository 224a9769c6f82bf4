"""ASGI middleware that caps request bodies and records every request in the metrics, whatever the endpoint does."""

from __future__ import annotations

import json
import time
from typing import Any

from effnet.serve.metrics import ServeMetrics

ENDPOINTS = ("/", "/health", "/model", "/metrics", "/predict", "/cam", "/docs", "/openapi.json", "/v2")

Scope = dict[str, Any]
Message = dict[str, Any]


def endpoint_label(path: str) -> str:
    """The metrics label of a path: itself for fixed endpoints, a template for the v2 paths naming the model, and
    "other" for the rest (labels must stay few, whatever clients request)."""
    if path in ENDPOINTS or path in ("/v2/health/live", "/v2/health/ready"):
        return path
    if path.startswith("/v2/models/"):
        tail = path.rsplit("/", 1)[-1]
        return f"/v2/models/{{name}}/{tail}" if tail in ("infer", "ready") else "/v2/models/{name}"
    return "other"


class BodyTooLargeError(Exception):
    """The request body passed the server's limit while it was being received."""


async def _send_error(send: Any, status: int, message: str) -> None:
    body = json.dumps({"detail": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class LimitsAndMetrics:
    """Refuses bodies over `max_body_bytes` with 413 (from Content-Length up front, or while streaming) and counts
    each request's status and latency per endpoint."""

    def __init__(self, app: Any, max_body_bytes: int, metrics: ServeMetrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = endpoint_label(scope.get("path", ""))
        start, status = time.perf_counter(), [0]  # 0: no response started yet
        too_big = f"request body over the limit of {self.max_body_bytes:,} bytes; send smaller or fewer images"

        async def send_recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        received = 0

        async def receive_counting() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLargeError(too_big)
            return message

        try:
            declared = dict(scope.get("headers", [])).get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                await _send_error(send_recording, 413, too_big)
            else:
                await self.app(scope, receive_counting, send_recording)
        except BodyTooLargeError:
            if status[0] == 0:
                await _send_error(send_recording, 413, too_big)
        finally:
            # A request that died before answering counts as a server error.
            self.metrics.observe_request(endpoint, status[0] or 500, time.perf_counter() - start)
