"""Access control: an optional bearer token on every endpoint but the health probes, the page and the docs."""

from __future__ import annotations

import hmac
import json
from typing import Any

TOKEN_ENV = "EFFNET_SERVE_TOKEN"
# Probes must answer without credentials (Kubernetes, load balancers); the page and the docs hold no data, and the
# page and Swagger UI send the token themselves on the calls they make.
OPEN_PATHS = frozenset(
    {"/", "/health", "/v2/health/live", "/v2/health/ready", "/docs", "/openapi.json", "/favicon.ico"}
)
OPEN_PREFIXES = ("/docs/",)


class BearerToken:
    """ASGI middleware: 401 with WWW-Authenticate unless `Authorization: Bearer <token>` matches (compared in
    constant time, so the answer's timing says nothing about how much of a guess was right)."""

    def __init__(self, app: Any, token: str) -> None:
        if not token:
            raise ValueError("the bearer token is empty; give a non-empty --token or leave it out")
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self._is_open(scope):
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers", [])).get(b"authorization")
        if given is not None and hmac.compare_digest(given, self.expected):
            await self.app(scope, receive, send)
            return
        if given is None:
            message, challenge = (
                "this server needs a bearer token: send Authorization: Bearer <token>",
                'Bearer realm="effnet"',
            )
        else:
            message, challenge = "the bearer token is wrong", 'Bearer realm="effnet", error="invalid_token"'
        body = json.dumps({"detail": message}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", challenge.encode()),
        ]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _is_open(scope: dict[str, Any]) -> bool:
        path = scope.get("path", "")
        # A CORS preflight carries no credentials by design; the CORS middleware outside answers it.
        return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES) or scope.get("method") == "OPTIONS"
