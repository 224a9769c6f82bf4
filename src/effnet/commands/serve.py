"""`effnet serve`: put any model, weight file, checkpoint or ONNX graph behind an HTTP endpoint."""

from __future__ import annotations

import argparse
import os

from effnet._util.validation import finite_number, thread_count, whole_number
from effnet.commands._flags import TOP_K, add_model_flags, add_preprocess_flags

NAME = "serve"
HELP = (
    "HTTP service: /predict (files or base64 JSON), KServe v2 /v2/..., /cam, /health, /model, /metrics, /docs and a "
    "web page at /"
)
TOKEN_ENV = "EFFNET_SERVE_TOKEN"  # the same name as effnet.serve.security.TOKEN_ENV, without importing FastAPI

# Every numeric flag is finite and in range when parsed, before the model loads or the port opens: a value the
# server cannot use (NaN, inf, 0, a count no machine has) is a one-line error naming the flag, never a server that
# starts and then fails or hangs on every request. --top-k is checked against the model's classes once it loads.
_PORT = whole_number(0, 65535)  # 0: any free port
_WORKERS = whole_number(1, 256)
_STREAMS = whole_number(1, 64)
_MAX_BATCH = whole_number(1, 1024)
_MAX_WAIT_MS = finite_number(0.0, 10_000.0)
_UPLOAD_MB = finite_number(0.001, 4096.0)  # 1 kB (the smallest useful body) to 4 GB
_MAX_PIXELS = whole_number(1, 178_956_970)  # PIL refuses bigger images as decompression bombs whatever this says
_MAX_IMAGES = whole_number(1, 1024)
_DRAIN_S = finite_number(0.0, 3600.0)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the serve subcommand."""
    sv = subparsers.add_parser(
        NAME,
        help=HELP,
        description="Serve a model over HTTP with dynamic batching. Needs: pip install 'effnet[serve]'.",
    )
    add_model_flags(sv, classes=True)
    add_preprocess_flags(sv)
    _add_server_flags(sv)
    sv.set_defaults(func=run)


def _add_server_flags(sv: argparse.ArgumentParser) -> None:
    """Where it listens, how it runs the model and batches, its limits, who may call it and how it stops."""
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 = all)")
    sv.add_argument("--port", type=_PORT, default=8000, help="TCP port (default 8000)")
    sv.add_argument("--workers", type=_WORKERS, default=1, help="worker processes, each with its own model (default 1)")
    sv.add_argument("--threads", type=thread_count, help="intra-op threads per worker (default: (cores - 1) / workers)")
    sv.add_argument(
        "--runtime",
        choices=("auto", "onnxruntime", "pytorch"),
        default="auto",
        help="what runs a PyTorch model's forward pass: onnxruntime (exported at startup; CAM stays on PyTorch) "
        "or pytorch (default auto: onnxruntime when installed)",
    )
    sv.add_argument(
        "--streams",
        type=_STREAMS,
        default=1,
        help="forward passes that may run at once per worker, each on its own thread with --threads intra-op "
        "threads (default 1)",
    )
    sv.add_argument(
        "--max-batch", type=_MAX_BATCH, default=4, help="images per forward pass; 1 = no batching (default 4)"
    )
    sv.add_argument("--max-wait-ms", type=_MAX_WAIT_MS, default=5.0, help="how long a batch waits to fill (default 5)")
    sv.add_argument("--max-upload-mb", type=_UPLOAD_MB, default=10.0, help="request body limit in MB (default 10)")
    sv.add_argument("--max-pixels", type=_MAX_PIXELS, default=40_000_000, help="pixels per image (default 40M)")
    sv.add_argument("--max-images", type=_MAX_IMAGES, default=16, help="images per request (default 16)")
    sv.add_argument(
        "--top-k", type=TOP_K, help="classes returned per image (default 5, or every class of a smaller model)"
    )
    sv.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a browser origin allowed to call the API, e.g. https://app.example.com (repeatable; * for any)",
    )
    sv.add_argument(
        "--token",
        help=f"bearer token every endpoint but the health probes, page and docs asks for (default: ${TOKEN_ENV}, "
        "which keeps it out of the process list; unset: no token)",
    )
    sv.add_argument(
        "--drain-seconds",
        type=_DRAIN_S,
        default=10.0,
        help="on SIGTERM / Ctrl-C, how long requests in flight may take to finish before they are cut off (default 10)",
    )
    sv.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))


def run(args: argparse.Namespace) -> int:
    """Serve until stopped (SIGTERM or Ctrl-C drain the requests in flight)."""
    from effnet.commands._source import source_from_flags
    from effnet.serve.config import ServeConfig

    source = source_from_flags(args, args.model, args.weights)
    config = ServeConfig(
        source=source,
        host=args.host,
        port=args.port,
        workers=args.workers,
        threads=args.threads,
        runtime=args.runtime,
        streams=args.streams,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_pixels=args.max_pixels,
        max_images=args.max_images,
        top_k=args.top_k,
        drain_seconds=args.drain_seconds,
        cors_origins=tuple(args.cors_origin),
        token=args.token if args.token is not None else os.environ.get(TOKEN_ENV) or None,
    )
    try:
        from effnet.serve.runner import serve
    except ImportError as err:
        raise ValueError(
            f"effnet serve needs FastAPI and uvicorn ({err.name} is missing); run: pip install 'effnet[serve]'"
        ) from err
    serve(config, log_level=args.log_level)
    return 0
