"""The Helm chart of the vk (deploy/helm/slurmlink-vk): lint, manifests valid against the Kubernetes schemas,
values refused by values.schema.json with the right message, the rendered configs passing `slurmlink
check-config` in the pod's file tree (the kubelet's volumes staged under a directory), the pod's containers run
as processes against the Kubernetes stand-in, and RBAC that is exactly what the vk calls.

The RBAC check is made from a real run, not from a list kept by hand: the Kubernetes stand-in records the RBAC
attributes of every request (standins/kube/audit.py), a `slurmlink vk` process runs a representative lifecycle
against it as the chart's ServiceAccount (registration, lease, node watch, pods with a ConfigMap, a Secret and a
projected token, status, events, `kubectl logs`, a bearer-token call to the kubelet endpoint, a CSR, pod
deletion, a restart that adopts the node, the node deleted and registered again), and `slurmlink vk-node-delete`
runs as the post-delete hook's account while the vk stops; each account's requests are compared with the rules
the chart binds to it, both ways; and a static scan of the vk's code (tests/harness/kube_calls.py) checks that
the run made every kind of request the code has. No SLURM: the interLink API is a fake
(tests/harness/fake_interlink.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from slurmlink.api.config import ApiConfig
from slurmlink.config import load_config
from slurmlink.vk.config import KubeletAuthenticationConfig, KubeletAuthorizationConfig, VkConfig
from standins.kube import KubeStandin
from standins.kube.audit import AuditEntry
from standins.kube.rbac import REVIEWS
from tests.deploy.check_config import check_config
from tests.harness.fake_interlink import LOG_TEXT, serve_fake_interlink
from tests.harness.helm import CHART, HELM_VERSION, container_files, find, helm, notes, objects, render, under
from tests.harness.kube_calls import scan
from tests.harness.pods import NODE, pod_manifest
from tests.harness.ports import free_port
from tests.harness.services import VkProcess, client_context, node_kubeconfig, token_kubeconfig, vk_config
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.timeout(300)
VALUES = Path(__file__).parent / "helm-values"
GOOD = sorted(VALUES.glob("*.yaml"))
BAD = sorted((VALUES / "bad").glob("*.yaml"))
KUBERNETES = "1.36.0"  # the schemas kubernetes-validate ships for the apiserver of shared/reference/kubernetes.md
STATE_DIR = "/var/lib/slurmlink/vk"
# The volume types the restricted Pod Security Standard allows
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}
REQUIRED = {"node.name": "hpc-site-a", "identity.nodeCredential.existingSecret": "node-kubeconfig",
            "api.url": "https://hpc.example.org:3000"}


def _ids(paths: list[Path]) -> list[str]:
    return [path.stem for path in paths]


def configmap_data(docs: list[dict[str, Any]]) -> dict[str, str]:
    [deployment] = find(docs, "Deployment")
    name = next(v["configMap"]["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]
                if v["name"] == "config")
    return dict(find(docs, "ConfigMap", name)[0]["data"])


def _container(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    [deployment] = find(docs, "Deployment")
    [container] = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return dict(container)


def stage_container(docs: list[dict[str, Any]], name: str, root: Path,
                    contents: dict[str, str] | None = None) -> tuple[str, Path]:
    """The container's files under `root` (see container_files): (its service, its config file there)."""
    program, service, option, config_path = _container(docs, name)["command"]
    assert (program, option) == ("slurmlink", "-c")
    container_files(docs, name, root, contents)
    return service, root / config_path.lstrip("/")


# What check-config may warn about in the chart's pod, and why that is all right there
EXPECTED_WARNINGS = (
    "is readable by its group (mode 0440)",  # Secrets as Kubernetes mounts them for a non-root user: fsGroup
    "auth.allow_unauthenticated",  # the mode-1 API without a token: 127.0.0.1 of the pod, its containers only
    "0700 is enough",  # the state volume as the kubelet mounts it (group-writable for fsGroup), in the pod only
)


def check_staged(service: str, config: Path, root: Path) -> None:
    """`slurmlink check-config` on the config, its files looked up in the pod's tree: no errors."""
    result = check_config(service, config, "--root", str(root))
    assert result.code == 0 and not result.errors(), "\n".join(result.lines)
    warnings = [line for line in result.lines if line.startswith("warning")]
    assert all(any(known in line for known in EXPECTED_WARNINGS) for line in warnings), warnings


# --- the chart on its own ------------------------------------------------------------------------------------

def test_helm_is_the_pinned_release() -> None:
    assert helm("version", "--short").stdout.startswith(HELM_VERSION + "+")


@pytest.mark.parametrize("values", GOOD, ids=_ids(GOOD))
def test_lint_strict(values: Path) -> None:
    result = helm("lint", "--strict", str(CHART), "--values", str(values), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


def test_defaults_need_only_the_required_values() -> None:
    settings = [arg for key, value in REQUIRED.items() for arg in ("--set-string", f"{key}={value}")]
    result = helm("lint", "--strict", str(CHART), *settings, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    refused = helm("lint", "--strict", str(CHART), check=False)  # without them: each one named
    assert refused.returncode != 0
    for key in REQUIRED:
        assert f"- {key}: String length must be greater than or equal to 1" in refused.stdout, refused.stdout


@pytest.mark.parametrize("values", GOOD, ids=_ids(GOOD))
def test_manifests_valid_for_kubernetes(values: Path, tmp_path: Path) -> None:
    manifests = tmp_path / "manifests.yaml"
    manifests.write_text(render(values))
    validate = Path(sys.executable).parent / "kubernetes-validate"
    result = subprocess.run([str(validate), "-k", KUBERNETES, "--strict", str(manifests)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    output = (result.stdout + result.stderr).splitlines()
    assert not [line for line in output if line.startswith("ERROR")], output
    # The one kind without a Kubernetes schema is the Prometheus operator's; test_service_monitor checks it.
    unknown = [line for line in output if line.startswith("WARN")]
    assert all("kind ServiceMonitor with api version monitoring.coreos.com/v1" in line for line in unknown), unknown


@pytest.mark.parametrize("values", GOOD, ids=_ids(GOOD))
def test_deployment_shape(values: Path) -> None:
    docs = objects(render(values))
    assert not find(docs, "Secret"), "the chart never makes a Secret: they are referenced"
    [deployment] = find(docs, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    jobs = [job["spec"]["template"]["spec"] for job in find(docs, "Job")]
    for each in (pod, *jobs):
        assert each["securityContext"]["runAsNonRoot"] is True
        assert each["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in each["containers"]:
            context = container["securityContext"]
            assert context["runAsNonRoot"] and context["readOnlyRootFilesystem"], container["name"]
            assert context["allowPrivilegeEscalation"] is False and context["capabilities"] == {"drop": ["ALL"]}
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    vk = pod["containers"][0]
    admin_port = yaml.safe_load(configmap_data(docs)["vk.yaml"])["admin"]["port"]
    assert {"name": "admin", "containerPort": admin_port} in vk["ports"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert vk[probe]["httpGet"] == {"path": "/healthz", "port": "admin"}, probe
    assert any(m["mountPath"] == STATE_DIR and m["name"] == "state" for m in vk["volumeMounts"])
    for volume in pod["volumes"]:  # secrets are files, readable by the pod's group only
        if "secret" in volume:
            assert volume["secret"]["defaultMode"] == 0o440, volume
        assert set(volume) - {"name"} <= RESTRICTED_VOLUMES, volume


@pytest.mark.parametrize("values", GOOD, ids=_ids(GOOD))
def test_rendered_configs_pass_check_config(values: Path, tmp_path: Path) -> None:
    docs = objects(render(values))
    wanted = yaml.safe_load(values.read_text())
    root = tmp_path / "root"
    service, config = stage_container(docs, "vk", root)
    check_staged(service, config, root)
    vk = load_config(VkConfig, config)
    assert vk.node.name == wanted["node"]["name"]
    if vk.kubelet.tls == "csr":  # kept on the volume, so a restart needs no new approval
        assert vk.kubelet.csr.state_file == f"{STATE_DIR}/kubelet-serving.pem"
    if wanted.get("mode1Api", {}).get("enabled"):
        service, config = stage_container(docs, "api", root)
        check_staged(service, config, root)
        api = load_config(ApiConfig, config)
        assert api.backend == "rest"
        assert vk.api.url == f"http://{api.listen.host}:{api.listen.port}" and api.listen.host == "127.0.0.1"
        if vk.api.token_file:  # the vk sends the token the API asks for
            assert api.auth.bearer_token_file == vk.api.token_file
        else:  # only the pod's own containers reach 127.0.0.1 of the pod
            assert api.auth.allow_unauthenticated
    else:
        assert "api.yaml" not in configmap_data(docs)


def test_node_credential_mode() -> None:
    """The node's own kubeconfig from its Secret; no ServiceAccount token in the pod and no RBAC of the vk's."""
    docs = objects(render(VALUES / "node-credential.yaml"))
    hooks = [doc for doc in docs if "helm.sh/hook" in doc["metadata"].get("annotations", {})]
    assert {doc["metadata"]["name"] for doc in hooks} == {"slurmlink-vk-node-delete"}  # the hook's own account
    assert not [doc for doc in docs if doc["kind"] in ("ServiceAccount", "ClusterRole", "Role") and doc not in hooks]
    pod = find(docs, "Deployment")[0]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and "serviceAccountName" not in pod
    kubeconfig = yaml.safe_load(configmap_data(docs)["vk.yaml"])["kube"]["kubeconfig"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "kubeconfig"]
    assert volume["secret"]["secretName"] == "hpc-site-a-node-kubeconfig"
    assert volume["secret"]["items"] == [{"key": "kubeconfig", "path": Path(kubeconfig).name}]
    [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "kubeconfig"]
    assert mount["mountPath"] == str(Path(kubeconfig).parent) and mount["readOnly"] is True


def test_settings_in_the_schema_are_keys_of_the_models() -> None:
    """values.schema.json lists the settings passed through to the configs: each must be a key slurmlink knows."""
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]
    owned = {"node", "kube", "api", "kubelet", "admin"}  # set by the chart from their own values
    vk_settings = set(schema["vkSettings"]["properties"])
    assert vk_settings <= set(VkConfig.model_fields) - owned
    assert set(schema["mode1Api"]["properties"]["settings"]["properties"]) <= set(ApiConfig.model_fields)
    kubelet = schema["kubelet"]["properties"]
    assert set(kubelet["authentication"]["properties"]) == set(KubeletAuthenticationConfig.model_fields) - {"x509"}
    assert set(kubelet["authorization"]["properties"]) == set(KubeletAuthorizationConfig.model_fields)


def test_service_monitor() -> None:
    docs = objects(render(VALUES / "service-monitor.yaml"))
    [monitor] = find(docs, "ServiceMonitor")
    [service] = find(docs, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    [deployment] = find(docs, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    for job in find(docs, "Job"):  # the hook's pod is no endpoint of the Service
        assert not service["spec"]["selector"].items() <= job["spec"]["template"]["metadata"]["labels"].items()
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    ports = {port["name"] for port in service["spec"]["ports"]}
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["admin", "api-admin"]
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
    assert all(e["path"] == "/metrics" for e in monitor["spec"]["endpoints"])


def test_notes_warn_what_a_service_account_grants() -> None:
    text = notes(VALUES / "service-account.yaml")
    assert "WARNING: identity.mode is serviceAccount" in text
    assert "Treat this account as cluster-admin" in text and "request a token for ANY ServiceAccount" in text
    credential = notes(VALUES / "node-credential.yaml")
    assert "WARNING" not in credential
    assert "kubectl certificate approve" in credential  # tls.mode csr: someone must approve the serving CSR


@pytest.mark.parametrize("values", BAD, ids=_ids(BAD))
def test_bad_values_refused(values: Path) -> None:
    first = values.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{values.name}: the first line says the expected message"
    result = helm("template", "t", str(CHART), "--values", str(values), check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert first.removeprefix("# expect: ") in result.stderr, result.stderr


# --- the chart's vk, run as its pod would run it ------------------------------------------------------------

def _container_env(container: dict[str, Any], pod_ip: str) -> dict[str, str]:
    env = {}
    for variable in container.get("env", []):
        source = (variable.get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath")
        assert source in (None, "status.podIP"), variable
        env[variable["name"]] = pod_ip if source else variable["value"]
    return env


def _start_container(docs: list[dict[str, Any]], name: str, root: Path, contents: dict[str, str], pod_ip: str,
                     log: Path) -> subprocess.Popen[bytes]:
    """One container of the rendered Deployment as a process: its files staged under `root` and checked by
    check-config there, then its command and env, with every path of its config moved under `root`."""
    service, config = stage_container(docs, name, root, contents)
    check_staged(service, config, root)
    config.write_text(yaml.safe_dump(under(root, yaml.safe_load(config.read_text()))))
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "slurmlink.cli", service, "-c", str(config)], stdout=out,
                                stderr=subprocess.STDOUT,
                                env={**os.environ, **_container_env(_container(docs, name), pod_ip)})


def _answers(url: str, process: subprocess.Popen[bytes], log: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"{url}: the process exited:\n{log.read_text()}")
    try:
        return httpx.get(url, verify=client_context(None), timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize("values", ["node-credential", "mode1-api"])
def test_the_charts_pod_runs(values: str, tmp_path: Path) -> None:
    """The rendered Deployment's containers as processes: their commands, their env (the pod's IP from the
    downward API), their volumes as the kubelet fills them (the ConfigMap, the node credential's Secret, the
    cluster CA, token Secrets, the state volume) under a directory standing for the pod's root. The vk registers
    the node at the pod's IP, reaching its interLink API (the fake, or the mode-1 API container on the pod's
    127.0.0.1), and its approved serving certificate lands on the state volume."""
    root, pod_ip = tmp_path / "root", "127.0.0.2"
    with serve_fake_interlink() as fake_url, KubeStandin(tmp_path / "standin") as kube:
        kubelet_port, admin_port, api_port, api_admin_port = free_port(), free_port(), free_port(), free_port()
        settings = {"node.name": NODE} if values == "mode1-api" else \
            {"node.name": NODE, "api.url": fake_url, "api.ca.existingConfigMap": ""}
        docs = objects(render(VALUES / f"{values}.yaml", settings=settings, numbers={
            "kubelet.port": kubelet_port, "admin.port": admin_port, "mode1Api.port": api_port,
            "mode1Api.adminPort": api_admin_port}))
        node_config = node_kubeconfig(kube, tmp_path / "node.kubeconfig", NODE).read_text()
        contents = {"kubeconfig": node_config, "client-ca": kube.ca_path.read_text(), "api-token": "vk-token\n",
                    "proxy-ca": kube.ca_path.read_text(), "service-token": "service-token\n"}
        containers = [c["name"] for c in find(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"]]
        processes: list[subprocess.Popen[bytes]] = []
        try:
            if "api" in containers:  # the vk's API, first
                log = tmp_path / "api.log"
                processes.append(_start_container(docs, "api", root, contents, pod_ip, log))
                # where the chart's probes look: the admin listener
                wait_until(lambda: _answers(f"http://127.0.0.1:{api_admin_port}/healthz", processes[-1], log), 30,
                           "the mode-1 API to answer")
            log = tmp_path / "vk.log"
            processes.append(_start_container(docs, "vk", root, contents, pod_ip, log))
            wait_until(lambda: _answers(f"http://127.0.0.1:{admin_port}/healthz", processes[-1], log), 30,
                       "the vk to serve")
            node = wait_until(lambda: kube.get("nodes", NODE), 10, "the node")
            assert {"type": "InternalIP", "address": pod_ip} in node["status"]["addresses"]
            with kube.client() as http:
                csrs = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
                [csr] = wait_until(lambda: http.get(csrs).json()["items"], 15, "the vk's CSR")
            kube.approve_csr(csr["metadata"]["name"])
            state = root / STATE_DIR.lstrip("/") / "kubelet-serving.pem"
            wait_until(state.exists, 15, "the certificate on the state volume")
            assert state.stat().st_mode & 0o777 == 0o600
        finally:
            for process in processes:
                process.terminate()
                process.wait(15)


# --- RBAC: the chart's rules against a vk's real requests -----------------------------------------------------

@dataclass(frozen=True)
class Permission:
    """One (API group, resource[/subresource], verb) a rule grants, maybe limited to names or to a namespace."""

    group: str
    resource: str
    verb: str
    names: frozenset[str] = frozenset()
    namespace: str | None = None  # None: any (a ClusterRole bound cluster-wide)

    def allows(self, entry: AuditEntry) -> bool:
        resource = f"{entry.resource}/{entry.subresource}" if entry.subresource else entry.resource
        return (self.group == entry.group and self.resource == resource and self.verb == entry.verb
                and (not self.names or entry.name in self.names)
                and (self.namespace is None or self.namespace == entry.namespace))


# Kubernetes' bootstrap ClusterRole system:auth-delegator (the stand-in's review grants are the same rules)
AUTH_DELEGATOR = [Permission(group, plural, "create") for group, plural in REVIEWS]


def _permissions(role: dict[str, Any]) -> list[Permission]:
    namespace = role["metadata"]["namespace"] if role["kind"] == "Role" else None
    return [Permission(group, resource, verb, frozenset(rule.get("resourceNames") or ()), namespace)
            for rule in role["rules"] for group in rule["apiGroups"] for resource in rule["resources"]
            for verb in rule["verbs"]]


def bound_permissions(docs: list[dict[str, Any]], account: str, namespace: str) -> list[Permission]:
    """Every permission the rendered bindings give the ServiceAccount `namespace/account`."""
    granted: list[Permission] = []
    for binding in find(docs, "ClusterRoleBinding") + find(docs, "RoleBinding"):
        if not any(s["kind"] == "ServiceAccount" and s["name"] == account and s["namespace"] == namespace
                   for s in binding["subjects"]):
            continue
        ref = binding["roleRef"]
        if ref["name"] == "system:auth-delegator":
            granted += AUTH_DELEGATOR
            continue
        [role] = find(docs, ref["kind"], ref["name"])
        granted += _permissions(role)
    return granted


def bound_accounts(docs: list[dict[str, Any]], role_kind: str, role_name: str) -> list[tuple[str, str]]:
    return [(s["namespace"], s["name"]) for binding in find(docs, f"{role_kind}Binding")
            if binding["roleRef"]["name"] == role_name for s in binding["subjects"]]


def compare(entries: list[AuditEntry], granted: list[Permission]) -> tuple[list[AuditEntry], list[Permission]]:
    """(requests no permission allows, permissions no request used)."""
    missing = sorted({e for e in entries if not any(p.allows(e) for p in granted)}, key=str)
    unused = [p for p in granted if not any(p.allows(e) for e in entries)]
    return missing, unused


@dataclass
class Recorded:
    docs: list[dict[str, Any]]
    vk_account: tuple[str, str]
    hook_account: tuple[str, str]
    vk: list[AuditEntry]
    hook: list[AuditEntry]
    hook_outputs: list[str]


def _account_token(kube: KubeStandin, namespace: str, name: str) -> str:
    with kube.client() as http:
        if kube.get("namespaces", namespace) is None:
            http.post("/api/v1/namespaces", json={"metadata": {"name": namespace}}).raise_for_status()
        http.post(f"/api/v1/namespaces/{namespace}/serviceaccounts",
                  json={"metadata": {"name": name}}).raise_for_status()
        answer = http.post(f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
                           json={"spec": {"expirationSeconds": 3600}})
        answer.raise_for_status()
        return str(answer.json()["status"]["token"])


def _node_uid(kube: KubeStandin) -> str:
    node = kube.get("nodes", NODE)
    return str(node["metadata"]["uid"]) if node else ""


def _ready(kube: KubeStandin) -> bool:
    conditions = ((kube.get("nodes", NODE) or {}).get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _lifecycle(kube: KubeStandin, vk: VkProcess) -> None:
    """What a vk does in its life, each step waited for: every kind of request it makes happens at least once."""
    vk.start()
    wait_until(lambda: _ready(kube), 20, "the node to be Ready")
    wait_until(lambda: kube.get("leases", NODE, "kube-node-lease", "coordination.k8s.io"), 10, "the node's Lease")
    with kube.client() as http:
        # kubelet.tls: csr: the vk's CSR, approved as an admin would
        csrs = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
        [csr] = wait_until(lambda: http.get(csrs).json()["items"], 15, "the vk's CSR")
        kube.approve_csr(csr["metadata"]["name"])
        wait_until(lambda: "Issued" in json.dumps(kube.get("nodes", NODE)), 15, "the certificate to be served")
        # a pod with a ConfigMap volume, a Secret in its env and a projected ServiceAccount token
        http.post("/api/v1/namespaces/default/configmaps",
                  json={"metadata": {"name": "app-config"}, "data": {"a": "1"}}).raise_for_status()
        http.post("/api/v1/namespaces/default/secrets",
                  json={"metadata": {"name": "app-secret"}, "data": {"k": "dg=="}}).raise_for_status()
        container = {"name": "main", "image": "debian", "command": ["true"],
                     "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "app-secret", "key": "k"}}}],
                     "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}]}
        pod = pod_manifest("rbac-pod", "true", containers=[container], automountServiceAccountToken=True,
                           volumes=[{"name": "cfg", "configMap": {"name": "app-config"}}])
        http.post("/api/v1/namespaces/default/pods", json=pod).raise_for_status()
        wait_until(lambda: ((kube.get("pods", "rbac-pod", "default") or {}).get("status") or {}).get("phase")
                   == "Running", 20, "the pod to run")
        # `kubectl logs` through the apiserver (its client certificate, authorised by a SubjectAccessReview)
        logs = http.get("/api/v1/namespaces/default/pods/rbac-pod/log")
        assert logs.status_code == 200 and logs.text == LOG_TEXT, logs.text
    # a caller with a bearer token: TokenReview, then SubjectAccessReview
    answer = vk.get("/runningpods/", headers={"Authorization": f"Bearer {kube.admin_token}"}, client=None)
    assert answer.status_code == 200, answer.text
    with kube.client() as http:
        http.delete("/api/v1/namespaces/default/pods/rbac-pod").raise_for_status()
        wait_until(lambda: kube.get("pods", "rbac-pod", "default") is None, 20, "the pod's deletion confirmed")
        # a restart adopts the existing node; a deleted node is registered again
        vk.stop()
        vk.start()
        first = wait_until(lambda: _ready(kube) and _node_uid(kube), 20, "the node adopted and Ready")
        http.delete(f"/api/v1/nodes/{NODE}").raise_for_status()
        wait_until(lambda: _node_uid(kube) not in ("", first), 20, "the node registered again")


def _node_delete(config: Path, *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "slurmlink.cli", "vk-node-delete", "-c", str(config), *options],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "200"})


def _finished(process: subprocess.Popen[str]) -> str:
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    return " ".join(output.split())


def _uninstall(kube: KubeStandin, vk: VkProcess, hook_config: Path) -> list[str]:
    """As `helm uninstall`: the vk is told to stop while the hook deletes its node (and keeps deleting it)."""
    registered = _node_uid(kube)
    hook = _node_delete(hook_config, "--repeat-for", "6")
    wait_until(lambda: _node_uid(kube) not in ("", registered), 10, "the running vk to register its node again")
    vk.stop()
    outputs = [_finished(hook)]
    assert kube.get("nodes", NODE) is None
    outputs.append(_finished(_node_delete(hook_config)))  # nothing left to delete is no error
    return outputs


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    """The chart rendered for the tests' node in serviceAccount mode; the vk and the hook run as its accounts."""
    workdir = tmp_path_factory.mktemp("rbac")
    docs = objects(render(VALUES / "service-account.yaml", settings={"node.name": NODE}))
    [role] = [r for r in find(docs, "ClusterRole") if not r["metadata"]["name"].endswith("-node-delete")]
    [hook_role] = [r for r in find(docs, "ClusterRole") if r["metadata"]["name"].endswith("-node-delete")]
    [vk_account] = bound_accounts(docs, "ClusterRole", role["metadata"]["name"])
    [hook_account] = bound_accounts(docs, "ClusterRole", hook_role["metadata"]["name"])
    with serve_fake_interlink() as api_url, KubeStandin(workdir / "standin", bookmark_interval=1.0) as kube:
        vk_user = f"system:serviceaccount:{vk_account[0]}:{vk_account[1]}"
        hook_user = f"system:serviceaccount:{hook_account[0]}:{hook_account[1]}"
        vk_kubeconfig = token_kubeconfig(kube, workdir / "vk.kubeconfig", _account_token(kube, *vk_account))
        hook_kubeconfig = token_kubeconfig(kube, workdir / "hook.kubeconfig", _account_token(kube, *hook_account))
        for group, plural in REVIEWS:  # the chart's binding to system:auth-delegator, as the stand-in sees it
            kube.grant(f"user:{vk_user}", ("create",), (plural,), group)
        config = vk_config(kube, vk_kubeconfig, api_url)
        config["kubelet"].update(tls="csr", csr={"state_file": str(workdir / "state" / "kubelet-serving.pem")})
        vk = VkProcess(config, workdir, kube.kubelet_client_cert)
        hook_config = workdir / "node-delete.yaml"
        hook_config.write_text(yaml.safe_dump({"node": {"name": NODE}, "kube": {"kubeconfig": str(hook_kubeconfig)}}))
        try:
            _lifecycle(kube, vk)
            outputs = _uninstall(kube, vk, hook_config)
        finally:
            vk.stop()
        yield Recorded(docs, vk_account, hook_account, kube.audit.entries(vk_user), kube.audit.entries(hook_user),
                       outputs)


def test_vk_cluster_role_is_exactly_what_the_vk_calls(recorded: Recorded) -> None:
    granted = bound_permissions(recorded.docs, recorded.vk_account[1], recorded.vk_account[0])
    resource_requests = [e for e in recorded.vk if e.resource]
    missing, unused = compare(resource_requests, granted)
    assert not missing, f"the vk made requests the chart does not allow: {missing}"
    assert not unused, f"the chart allows what the vk never did: {unused}"
    # Discovery paths, if any, are open to every authenticated user (ClusterRole system:discovery).
    assert all(e.path.startswith(("/api", "/apis", "/version", "/openapi")) for e in recorded.vk if not e.resource)
    print("\nthe vk's requests (verb group resource[/subresource] [name]):")
    for line in sorted({f"{e.verb} {e.group or 'core'} {e.resource}{'/' + e.subresource if e.subresource else ''}"
                        f"{' ' + e.name if e.name and e.resource in ('nodes', 'leases') else ''}"
                        for e in resource_requests}):
        print("  " + line)


def test_the_run_made_every_request_the_vk_code_has(recorded: Recorded) -> None:
    """The run above against a static scan of slurmlink/vk: a call the lifecycle never reaches would escape the
    RBAC comparison, so each kind of request in the code must have been made."""
    calls, non_resource = scan("slurmlink.vk")
    hook = [call for call in calls if call.where.startswith("nodedelete.py")]
    made = {(e.group, e.resource, e.subresource, e.verb) for e in recorded.vk}
    never = [call for call in calls if call not in hook and call.attributes not in made]
    assert not never, f"extend _lifecycle: the vk's code makes requests the run never made: {never}"
    assert {call.attributes for call in hook} == {(e.group, e.resource, e.subresource, e.verb) for e in recorded.hook}
    assert non_resource == ["/version"]  # open to everyone (ClusterRole system:public-info-viewer)


def test_node_delete_hook_may_only_delete_the_node(recorded: Recorded) -> None:
    granted = bound_permissions(recorded.docs, recorded.hook_account[1], recorded.hook_account[0])
    assert granted == [Permission("", "nodes", "delete", frozenset({NODE}))]
    assert {(e.verb, e.resource, e.name) for e in recorded.hook} == {("delete", "nodes", NODE)}
    missing, unused = compare(recorded.hook, granted)
    assert not missing and not unused
    first, second = recorded.hook_outputs
    assert first.startswith(f"node {NODE} deleted, and ") and "a vk still stopping registered it again" in first
    assert second == f"node {NODE} was already gone"
    [job] = find(recorded.docs, "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-delete"  # after the Deployment is deleted
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:2] == ["slurmlink", "vk-node-delete"] and command[-2:] == ["--repeat-for", "45"]
    [config_map] = find(recorded.docs, "ConfigMap", job["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"])
    assert yaml.safe_load(config_map["data"]["node-delete.yaml"]) == {"node": {"name": NODE}}
