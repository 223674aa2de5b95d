"""Example files shipped with the package: configurations (`slurmlink config example NAME`) and pods.

Configurations are `<name>.yaml` here, pods are in `pods/`; a name is the file's stem (`vk`, `api-mode2`).
"""

from __future__ import annotations

from pathlib import Path

from slurmlink.core.errors import SlurmlinkError

_HERE = Path(__file__).resolve().parent


class UnknownExample(SlurmlinkError):
    default_reason = "UnknownExample"


def config_names() -> list[str]:
    return sorted(path.stem for path in _HERE.glob("*.yaml"))


def config_path(name: str) -> Path:
    return _find(_HERE, name, config_names())


def pod_path(name: str) -> Path:
    return _find(_HERE / "pods", name, sorted(path.stem for path in (_HERE / "pods").glob("*.yaml")))


def _find(directory: Path, name: str, names: list[str]) -> Path:
    if name not in names:  # also keeps `../x` and other paths out
        raise UnknownExample(f"no example named {name!r}; the examples are: {', '.join(names)}")
    return directory / f"{name}.yaml"
