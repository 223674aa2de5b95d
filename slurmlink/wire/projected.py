"""The body of `POST /slurmlink/v1/projected` (wire.names.PROJECTED_ROUTE): new content for the ServiceAccount
token files of a running pod's projected volumes (slurmlink's own route; interLink's wire has no way to refresh a
file of a running job). The vk writes it, the API reads it.

    {"pod_uid": "...", "files": [{"volume": "<volume name>", "path": "<path in the volume>", "data": "<base64>"}]}
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from slurmlink.core.kube import DNS_LABEL
from slurmlink.wire.gojson import WireError

MAX_FILE_BYTES = 64 * 1024  # a JWT is a few KiB; anything far larger is not a token
MAX_FILES = 32


@dataclass(frozen=True)
class ProjectedWrite:
    pod_uid: str
    files: list[tuple[str, str, bytes]]  # (volume, path in the volume, content)

    def to_wire(self) -> dict[str, Any]:
        return {"pod_uid": self.pod_uid, "files": [
            {"volume": volume, "path": path, "data": base64.b64encode(content).decode()}
            for volume, path, content in self.files]}


def _path_ok(path: str) -> bool:
    """Relative, normalised, no `..`, nothing hidden (our temporary files start with a dot)."""
    parts = path.split("/")
    return bool(path) and "\0" not in path and not path.startswith("/") and \
        all(p not in ("", ".", "..") and not p.startswith(".") for p in parts)


def parse_body(body: Any) -> ProjectedWrite:
    """The request as the API reads it; WireError (400) for anything malformed."""
    if not isinstance(body, dict):
        raise WireError("body: a JSON object is required")
    uid, files = body.get("pod_uid"), body.get("files")
    if not isinstance(uid, str) or not uid:
        raise WireError("pod_uid: a non-empty string is required")
    if not isinstance(files, list) or not files or len(files) > MAX_FILES:
        raise WireError(f"files: a list of 1 to {MAX_FILES} files is required")
    parsed: list[tuple[str, str, bytes]] = []
    for index, item in enumerate(files):
        what = f"files[{index}]"
        if not isinstance(item, dict):
            raise WireError(f"{what}: an object is required")
        volume, path, data = item.get("volume"), item.get("path"), item.get("data")
        if not isinstance(volume, str) or not DNS_LABEL.match(volume):
            raise WireError(f"{what}.volume: {volume!r} is not a volume name")
        if not isinstance(path, str) or not _path_ok(path):
            raise WireError(f"{what}.path: {path!r} must be a relative path without '..'")
        if not isinstance(data, str):
            raise WireError(f"{what}.data: base64 text is required")
        try:
            content = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise WireError(f"{what}.data: not base64 ({exc})") from None
        if len(content) > MAX_FILE_BYTES:
            raise WireError(f"{what}.data: larger than {MAX_FILE_BYTES} bytes")
        parsed.append((volume, path, content))
    return ProjectedWrite(uid, parsed)
