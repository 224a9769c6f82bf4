"""Starting a real `effnet serve` process on 127.0.0.1 for the server and browser tests (not a test module)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx

STARTUP_TIMEOUT_S = 240  # model load and imports on a loaded 2-core machine


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclasses.dataclass
class Server:
    """A running `effnet serve` process: its base URL, the process and its combined stdout / stderr."""

    url: str
    port: int
    process: subprocess.Popen
    log: IO[bytes]

    def log_text(self) -> str:
        """Everything the server printed so far."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")


@contextlib.contextmanager
def running_server(*args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """`effnet serve ARGS` in a subprocess on a free port (extra environment `env`); yields its base URL once it
    reports ready, and stops it afterwards."""
    with server_process(*args, env=env) as server:
        yield server.url


@contextlib.contextmanager
def server_process(*args: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """Like `running_server`, yielding the Server itself (for signals, the process and its log)."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    src = Path(__file__).resolve().parents[1] / "src"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))  # this checkout's effnet
    command = [sys.executable, "-m", "effnet.cli", "serve", "--port", str(port), "--log-level", "warning", *args]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(process, url, log)
            yield Server(url, port, process, log)
        finally:
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_up(process: subprocess.Popen, url: str, log) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"effnet serve exited with {process.returncode}:\n{log.read().decode()[-3000:]}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:  # loaded and warmed up
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    log.seek(0)
    raise RuntimeError(f"effnet serve did not answer within {STARTUP_TIMEOUT_S} s:\n{log.read().decode()[-3000:]}")
