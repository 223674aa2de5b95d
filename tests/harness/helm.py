"""The Helm chart of the vk, rendered by a pinned Helm (scripts/fetch-helm.sh; install.sh links it into the venv)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "slurmlink-vk"
HELM_VERSION = "v3.17.1"


def helm_binary() -> Path:
    """The venv's helm, else the one fetch-helm.sh puts in its cache (fetching it if need be)."""
    beside = Path(sys.executable).parent / "helm"
    if beside.exists():
        return beside
    fetched = subprocess.run(["bash", str(ROOT / "scripts" / "fetch-helm.sh")], capture_output=True, text=True,
                             check=True)
    return Path(fetched.stdout.strip())


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(helm_binary()), *args], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def render(values: Path | None = None, *, release: str = "slurmlink-vk", namespace: str = "slurmlink",
           settings: dict[str, str] | None = None, numbers: dict[str, int] | None = None) -> str:
    """`helm template` of the chart: the manifests as one YAML stream; `settings` (strings) and `numbers`
    override values."""
    args = ["template", release, str(CHART), "--namespace", namespace]
    if values is not None:
        args += ["--values", str(values)]
    for key, value in (settings or {}).items():
        args += ["--set-string", f"{key}={value}"]
    for key, number in (numbers or {}).items():
        args += ["--set", f"{key}={number}"]
    return helm(*args).stdout


def notes(values: Path, *, release: str = "slurmlink-vk", namespace: str = "slurmlink") -> str:
    """NOTES.txt as `helm install` would print it. `helm template` leaves NOTES out, and `install --dry-run`
    needs a cluster: a copy of the chart renders it through `tpl` in a manifest of its own."""
    with tempfile.TemporaryDirectory(prefix="chart-notes-") as scratch:
        chart = Path(scratch) / CHART.name
        shutil.copytree(CHART, chart)
        shutil.copy(chart / "templates" / "NOTES.txt", chart / "notes.txt")  # .Files cannot read templates/
        (chart / "templates" / "notes-check.yaml").write_text('notes: {{ tpl (.Files.Get "notes.txt") . | toJson }}\n')
        rendered = helm("template", release, str(chart), "--namespace", namespace, "--values", str(values),
                        "--show-only", "templates/notes-check.yaml").stdout
    return str(yaml.safe_load(rendered)["notes"])


def objects(manifests: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(manifests) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)]


def container_files(docs: list[dict[str, Any]], container: str, root: Path,
                    contents: dict[str, str] | None = None) -> None:
    """The container's volumes as directories under `root` (`root`/etc/slurmlink/... for /etc/slurmlink/...), as
    the kubelet would fill them: the chart's ConfigMaps from the manifests, other ConfigMaps and Secrets from
    `contents` (volume name -> the text of its items; default a placeholder) with the volume's mode, persistent
    and emptyDir volumes empty."""
    [deployment] = find(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    [spec] = [c for c in pod["containers"] if c["name"] == container]
    for mount in spec["volumeMounts"]:
        target = root / mount["mountPath"].lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        volume = volumes[mount["name"]]
        source = volume.get("configMap") or volume.get("secret")
        if source is None:
            continue
        made = find(docs, "ConfigMap", source.get("name", ""))
        if made:
            for key, text in made[0]["data"].items():
                (target / key).write_text(text)
        else:
            for item in source["items"]:
                (target / item["path"]).write_text((contents or {}).get(mount["name"], "placeholder\n"))
                (target / item["path"]).chmod(source.get("defaultMode", 0o644))


def under(root: Path, config: Any) -> Any:
    """A config with every absolute path moved under `root` (where container_files put the volumes)."""
    if isinstance(config, dict):
        return {key: under(root, value) for key, value in config.items()}
    if isinstance(config, list):
        return [under(root, value) for value in config]
    if isinstance(config, str) and config.startswith("/"):
        return str(root / config.lstrip("/"))
    return config
