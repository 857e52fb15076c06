"""Prometheus metrics of one server (its own registry, so two apps in one process never
share counters): requests and failures by reason, queue size, where the time goes
(queue, tokenize, inference), batch size and padded batch tokens, input tokens."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_COUNTS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_TOKENS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536)


class ServeMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("onnxport_requests", "HTTP requests answered, by route and status",
                                ["route", "status"], registry=r)
        self.failures = Counter("onnxport_request_failures", "Requests answered with an error, by reason",
                                ["route", "reason"], registry=r)
        self.queue_size = Gauge("onnxport_queue_size", "Items waiting for inference", ["model"], registry=r)
        self.dropped_items = Counter("onnxport_dropped_items", "Queued items dropped because their client "
                                     "disconnected or their request failed", ["model"], registry=r)
        self.queue_seconds = Histogram("onnxport_queue_seconds", "Time items waited before inference",
                                       ["model"], buckets=_SECONDS, registry=r)
        self.tokenize_seconds = Histogram("onnxport_tokenize_seconds", "Time to tokenize one request",
                                          ["model"], buckets=_SECONDS, registry=r)
        self.inference_seconds = Histogram("onnxport_inference_seconds", "Time of one model run",
                                           ["model"], buckets=_SECONDS, registry=r)
        self.batch_size = Histogram("onnxport_batch_size", "Items per model run", ["model"],
                                    buckets=_COUNTS, registry=r)
        self.batch_tokens = Histogram("onnxport_batch_tokens", "Padded tokens per model run (longest × items)",
                                      ["model"], buckets=_TOKENS, registry=r)
        self.input_tokens = Counter("onnxport_input_tokens", "Tokens of the inputs served", ["model"], registry=r)

    def observe_batch(self, model: str, enqueued: list[float], started: float, finished: float, size: int,
                      longest: int) -> None:
        for moment in enqueued:
            self.queue_seconds.labels(model).observe(started - moment)
        self.inference_seconds.labels(model).observe(finished - started)
        self.batch_size.labels(model).observe(size)
        self.batch_tokens.labels(model).observe(size * longest)

    def observe_tokenize(self, model: str, started: float, tokens: int) -> None:
        self.tokenize_seconds.labels(model).observe(time.perf_counter() - started)
        self.input_tokens.labels(model).inc(tokens)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
