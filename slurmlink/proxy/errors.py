"""The proxy's own answers when it refuses or fails: `{"error": <CamelCase>, "reason": <sentence>}`."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from slurmlink.core.errors import SlurmlinkError


class Refusal(SlurmlinkError):
    """Raised below the HTTP layer; becomes `error_response(...)` with the same fields: `error` (also the
    `reason` of every slurmlink error) is the CamelCase word, `message` the sentence (the body's "reason")."""

    def __init__(self, status: int, error: str, reason: str, *, retry_after: int | None = None) -> None:
        super().__init__(reason, error, transient=status >= 500)
        self.status, self.error, self.retry_after = status, error, retry_after

    def response(self) -> JSONResponse:
        return error_response(self.status, self.error, self.message, retry_after=self.retry_after)


def error_response(status: int, error: str, reason: str, *, retry_after: int | None = None,
                   rule: str | None = None, close: bool = False) -> JSONResponse:
    """`close`: end the connection after the answer (a request whose body was not read whole)."""
    body: dict[str, Any] = {"error": error, "reason": reason}
    if rule is not None:
        body["rule"] = rule
    extra: dict[str, str] = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    if status == 401:
        extra["WWW-Authenticate"] = 'Bearer realm="slurmlink"'
    if close:
        extra["Connection"] = "close"
    return JSONResponse(body, status_code=status, headers=extra or None)
