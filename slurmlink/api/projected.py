"""`POST /slurmlink/v1/projected`: new content for the ServiceAccount token files of a running pod's projected
volumes (slurmlink's own route; interLink's wire has no way to refresh a file of a running job).

Pure: parsing the body and deciding which files of the pod may be written. Only a file the pod's own spec
(as the API holds it, never as the caller describes it) declares as a projected serviceAccountToken path can be
replaced; anything else is refused before any file is touched.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from slurmlink.core.kube import DNS_LABEL
from slurmlink.core.records import VolumeFile
from slurmlink.interlink.types import WireError
from slurmlink.translate.layout import VOLUMES_DIR

ROUTE = "/slurmlink/v1/projected"
# On our 404s (unknown pod), so that a caller tells them from a server without the route (upstream interLink).
UNKNOWN_POD_HEADER = "X-Slurmlink-Unknown-Pod"
MAX_FILE_BYTES = 64 * 1024  # a JWT is a few KiB; anything far larger is not a token
MAX_FILES = 32


@dataclass(frozen=True)
class ProjectedWrite:
    pod_uid: str
    files: list[tuple[str, str, bytes]]  # (volume, path in the volume, content)


def _path_ok(path: str) -> bool:
    """Relative, normalised, no `..`, nothing hidden (our temporary files start with a dot)."""
    parts = path.split("/")
    return bool(path) and "\0" not in path and not path.startswith("/") and \
        all(p not in ("", ".", "..") and not p.startswith(".") for p in parts)


def parse_body(body: Any) -> ProjectedWrite:
    """The request as sent; WireError (400) for anything malformed."""
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


def token_files(pod: dict[str, Any]) -> dict[tuple[str, str], int]:
    """(volume, path) -> file mode of every projected serviceAccountToken file the pod declares. The mode is
    the one the job wrote the file with (translate.volumes: the volume's defaultMode, default 0644, & 0700)."""
    found: dict[tuple[str, str], int] = {}
    volumes = (pod.get("spec") or {}).get("volumes") if isinstance(pod.get("spec"), dict) else None
    for volume in volumes if isinstance(volumes, list) else []:
        projected = volume.get("projected") if isinstance(volume, dict) else None
        if not isinstance(projected, dict) or not isinstance(volume.get("name"), str):
            continue
        default = projected.get("defaultMode")
        mode = (default if isinstance(default, int) and not isinstance(default, bool) and 0 <= default <= 0o777
                else 0o644) & 0o700
        for source in projected.get("sources") or []:
            token = source.get("serviceAccountToken") if isinstance(source, dict) else None
            if isinstance(token, dict):
                found[(volume["name"], str(token.get("path") or "token"))] = mode
    return found


def allowed_files(pod: dict[str, Any], request: ProjectedWrite) -> list[VolumeFile]:
    """The files to write, each validated against the pod's spec; WireError (400) if any is not a token file
    of a projected volume of this pod (then none is written)."""
    allowed = token_files(pod)
    out: list[VolumeFile] = []
    for volume, path, content in request.files:
        mode = allowed.get((volume, path))
        if mode is None:
            raise WireError(f"{volume}/{path} is not a serviceAccountToken file of a projected volume of the pod")
        out.append(VolumeFile(f"{VOLUMES_DIR}/{volume}/{path}", mode, content))
    return out
