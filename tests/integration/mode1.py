"""Mode 1 for the tests: `slurmlink api --backend rest` → `slurmlink proxy` → the test SLURM's slurmrestd.

Every part is a real process on loopback except EGI Check-in (standins/checkin.py). Pods carry a
token Secret like users' pods do; the proxy maps the token's subject to a local account. The `mode1` fixture
(integration/conftest.py) starts the stack once per test module.
"""

from __future__ import annotations

import base64
import copy
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from slurmlink.devcluster import DevCluster
from slurmlink.identity.pod_token import ACCESS_TOKEN_KEY
from slurmlink.wire.names import TOKEN_SECRET_ANNOTATION
from standins.checkin import CheckinStandin
from tests.harness.pods import Client, pod_manifest
from tests.harness.ports import free_port
from tests.harness.services import ApiProcess, ProxyProcess, api_config
from tests.integration.proxy_fixtures import proxy_config

VO = "vo.example.org"
TOKEN_SECRET = "checkin-token"  # noqa: S105 - a Secret's name
ALICE_SECRET = "alice-checkin"  # noqa: S105 - a Secret's name: alice's token, for pods applied with kubectl


class TokenClient(Client):
    """Sends each pod with its user's Check-in token in a Secret, chosen by namespace."""

    def __init__(self, url: str, tokens: dict[str, str]) -> None:
        super().__init__(url)
        self.tokens = tokens  # namespace -> access token

    def objects(self, pod: dict[str, Any], configmaps: list[Any] | None,
                secrets: list[Any] | None) -> tuple[list[Any] | None, list[Any] | None]:
        meta = pod["metadata"]
        # As the apiserver would: a restarted API tells pods it may have submitted from newer ones by this.
        meta.setdefault("creationTimestamp", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        if meta["namespace"] in self.tokens:
            meta.setdefault("annotations", {}).setdefault(TOKEN_SECRET_ANNOTATION, TOKEN_SECRET)
            secrets = [token_secret(self.tokens[meta["namespace"]], meta["namespace"]), *(secrets or [])]
        return configmaps, secrets


def token_secret(token: str, namespace: str = "default", **extra: str) -> dict[str, Any]:
    data = {"access_token": token, **extra}
    return {"metadata": {"name": TOKEN_SECRET, "namespace": namespace}, "type": "Opaque",
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


@dataclass
class Mode1:
    checkin: CheckinStandin
    proxy: ProxyProcess
    api: ApiProcess
    subjects: dict[str, str]  # alice, bob, service -> Check-in subject
    accounts: dict[str, str]  # alice, bob -> local account
    job_root: Path
    service_token_file: Path

    def client(self) -> TokenClient:
        return TokenClient(self.api.url, {"default": self.checkin.mint(self.subjects["alice"]),
                                          "team-b": self.checkin.mint(self.subjects["bob"])})

    def stop(self) -> None:
        self.api.stop()
        self.proxy.stop()
        self.checkin.stop()


def sticky_job_root(cluster: DevCluster) -> Path:
    """Where mode-1 jobs make their own directories: like /tmp, but nobody may list it."""
    root = cluster.state_dir / "jobs-mode1"
    root.mkdir(exist_ok=True)
    os.chown(root, 0, 0)
    root.chmod(0o1733)
    return root


def start_mode1(cluster: DevCluster, work: Path, *, api: dict[str, Any] | None = None,
                files: dict[str, Any] | None = None, proxy_keys: dict[str, Any] | None = None,
                vos: list[str] | None = None) -> Mode1:
    """The whole mode-1 stack, started; `Mode1.stop()` stops it. `api` replaces top-level keys of the API's
    configuration, `files` keys of the proxy's `files` section, `proxy_keys` top-level keys of the proxy's; `vos`:
    the VOs the proxy admits (default: VO)."""
    checkin = CheckinStandin().start()
    subjects = {who: checkin.new_subject() for who in ("alice", "bob", "service")}
    accounts = {"alice": cluster.users[0], "bob": cluster.users[1]}
    users_file = work / "users.txt"
    users_file.write_text("".join(f"{checkin.issuer} {subjects[who]} {account}\n" for who, account in accounts.items()))
    job_root = sticky_job_root(cluster)
    settings = proxy_settings(cluster, checkin, users_file, job_root, subjects["service"], work / "proxy-state")
    settings["files"].update(files or {})
    settings.update(proxy_keys or {})
    settings["identity"]["policy"]["vos"] = vos or [VO]
    proxy = ProxyProcess(settings, work)
    proxy.start()
    service_token_file = work / "service.token"
    service_token_file.write_text(checkin.mint(subjects["service"], lifetime=7200))
    service_token_file.chmod(0o600)
    config = api_config(cluster, free_port(), backend="rest", job_root=str(job_root),
                        rest={"url": proxy.url, "api_version": os.environ.get("SLURMLINK_TEST_REST_VERSION") or "auto",
                              "service_token_file": str(service_token_file),
                              "refresh_issuers": [{"issuer": checkin.issuer}]})
    config.update(api or {})
    api_process = ApiProcess(config, work)
    api_process.start()
    return Mode1(checkin, proxy, api_process, subjects, accounts, job_root, service_token_file)


def proxy_settings(cluster: DevCluster, checkin: CheckinStandin, users_file: Path, job_root: Path,
                   service_subject: str, state_dir: Path) -> dict[str, Any]:
    """A mode-1 proxy: Check-in stand-in, static map, files and signals extensions, one service identity."""
    config = proxy_config(
        cluster, checkin, users_file, rate_limit={"requests_per_second": 100000, "burst": 100000},
        files={"job_root": str(job_root)},
        signals={"slurm_conf": str(cluster.conf_path),
                 "scancel": str(cluster.bin_dir / "scancel") if cluster.bin_dir else "scancel"},
        service_identities=[{"issuer": checkin.issuer, "subject": service_subject, "account": cluster.users[2]}],
        state_dir=str(state_dir))
    return config.model_dump(mode="json", exclude_none=True)


def with_config(mode1: Mode1, work: Path, **rest: Any) -> ApiProcess:
    """A second API process of this stack with other `rest` options."""
    config = copy.deepcopy(yaml.safe_load(mode1.api.config_path.read_text()))
    config["listen"]["port"] = free_port()
    config["rest"].update(rest)
    config["rest"] = {k: v for k, v in config["rest"].items() if v is not None}
    return ApiProcess(config, work)


def secret(name: str, token: str) -> dict[str, Any]:
    """A Secret holding a Check-in access token, to apply with kubectl."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque",
            "data": {ACCESS_TOKEN_KEY: base64.b64encode(token.encode()).decode()}}


def alice_pod(name: str, script: str, token_secret: str = ALICE_SECRET) -> dict[str, Any]:
    """A pod running `script` that names its owner's token Secret (alice's by default)."""
    pod = pod_manifest(name, script)
    pod["metadata"]["annotations"] = {TOKEN_SECRET_ANNOTATION: token_secret}
    return pod
