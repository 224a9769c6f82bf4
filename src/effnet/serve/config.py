"""What `effnet serve` serves and how: the model source (`effnet.weights.ModelSource`) and the server's limits,
as frozen dataclasses."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields

# Which model to serve is the library's one ModelSource (re-exported here and from effnet.serve).
from effnet.weights.source import DEFAULT_MODEL, PREPROCESS_OVERRIDES, ModelSource

DEFAULT_TOP_K = 5
SERVE_RUNTIMES = ("auto", "onnxruntime", "pytorch")  # auto: onnxruntime when installed


@dataclass(frozen=True)
class ServeConfig:
    """Server settings: address, processes, dynamic batching and input limits."""

    source: ModelSource = field(default_factory=ModelSource)
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1  # processes, each with its own model and batcher
    threads: int | None = None  # torch / onnxruntime intra-op threads per worker (None: see intra_op_threads)
    runtime: str = "auto"  # what runs the forward pass of a PyTorch model: SERVE_RUNTIMES
    streams: int = 1  # forward passes that may run at once per worker, each on its own thread
    max_batch: int = 4  # 1 turns dynamic batching off: one image per forward pass
    max_wait_ms: float = 5.0  # how long the first image of a batch waits for company
    max_upload_bytes: int = 10 * 1024 * 1024  # whole request body
    max_pixels: int = 40_000_000  # per image, checked from the header before decoding (decompression bombs)
    max_images: int = 16  # per request
    top_k: int | None = None  # classes per image unless a request asks; None: 5, or every class of a smaller model
    drain_seconds: float = 10.0  # on SIGTERM: how long requests in flight may take before they are cut off
    cam_max_side: int = 640  # CAM overlays are drawn on the image shrunk to this longer side
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the API ("*" for any)
    token: str | None = field(default=None, repr=False)  # bearer token every non-health endpoint asks for

    def __post_init__(self) -> None:
        checks = {
            "port": 0 <= self.port <= 65535,
            "workers": self.workers >= 1,
            "threads": self.threads is None or self.threads >= 1,
            "runtime": self.runtime in SERVE_RUNTIMES,
            "streams": self.streams >= 1,
            "max_batch": self.max_batch >= 1,
            "max_wait_ms": math.isfinite(self.max_wait_ms) and self.max_wait_ms >= 0,
            "max_upload_bytes": self.max_upload_bytes >= 1024,
            "max_pixels": self.max_pixels >= 1,
            "max_images": self.max_images >= 1,
            "top_k": self.top_k is None or self.top_k >= 1,
            "drain_seconds": math.isfinite(self.drain_seconds) and self.drain_seconds >= 0,
            "cam_max_side": self.cam_max_side >= 32,
            "token": self.token is None or (bool(self.token) and self.token.isprintable() and " " not in self.token),
            "cors_origins": all(origin == "*" or "://" in origin for origin in self.cors_origins),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={'(hidden)' if name == 'token' else repr(getattr(self, name))}" for name in bad)
            raise ValueError(
                f"invalid serve setting(s): {values}; ports are 0-65535, sizes and counts positive and finite, "
                f"runtime one of {SERVE_RUNTIMES}, a token printable without spaces, origins like https://example.com"
            )

    @property
    def intra_op_threads(self) -> int:
        """Threads each worker's model uses unless set: the cores but one, shared out between the workers.

        The core left over decodes, resizes and answers requests while the model runs, and an operator whose
        threads wait for a busy core stalls the whole forward pass (on the 2-core test machine, loaded by other jobs,
        Lite0 ran
        ~15x slower with 2 threads than with 1)."""
        return self.threads or max(1, ((os.cpu_count() or 1) - 1) // self.workers)

    def to_json(self) -> str:
        """JSON form, used to hand the settings to worker processes."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        """Inverse of `to_json`."""
        data = json.loads(text)
        source = data.pop("source")
        source["preprocess"] = tuple((key, tuple(v) if isinstance(v, list) else v) for key, v in source["preprocess"])
        data["cors_origins"] = tuple(data.get("cors_origins", ()))
        known = {f.name for f in fields(cls)}
        return cls(source=ModelSource(**source), **{key: value for key, value in data.items() if key in known})


__all__ = ["DEFAULT_MODEL", "PREPROCESS_OVERRIDES", "SERVE_RUNTIMES", "ModelSource", "ServeConfig"]
