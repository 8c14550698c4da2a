"""``GET /metrics``: the server's counters in Prometheus' text format (prometheus-client,
one registry per app, so several servers in one process count apart).

- ``vision_tasks_requests_total{model, status}``: predict requests answered, by HTTP status;
- ``vision_tasks_errors_total{kind}``: errors by kind (``not_image``, ``bad_image``,
  ``too_many_pixels``, ``body_too_large``, ``unknown_model``, ``bad_option``,
  ``unauthorized``, ``queue_full``, ``timeout``, ``read_timeout``, ``internal``...);
- ``vision_tasks_images_total{model}``: images predicted;
- ``vision_tasks_queue_depth{model}``: images admitted and waiting for a batch;
- ``vision_tasks_batch_size{model}``: images per inference call (histogram);
- ``vision_tasks_request_seconds{model}``: predict latency from the whole body read to the
  answer, in seconds (histogram).
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """The counters of one server."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("vision_tasks_requests", "predict requests answered",
                                ["model", "status"], registry=r)
        self.errors = Counter("vision_tasks_errors", "errors answered, by kind", ["kind"],
                              registry=r)
        self.images = Counter("vision_tasks_images", "images predicted", ["model"], registry=r)
        self.queue_depth = Gauge("vision_tasks_queue_depth", "images waiting for a batch",
                                 ["model"], registry=r)
        self.batch_size = Histogram("vision_tasks_batch_size", "images per inference call",
                                    ["model"], buckets=BATCH_BUCKETS, registry=r)
        self.latency = Histogram("vision_tasks_request_seconds",
                                 "predict latency, body read to answer (s)", ["model"],
                                 buckets=LATENCY_BUCKETS, registry=r)

    def batch(self, model: str, size: int) -> None:
        self.batch_size.labels(model).observe(size)

    def error(self, kind: str) -> None:
        self.errors.labels(kind).inc()

    def text(self) -> bytes:
        """The exposition text of every metric."""
        return generate_latest(self.registry)
