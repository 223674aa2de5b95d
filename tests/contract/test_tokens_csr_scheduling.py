"""What a kubelet needs beyond pods: TokenRequest for projected volumes, CSRs for its serving certificate, and
the scheduler that hands it pods."""

from __future__ import annotations

import base64
import datetime as dt
import os
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lightkube import Client
from lightkube.resources.core_v1 import Pod

from standins.kube import KubeStandin
from tests.contract.cluster import KUBECTL, Cluster, ContractNode, pod_body
from tests.harness.waiting import wait_until


def _token_request(pod: Pod, audiences: list[str] | None, seconds: int = 600) -> dict:
    spec: dict = {"expirationSeconds": seconds, "boundObjectRef": {
        "kind": "Pod", "apiVersion": "v1", "name": pod.metadata.name, "uid": pod.metadata.uid}}
    if audiences is not None:
        spec["audiences"] = audiences
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}


def test_token_request_bound_to_a_pod(cluster: Cluster, kube: Client, ns: str, node: ContractNode) -> None:
    pod = kube.create(Pod.from_dict(pod_body("tokened", node=node.name)), namespace=ns)
    path = f"/api/v1/namespaces/{ns}/serviceaccounts/default/token"
    with cluster.raw() as http:
        answer = http.post(path, json=_token_request(pod, None))  # no audience: the apiserver's own
        assert answer.status_code == 201, answer.text
        status = answer.json()["status"]
        expires = dt.datetime.fromisoformat(status["expirationTimestamp"].replace("Z", "+00:00"))
        assert 500 < (expires - dt.datetime.now(dt.UTC)).total_seconds() <= 700
        assert http.post(path, json=_token_request(pod, None, seconds=60)).status_code == 422
        elsewhere = http.post(path, json=_token_request(pod, ["slurmlink-contract"]))
        assert elsewhere.status_code == 201, elsewhere.text
        assert elsewhere.json()["spec"]["audiences"] == ["slurmlink-contract"]
    with cluster.raw(token=status["token"]) as as_account:
        # Authenticated (the real one may then forbid it: RBAC); never 401.
        assert as_account.get(f"/api/v1/namespaces/{ns}/pods").status_code in (200, 403)
    with cluster.raw(token=elsewhere.json()["status"]["token"]) as as_account:
        # A token for another audience is for that service to verify: the apiserver does not accept it.
        assert as_account.get(f"/api/v1/namespaces/{ns}/pods").status_code == 401


def _csr_pem(common_name: str) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    request = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])).sign(key, hashes.SHA256())
    return request.public_bytes(serialization.Encoding.PEM), key


def test_csr_approved_and_signed(cluster: Cluster, tmp_path: Path) -> None:
    name = f"contract-csr-{dt.datetime.now().strftime('%H%M%S%f')}"
    pem, key = _csr_pem("contract-user")
    body = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
            "spec": {"request": base64.b64encode(pem).decode(), "signerName": "kubernetes.io/kube-apiserver-client",
                     "usages": ["client auth"], "expirationSeconds": 3600}}
    path = f"/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}"
    with cluster.raw() as http:
        created = http.post("/apis/certificates.k8s.io/v1/certificatesigningrequests", json=body)
        assert created.status_code == 201, created.text
        assert created.json()["spec"]["username"]  # the requester, as the server authenticated it
        csr = created.json()
        csr.setdefault("status", {})["conditions"] = [{"type": "Approved", "status": "True",
                                                       "reason": "ContractApproval", "message": "contract test"}]
        approved = http.put(f"{path}/approval", json=csr)
        assert approved.status_code == 200, approved.text
        signed = wait_until(lambda: http.get(path).json().get("status", {}).get("certificate"), 10,
                            "the signer to issue the certificate", 0.05)
        http.delete(path)
    certificate = x509.load_pem_x509_certificate(base64.b64decode(signed))
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "contract-user"
    assert certificate.public_key() == key.public_key()
    cert_file, key_file = tmp_path / "user.crt", tmp_path / "user.key"
    cert_file.write_bytes(base64.b64decode(signed))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    with cluster.raw(cert=(str(cert_file), str(key_file))) as as_user:
        # The issued certificate authenticates (authorization may still refuse: 403), never 401.
        assert as_user.get("/api/v1/namespaces/default/pods").status_code in (200, 403)


def test_kubectl_with_a_client_certificate(standin: KubeStandin, tmp_path: Path) -> None:
    config = standin.write_kubeconfig(tmp_path / "cert-kubeconfig", user="cert")
    env = {**os.environ, "KUBECONFIG": str(config), "KUBECACHEDIR": str(tmp_path / "cache")}
    result = subprocess.run([str(KUBECTL), "get", "namespace", "default", "-o", "name"], capture_output=True,
                            text=True, env=env, timeout=30)
    assert result.stdout.strip() == "namespace/default", result.stderr


def test_scheduler_binds_to_a_ready_matching_node(kube: Client, ns: str, node: ContractNode) -> None:
    body = pod_body("scheduled", nodeSelector={"slurmlink.io/contract-node": node.name})
    kube.create(Pod.from_dict(body), namespace=ns)
    bound = wait_until(lambda: kube.get(Pod, "scheduled", namespace=ns).spec.nodeName, 10, "the pod to be bound", 0.05)
    assert bound == node.name
    pod = kube.get(Pod, "scheduled", namespace=ns)
    assert any(c.type == "PodScheduled" and c.status == "True" for c in pod.status.conditions)


def test_scheduler_leaves_a_pod_without_toleration_pending(kube: Client, ns: str, node: ContractNode) -> None:
    body = pod_body("untolerated", tolerate=False, nodeSelector={"slurmlink.io/contract-node": node.name})
    kube.create(Pod.from_dict(body), namespace=ns)

    def unschedulable() -> bool:
        conditions = kube.get(Pod, "untolerated", namespace=ns).status.conditions or []
        return any(c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"
                   for c in conditions)
    wait_until(unschedulable, 10, "the PodScheduled=False condition", 0.05)
    assert kube.get(Pod, "untolerated", namespace=ns).spec.nodeName is None
