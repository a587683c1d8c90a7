"""Prometheus metrics of one app, on a registry of its own (no process-wide state). With several
workers, prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by ``tl serve``)
shares the values through files and ``/metrics`` collects every worker's."""

from __future__ import annotations

import os

#: Endpoints with their own label value; anything else (404s, probes for paths) counts as "other",
#: so a scanner cannot blow up the label set.
ENDPOINTS = frozenset({"/v1/predict", "/v1/model", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs",
                       "/docs/oauth2-redirect", "/redoc"})
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """The server's metrics: requests by endpoint and status, request latency, batch sizes, texts,
    inference time per batch and the queue depth (texts waiting for the model)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = multiprocess_dir() is not None
        # multiprocess mode: values live in files; /metrics builds a fresh registry to collect them
        self.registry = None if self.multiprocess else CollectorRegistry()
        reg = {"registry": self.registry}
        self.requests = Counter("tl_serve_requests", "HTTP requests by endpoint and status code",
                                ["endpoint", "status"], **reg)
        self.latency = Histogram("tl_serve_request_duration_seconds", "HTTP request latency by endpoint",
                                 ["endpoint"], **reg)
        self.batch_size = Histogram("tl_serve_batch_size", "Texts per model call (micro-batch size)",
                                    buckets=BATCH_BUCKETS, **reg)
        self.inference = Histogram("tl_serve_inference_seconds", "Model time per micro-batch", **reg)
        self.texts = Counter("tl_serve_texts", "Texts predicted", **reg)
        self.queue_depth = Gauge("tl_serve_queue_depth", "Texts waiting for the model",
                                 multiprocess_mode="livesum", **reg)

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        endpoint = path if path in ENDPOINTS else "other"
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.texts.inc(size)
        self.inference.observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        """The text format of every metric (every worker's, in multiprocess mode) and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        registry = self.registry
        if registry is None:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """This worker is gone: its live gauges stop counting."""
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())
