# ruff: noqa: F811 - the `chain` fixture is imported and then named as a parameter
"""Who may read logs from the vk's kubelet endpoint (issue 9, item 1): the full chain, with the endpoint
authenticating by the stand-in's CA and TokenReview and authorising by SubjectAccessReview. Only the apiserver's
own kubelet client and users granted `nodes/proxy` get a pod's log; nobody gets in without credentials."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.harness.pods import NODE, pod_manifest
from tests.harness.services import VkProcess, node_kubeconfig, vk_config
from tests.harness.waiting import wait_until
from tests.integration.vk_harness import Chain

pytestmark = pytest.mark.timeout(120)
POD = "auth-logs"
LOGS = f"/containerLogs/default/{POD}/main"


@pytest.fixture(scope="module")
def logged(chain: Chain) -> Chain:
    """A finished pod whose log is known."""
    chain.apply(pod_manifest(POD, "echo secret line"))
    chain.wait_phase(POD, ("Succeeded",))
    return chain


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def csr_client_certificate(chain: Chain, user: str, workdir: Path) -> tuple[Path, Path]:
    """A client certificate as any user can get one: a kube-apiserver-client CSR, approved, signed by the
    cluster CA (the way the issue was reproduced on a real cluster)."""
    key = ec.generate_private_key(ec.SECP256R1())
    request = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user)])).sign(key, hashes.SHA256()))
    name = f"user-{user}"
    chain.standin.create("certificatesigningrequests", {
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
        "spec": {"request": base64.b64encode(request.public_bytes(serialization.Encoding.PEM)).decode(),
                 "signerName": "kubernetes.io/kube-apiserver-client", "usages": ["client auth"],
                 "expirationSeconds": int(dt.timedelta(hours=1).total_seconds())}}, group="certificates.k8s.io")
    issued = chain.standin.approve_csr(name)["status"]["certificate"]
    cert, key_path = workdir / f"{user}.crt", workdir / f"{user}.key"
    cert.write_bytes(base64.b64decode(issued))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert, key_path


def test_no_credentials_is_401_but_healthz_stays_open(logged: Chain) -> None:
    for path in (LOGS, "/runningpods/", "/metrics", "/exec/default/auth-logs/main"):
        answer = logged.vk.get(path, client=None)
        assert (answer.status_code, answer.text) == (401, "Unauthorized"), path
    assert logged.vk.get("/healthz", client=None).status_code == 200  # probes reach it without credentials
    # an encoded "/../" is decoded before routing: refused, whoever asks
    assert logged.vk.get("/healthz%2F..%2Fmetrics").status_code == 400


def test_a_cluster_certificate_of_an_unprivileged_user_is_403(logged: Chain, tmp_path: Path) -> None:
    someone = csr_client_certificate(logged, "someone", tmp_path)
    answer = logged.vk.get(LOGS, client=someone)
    assert answer.status_code == 403
    assert answer.text == "Forbidden (user=someone, verb=get, resource=nodes, subresource=proxy)"
    assert "secret line" not in answer.text
    assert logged.vk.get("/runningpods/", client=someone).status_code == 403


def test_a_bearer_token_without_nodes_proxy_is_403_and_a_bad_one_401(logged: Chain) -> None:
    logged.standin.add_user_token("tok-dora", "dora", ("developers",))
    logged.standin.grant("user:dora", ("get",), ("pods", "pods/log"))  # pods/log at the apiserver is not nodes/proxy
    answer = logged.vk.get(LOGS, headers=_bearer("tok-dora"), client=None)
    assert (answer.status_code, answer.text) == (403, "Forbidden (user=dora, verb=get, resource=nodes, "
                                                      "subresource=proxy)")
    assert logged.vk.get(LOGS, headers=_bearer("not-a-token"), client=None).status_code == 401


def test_the_apiservers_kubelet_client_reads_logs(logged: Chain) -> None:
    # kubectl → stand-in pods/log → the vk, with the stand-in's kubelet-client certificate (CN
    # kube-apiserver-kubelet-client, bound to system:kubelet-api-admin).
    assert logged.kubectl("logs", POD).stdout == "secret line\n"
    assert logged.vk.get(LOGS).text == "secret line\n"  # the same certificate, directly
    assert logged.vk.get("/metrics").status_code == 200


def test_users_granted_the_subresource_read_what_it_covers(logged: Chain, tmp_path: Path) -> None:
    logged.standin.add_user_token("tok-erin", "erin")
    logged.standin.grant("user:erin", ("get",), ("nodes/proxy",))
    answer = logged.vk.get(LOGS, headers=_bearer("tok-erin"), client=None)
    assert (answer.status_code, answer.text) == (200, "secret line\n")

    frank = csr_client_certificate(logged, "frank", tmp_path)
    logged.standin.grant("user:frank", ("get",), ("nodes/proxy",), names=("another-node",))  # not this node
    logged.standin.grant("user:frank", ("get",), ("nodes/pods",), names=(NODE,))
    pods = logged.vk.get("/runningpods/", client=frank)
    assert pods.status_code == 200 and pods.json()["kind"] == "PodList"  # nodes/pods covers the pod list ...
    assert logged.vk.get(LOGS, client=frank).status_code == 403  # ... and not the logs
    assert logged.vk.get("/metrics", client=frank).status_code == 403


@pytest.fixture
def strict_vk(chain: Chain, tmp_path: Path) -> Iterator[VkProcess]:
    """A second node whose /healthz is authenticated too and whose anonymous callers are system:anonymous."""
    name = "slurmlink-auth-node"
    config = vk_config(chain.standin, node_kubeconfig(chain.standin, tmp_path / "kubeconfig", name), chain.api.url)
    config["node"]["name"] = name
    config["kubelet"].update(authenticate_healthz=True,
                             authorization={"cache_unauthorized_ttl_seconds": 0})
    config["kubelet"]["authentication"]["anonymous"] = {"enabled": True}
    vk = VkProcess(config, tmp_path, chain.standin.kubelet_client_cert)
    vk.start()
    try:
        yield vk
    finally:
        vk.stop()


def test_healthz_is_authorised_when_configured_and_anonymous_is_a_user(chain: Chain, strict_vk: VkProcess) -> None:
    assert strict_vk.get("/healthz").status_code == 200  # the apiserver's client may
    refused = strict_vk.get("/healthz", client=None)
    assert (refused.status_code, refused.text) == (403, "Forbidden (user=system:anonymous, verb=get, "
                                                        "resource=nodes, subresource=healthz)")
    chain.standin.grant("group:system:unauthenticated", ("get",), ("nodes/healthz",))
    assert wait_until(lambda: strict_vk.get("/healthz", client=None).status_code == 200, 10,
                      "anonymous /healthz to be allowed")
    assert strict_vk.get(LOGS, client=None).status_code == 403  # healthz only


def test_the_vk_counts_its_refusals(logged: Chain) -> None:
    assert logged.vk.get(LOGS, client=None).status_code == 401
    assert logged.vk.metric("slurmlink_vk_kubelet_refused_total", code="401") >= 1
