"""The HTTP/1.1 connection the server runs on: uvicorn's h11 protocol, answering what h11 refuses with the status
it names (431 for headers over the limit) and closing so that the client reads the answer instead of a reset."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from effnet.serve.limits import HEADERS_TOO_LARGE, MAX_HEADER_BYTES

# After a refusal, how long the unread rest of the request is read and dropped: closing a socket with unread
# bytes in it sends a reset, which loses the answer on the client's side.
LINGER_S = 2.0

_REASONS = {431: HEADERS_TOO_LARGE, 400: "invalid HTTP request ({error})"}


class _Connection(h11.Connection):
    """h11's connection, remembering the last protocol error it raised so that the answer can carry its status."""

    error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        """h11's next event; a protocol error is remembered before it propagates."""
        try:
            return super().next_event()
        except h11.RemoteProtocolError as err:
            self.error = err
            raise


class RefusingH11Protocol(H11Protocol):
    """uvicorn's h11 protocol whose refusals of malformed requests say what was wrong with h11's status hint
    (431 Request Header Fields Too Large, 400, 501) and let the client read them before the connection closes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = _Connection(h11.SERVER, MAX_HEADER_BYTES)  # nothing has been received yet
        self.discarding = False

    def data_received(self, data: bytes) -> None:
        """Feed h11, or drop the bytes of a request already refused."""
        if not self.discarding:
            super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        """Answer h11's refusal with its status and a JSON reason, then close once the client stops sending."""
        error = self.conn.error
        status = error.error_status_hint if error is not None else 400
        reason = _REASONS.get(status, _REASONS[400]).format(error=error or msg)
        body = json.dumps({"detail": reason}).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        for event in (h11.Response(status_code=status, headers=headers), h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.discarding = True
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the answer is flushed first; the client sees it, then end of stream
        asyncio.get_running_loop().call_later(LINGER_S, self.transport.close)
