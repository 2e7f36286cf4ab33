"""Prometheus metrics of one app, in a registry of its own (two apps in one process do not collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
_TOKEN_BUCKETS = (16, 64, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536)


class Metrics:
    """Requests by route and status, latency, model cycles, queue depth, inputs (texts or pairs) and tokens run."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "embedrt_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "embedrt_request_latency_seconds",
            "Request latency by route",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "embedrt_batch_size", "Texts (or text pairs) per model cycle", buckets=_SIZE_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram(
            "embedrt_batch_tokens", "Tokens per model cycle", buckets=_TOKEN_BUCKETS, registry=r
        )
        self.queue = Gauge("embedrt_queue_depth", "Inputs (texts or text pairs) waiting for the model", registry=r)
        self.inputs = Counter("embedrt_inputs", "Texts embedded or text pairs scored", registry=r)
        self.tokens = Counter("embedrt_tokens", "Tokens run through the model", registry=r)

    def observe_cycle(self, inputs: int, tokens: int) -> None:
        """Record one model cycle (called from the inference thread; prometheus_client is thread-safe)."""
        self.batch_size.observe(inputs)
        self.batch_tokens.observe(tokens)
        self.inputs.inc(inputs)
        self.tokens.inc(tokens)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        """Record one answered request."""
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
