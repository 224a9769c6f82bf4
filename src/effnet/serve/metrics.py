"""Prometheus metrics of one server: requests, errors, latency, batch sizes; per app, or summed over workers."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
CLIENT_CLOSED = 499  # nginx's code for a client that hung up before the answer: counted, but not as an error


class ServeMetrics:
    """The server's counters and histograms in their own registry (no process-wide state).

    With several worker processes, prometheus_client's multiprocess mode (its directory set in the environment
    before the workers start) writes every value to shared files, and `render` sums them over the workers.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "effnet_serve_requests",
            "HTTP requests by endpoint and status code",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "effnet_serve_errors",
            "Requests answered with a 4xx or 5xx status",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "effnet_serve_request_latency_seconds",
            "Time from request to response",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "effnet_serve_batch_size",
            "Images per forward pass (dynamic batching)",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.inference = Histogram(
            "effnet_serve_inference_seconds",
            "Time of one forward pass",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.images = Counter("effnet_serve_images", "Images classified", registry=self.registry)

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        """Count one request (CLIENT_CLOSED: the client left before the answer)."""
        self.requests.labels(endpoint, str(status)).inc()
        if status >= 400 and status != CLIENT_CLOSED:
            self.errors.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def observe_batch(self, size: int, seconds: float) -> None:
        """Record one forward pass."""
        self.batch_size.observe(size)
        self.inference.observe(seconds)
        self.images.inc(size)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (all workers' when in multiprocess mode)."""
        if os.environ.get(MULTIPROCESS_ENV):
            registry = CollectorRegistry()
            prometheus_multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
