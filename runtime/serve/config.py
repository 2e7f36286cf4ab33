"""The server's settings: one frozen dataclass, filled from the command line or by the caller."""

from __future__ import annotations

from dataclasses import dataclass, field

from embedrt.config import positive_int

# Requests share one inference queue; these bound what one client can make the server hold.
DEFAULT_MAX_INPUTS = 2048  # per request, as OpenAI's embeddings API
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_QUEUE = 8192  # inputs waiting for the model, all requests together
DEFAULT_MAX_QUEUE_BYTES = 64 * 1024 * 1024  # characters of queued texts plus bodies being read
DEFAULT_MAX_BATCH_TOKENS = 4096  # gathered per model cycle (the Encoder splits them into its own batches)
DEFAULT_MAX_WAIT_MS = 2.0
DEFAULT_BODY_TIMEOUT_S = 10.0
DEFAULT_HEADER_TIMEOUT_S = 10.0  # a connection that sends no complete request head in this time is closed
DEFAULT_WRITE_TIMEOUT_S = 10.0  # a client that reads nothing of a waiting answer for this long is dropped
DEFAULT_MAX_CONNECTIONS = 1024  # past it, uvicorn answers 503 (each connection holds a file descriptor)


@dataclass(frozen=True)
class ServeConfig:
    """Limits and identity of one server process.

    Attributes:
        model_name: the name /v1/embeddings echoes; when ``require_model_name`` is set, another name is a 404.
        api_key: a bearer key every route but /health needs; None serves without authentication.
        max_inputs: texts per request.
        max_request_bytes: body size, enforced while reading.
        max_queue: inputs queued for the model; past it a request gets 429 at once.
        max_queue_bytes: characters of queued texts plus bytes of bodies being read; past it, 429.
        max_batch_tokens: tokens (estimated before tokenizing) gathered into one model cycle.
        max_wait_ms: how long a short cycle waits for more work, only when requests are already queueing.
        body_timeout_s: a body that does not arrive in full within this time gets 408.

    """

    model_name: str
    api_key: str | None = field(default=None, repr=False)
    require_model_name: bool = False
    max_inputs: int = DEFAULT_MAX_INPUTS
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_queue: int = DEFAULT_MAX_QUEUE
    max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S

    def __post_init__(self) -> None:
        """Refuse limits that would make the server refuse everything or nothing."""
        for name in ("max_inputs", "max_request_bytes", "max_queue", "max_queue_bytes", "max_batch_tokens"):
            positive_int(name, getattr(self, name))
        if self.max_wait_ms < 0 or self.body_timeout_s <= 0:
            raise ValueError(
                f"max_wait_ms must be >= 0 and body_timeout_s > 0, got {self.max_wait_ms}, {self.body_timeout_s}"
            )
        if self.max_queue < self.max_inputs:
            raise ValueError(
                f"max_queue ({self.max_queue}) must hold at least one full request (max_inputs {self.max_inputs})"
            )
        if self.max_queue_bytes < self.max_request_bytes:
            raise ValueError(
                f"max_queue_bytes ({self.max_queue_bytes}) must hold at least one full request body "
                f"(max_request_bytes {self.max_request_bytes})"
            )
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key must not be empty; omit it to serve without authentication")

    def limits(self) -> dict[str, float | int]:
        """The limits, as /info reports them."""
        return {
            "max_inputs": self.max_inputs,
            "max_request_bytes": self.max_request_bytes,
            "max_queue": self.max_queue,
            "max_queue_bytes": self.max_queue_bytes,
            "max_batch_tokens": self.max_batch_tokens,
            "max_wait_ms": self.max_wait_ms,
        }
