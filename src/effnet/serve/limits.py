"""ASGI middleware that caps request bodies and records every request in the metrics, whatever the endpoint does."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from starlette.requests import ClientDisconnect

from effnet.serve.metrics import CLIENT_CLOSED, ServeMetrics

ENDPOINTS = ("/", "/health", "/model", "/metrics", "/predict", "/cam", "/docs", "/openapi.json", "/v2")

# Request line and headers together. 16 KiB is h11's and nginx's default: cookies and bearer tokens fit many times
# over. Checked twice: by the connection while the headers arrive (nothing beyond it is buffered; effnet.serve.
# http11) and here on what arrived in one read, which h11 does not limit.
MAX_HEADER_BYTES = 16 * 1024
HEADERS_TOO_LARGE = (
    f"request headers over the server's limit of {MAX_HEADER_BYTES:,} bytes; send fewer or shorter headers"
)

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


def _header_bytes(scope: Scope) -> int:
    """The size of the request line and headers as sent (give or take the method and version)."""
    target = len(scope.get("raw_path") or scope.get("path", "").encode()) + len(scope.get("query_string", b""))
    return target + sum(len(name) + len(value) + 4 for name, value in scope.get("headers", []))


class LimitsAndMetrics:
    """Refuses headers over MAX_HEADER_BYTES with 431 and bodies over `max_body_bytes` with 413 (from
    Content-Length up front, or while streaming), and counts each request's status and latency per endpoint."""

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
            if _header_bytes(scope) > MAX_HEADER_BYTES:
                await _send_error(send_recording, 431, HEADERS_TOO_LARGE)
            elif declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                await _send_error(send_recording, 413, too_big)
            else:
                await self.app(scope, receive_counting, send_recording)
        except BodyTooLargeError:
            if status[0] == 0:
                await _send_error(send_recording, 413, too_big)
        except ClientDisconnect:
            # The client hung up mid-body: nobody is left to answer and nothing went wrong here, so no traceback
            # in the log and no 500; it is counted under nginx's "client closed request" code.
            status[0] = status[0] or CLIENT_CLOSED
        except asyncio.CancelledError:
            # The drain deadline of a shutdown passed with this request still in flight (a client trickling its
            # body, say): answer 503 rather than let the server log the cancellation as a crash and answer 500.
            if status[0] != 0:
                raise
            await _send_error(send_recording, 503, "the server is shutting down; retry on another replica or later")
        finally:
            # A request that died before answering counts as a server error.
            self.metrics.observe_request(endpoint, status[0] or 500, time.perf_counter() - start)
