"""`POST /slurmlink/v1/projected` (the body: wire.projected): which files of a running pod may be written.

Pure: deciding which files of the pod may be written. Only a file the pod's own spec
(as the API holds it, never as the caller describes it) declares as a projected serviceAccountToken path can be
replaced; anything else is refused before any file is touched.
"""

from __future__ import annotations

from typing import Any

from slurmlink.core.records import VolumeFile
from slurmlink.translate.layout import VOLUMES_DIR
from slurmlink.wire.gojson import WireError
from slurmlink.wire.projected import ProjectedWrite


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
