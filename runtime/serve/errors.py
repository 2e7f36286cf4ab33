"""The one error type of the server: a status code and the OpenAI error body."""

from __future__ import annotations


class ApiError(Exception):
    """An answer to a request that cannot be served, as OpenAI shapes it: ``{"error": {...}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        error_type: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.error_type = error_type
        self.headers = headers or {}

    def body(self) -> dict[str, dict[str, str | None]]:
        """The JSON body (never the input texts, never a stack trace)."""
        return {"error": {"message": self.message, "type": self.error_type, "param": self.param, "code": self.code}}
