"""`metav1.Status` failures shaped like the real apiserver's (kind Status, reason, details, code)."""

from __future__ import annotations

from typing import Any


class StatusError(Exception):
    """Raised anywhere in the stand-in; the app turns it into a Status body with `code` as the HTTP status."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(group: str, plural: str, name: str, **extra: Any) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name} if name else {}
    if group:
        details["group"] = group
    details["kind"] = plural
    details.update(extra)
    return details


def _qualified(group: str, plural: str) -> str:
    # The real messages name the resource as "plural.group" (e.g. leases.coordination.k8s.io).
    return f"{plural}.{group}" if group else plural


def not_found(group: str, plural: str, name: str) -> StatusError:
    return StatusError(404, "NotFound", f'{_qualified(group, plural)} "{name}" not found',
                       _details(group, plural, name))


def already_exists(group: str, plural: str, name: str) -> StatusError:
    return StatusError(409, "AlreadyExists", f'{_qualified(group, plural)} "{name}" already exists',
                       _details(group, plural, name))


def conflict(group: str, plural: str, name: str, why: str) -> StatusError:
    return StatusError(409, "Conflict", f'Operation cannot be fulfilled on {_qualified(group, plural)} "{name}": {why}',
                       _details(group, plural, name))


STALE = "the object has been modified; please apply your changes to the latest version and try again"


def invalid(kind: str, group: str, name: str, causes: list[tuple[str, str]]) -> StatusError:
    """422 with one cause per (field, message), like field.ErrorList → NewInvalid."""
    text = ", ".join(f"{field}: {message}" for field, message in causes)
    details = {"name": name, "kind": kind, "causes": [
        {"reason": "FieldValueInvalid", "message": message, "field": field} for field, message in causes]}
    if group:
        details["group"] = group
    label = f"{kind}.{group}" if group else kind
    return StatusError(422, "Invalid", f'{label} "{name}" is invalid: {text}', details)


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def forbidden(group: str, plural: str, name: str, why: str) -> StatusError:
    return StatusError(403, "Forbidden", f'{_qualified(group, plural)} "{name}" is forbidden: {why}',
                       _details(group, plural, name))


def expired(message: str) -> StatusError:
    # The real watch cache answers a too-old resourceVersion with 410 reason Expired ("Gone" on plain lists).
    return StatusError(410, "Expired", message)


def gone(message: str) -> StatusError:
    return StatusError(410, "Gone", message)


def unauthorized() -> StatusError:
    return StatusError(401, "Unauthorized", "Unauthorized")


def method_not_supported(group: str, plural: str, verb: str) -> StatusError:
    return StatusError(405, "MethodNotAllowed", f"{verb} is not supported on resources of kind \"{plural}\"",
                       _details(group, plural, ""))


def unsupported_media_type(content_type: str) -> StatusError:
    return StatusError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - accepted "
                       f"media types include: application/json-patch+json, application/merge-patch+json, "
                       f"application/apply-patch+yaml, application/strategic-merge-patch+json (got {content_type})")


def path_not_found() -> StatusError:
    return StatusError(404, "NotFound", "the server could not find the requested resource", {})


def timeout(message: str) -> StatusError:
    return StatusError(504, "Timeout", message)
