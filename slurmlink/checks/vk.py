"""`slurmlink check-config vk`: the kubeconfig (read as the vk reads it), the kubelet's certificate files, the
API's token and CA; online, the API (its /healthz, and /pinglink with the vk's token) and who the kubeconfig
says the vk is (a SelfSubjectReview, as `kubectl auth whoami`)."""

from __future__ import annotations

import ssl

from lightkube import ApiError

from slurmlink.checks.files import Fs, check_named_files, check_state, state_file
from slurmlink.checks.online import check_healthz, shorten
from slurmlink.checks.report import Report
from slurmlink.config import ConfigError
from slurmlink.statepaths import vk_state
from slurmlink.vk.config import VkConfig
from slurmlink.vk.kube import make_client, raw, status_code
from slurmlink.wire.client import UNIX_SCHEME, ApiCallError, InterlinkClient, tls_context, token_file_reader

SELF_SUBJECT_REVIEWS = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
NODES_GROUP = "system:nodes"


def check_vk(report: Report, config: VkConfig, fs: Fs) -> None:
    check_named_files(report, config, fs)
    check_state(report, vk_state(config), fs)
    csr_state = config.kubelet.csr.state_file
    if config.kubelet.tls == "csr" and csr_state and fs.path(csr_state).exists():
        state_file(report, "kubelet.csr.state_file", csr_state, fs)  # an old key must be private
    section = config.kube
    if section.kubeconfig and fs.root is None and fs.path(section.kubeconfig).is_file():
        try:
            make_client(section)  # read as the vk reads it: the file, its context, its credentials' files
        except ConfigError as exc:
            report.error("kube.kubeconfig", _kube_problem(exc))
        else:
            report.ok("kube.kubeconfig", f"context {section.context or '(current)'} is usable")
    elif not section.kubeconfig:
        report.ok("kube.kubeconfig", "not set: $KUBECONFIG, ~/.kube/config or the in-cluster ServiceAccount")


async def check_vk_online(report: Report, config: VkConfig) -> None:
    api = config.api
    try:  # the vk's own TLS towards the API: its CA, and its client certificate if the API requires one
        verify = tls_context(api.ca_file, api.cert_file, api.key_file)
    except (OSError, ssl.SSLError) as exc:
        report.error("api.ca_file", f"the API's CA or the vk's client certificate cannot be loaded: {exc}")
        return
    if not api.url.startswith(UNIX_SCHEME):  # on a socket, /pinglink below says it all
        await check_healthz(report, "api.url", api.url, verify, "the API")
    async with InterlinkClient(api.url, token=token_file_reader(api.token_file), timeout=api.timeout_seconds,
                               verify=verify) as client:
        try:
            await client.ping()
        except ApiCallError as exc:
            key = "api.token_file" if exc.status in (401, 403) else "api.url"
            report.error(key, f"the API refused /pinglink: {shorten(str(exc))}")
        except OSError as exc:
            report.error("api.token_file", f"cannot read {api.token_file}: {exc.strerror}")
        else:
            report.ok("api.url", "the API answers /pinglink with the vk's credentials")
    await _identity(report, config)


async def _identity(report: Report, config: VkConfig) -> None:
    """Who the apiserver takes the vk for: the node identity `system:node:<node.name>`, or something else."""
    try:
        client = make_client(config.kube)
    except ConfigError as exc:
        report.error("kube.kubeconfig", _kube_problem(exc))
        return
    try:
        review = await raw(client, "POST", SELF_SUBJECT_REVIEWS,
                           {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    except ApiError as exc:
        code = status_code(exc)
        if code == 404:
            report.warning("kube.kubeconfig", "the apiserver has no SelfSubjectReview (Kubernetes < 1.28): "
                                              "identity not checked")
        else:
            report.error("kube.kubeconfig", f"the apiserver refused the credentials ({code}): {shorten(str(exc))}")
        return
    except Exception as exc:  # connection, TLS: whatever the client raises, the apiserver was not reached
        report.error("kube.kubeconfig", f"the apiserver cannot be reached: {type(exc).__name__}: {shorten(str(exc))}")
        return
    finally:
        await client.close()
    user = review.get("status", {}).get("userInfo", {})
    name, groups = str(user.get("username", "")), list(user.get("groups") or [])
    wanted = f"system:node:{config.node.name}"
    if name == wanted and NODES_GROUP in groups:
        report.ok("kube.kubeconfig", f"the apiserver knows the vk as {name} (the node identity)")
    elif name.startswith("system:node:"):
        report.error("kube.kubeconfig", f"the apiserver knows the vk as {name}, the identity of another node "
                                        f"than node.name {config.node.name}: the Node authorizer refuses it")
    else:
        report.warning("kube.kubeconfig", f"the apiserver knows the vk as {name} (groups {', '.join(groups)}), "
                                          f"not as the node identity {wanted}: it needs the RBAC of docs/vk.md")


def _kube_problem(exc: ConfigError) -> str:
    """make_client's message without its own naming of the key (the finding names it)."""
    return str(exc).removeprefix("kube.kubeconfig (or $KUBECONFIG, or the in-cluster account): ")
