"""Starting the server: one process with the model in it, or several uvicorn worker processes."""

from __future__ import annotations

import os
import shutil
import socket
from typing import Any

import torch
import uvicorn

from effnet.serve.app import CONFIG_ENV, create_app
from effnet.serve.classifier import Classifier, load_classifier
from effnet.serve.config import ServeConfig
from effnet.serve.http11 import RefusingH11Protocol
from effnet.serve.metrics import MULTIPROCESS_ENV
from effnet.serve.uploads import return_large_images_to_the_system
from effnet.serve.workers import PARENT_ENV, metrics_folder

WORKER_HEALTHCHECK_S = 120


def check_address(host: str, port: int) -> None:
    """ValueError with the fix when nothing could listen on host:port (in use, no such address, no permission)."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
            probe.bind((host, port))
    except OSError as err:
        reason = err.strerror or str(err)
        raise ValueError(f"cannot listen on {host}:{port}: {reason}; pick another --port or --host") from err


def serve(config: ServeConfig, log_level: str = "info") -> None:
    """Serve until interrupted. Loading the model first means a bad --weights fails before the port opens."""
    check_address(config.host, config.port)  # before the model load, so a taken port fails at once
    threads = config.intra_op_threads
    if config.workers == 1:
        classifier = load_classifier(config.source, threads, config.runtime, config.streams)
        check_against_model(config, classifier)
        torch.set_num_threads(threads)
        return_large_images_to_the_system()
        app = create_app(config, classifier)
        uvicorn.run(app, host=config.host, port=config.port, log_level=log_level, **_server_options(config))
        return
    # Each worker builds its own app from the settings in the environment; metrics files are shared so that
    # /metrics on any worker reports all of them.
    check_against_model(config, load_classifier(config.source, 1, config.runtime))  # fail now, in one line
    metrics_dir = metrics_folder()
    os.environ[CONFIG_ENV] = config.to_json()
    os.environ[MULTIPROCESS_ENV] = metrics_dir
    os.environ[PARENT_ENV] = str(os.getpid())  # the workers exit when this process dies, however it dies
    try:
        uvicorn.run(
            "effnet.serve.app:app_from_environment",
            factory=True,
            host=config.host,
            port=config.port,
            workers=config.workers,
            log_level=log_level,
            # uvicorn kills a worker that does not answer its health ping within this time; starting Python and
            # torch in a fresh process takes longer than the 5 s default on a busy machine.
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
            **_server_options(config),
        )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def check_against_model(config: ServeConfig, classifier: Classifier) -> None:
    """ValueError for settings the loaded model cannot honour (checked before the port opens)."""
    if config.top_k is not None and config.top_k > classifier.num_classes:
        raise ValueError(
            f"--top-k {config.top_k} is more than the {classifier.num_classes} classes of {classifier.name}; "
            f"pass --top-k {classifier.num_classes} or less"
        )


def _server_options(config: ServeConfig) -> dict[str, Any]:
    # h11 everywhere (httptools too, when installed, would answer long headers with a reset, not 431); the drain
    # deadline bounds a shutdown however slowly a client sends (uvicorn waits for every connection otherwise).
    return {"http": RefusingH11Protocol, "timeout_graceful_shutdown": config.drain_seconds}
