"""Pure parts of the serving certificate requested through a CertificateSigningRequest: the request and the
CSR object, reading a CSR's status, checking what was issued, and when to renew."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from dataclasses import dataclass
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from slurmlink.vk.tls import PrivateKey, general_name

Obj = dict[str, Any]
SIGNER = "kubernetes.io/kubelet-serving"
# Exactly what the kubelet-serving signer accepts (kube-controller-manager refuses any other usage).
USAGES = ["digital signature", "key encipherment", "server auth"]
NODES_GROUP = "system:nodes"
MIN_RENEW_PAUSE = 60.0  # seconds; a signer that hands out certificates already due for renewal is not hammered


def serving_hosts(internal_ip: str, hostname: str | None) -> list[str]:
    """The SANs: the address the apiserver dials, and the node's host name if one is configured."""
    return list(dict.fromkeys([internal_ip, *([hostname] if hostname else [])]))


def subject(node: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, NODES_GROUP),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node}")])


def request_pem(key: PrivateKey, node: str, hosts: list[str]) -> bytes:
    """The PKCS#10 request: the node's identity as subject, `hosts` as IP or DNS SANs."""
    request = (x509.CertificateSigningRequestBuilder().subject_name(subject(node))
               .add_extension(x509.SubjectAlternativeName([general_name(h) for h in hosts]), critical=False)
               .sign(key, hashes.SHA256()))
    return request.public_bytes(serialization.Encoding.PEM)


def csr_object(node: str, request: bytes, expiration_seconds: int | None = None) -> Obj:
    """The certificates.k8s.io/v1 CertificateSigningRequest; the apiserver fills in the requester."""
    spec: Obj = {"request": base64.b64encode(request).decode(), "signerName": SIGNER, "usages": list(USAGES)}
    if expiration_seconds:
        spec["expirationSeconds"] = expiration_seconds
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"generateName": f"{node}-serving-"}, "spec": spec}


@dataclass(frozen=True)
class CsrState:
    phase: Literal["pending", "issued", "denied", "failed"]
    detail: str = ""
    certificate: bytes = b""


def read_status(csr: Obj) -> CsrState:
    """Where a CSR stands. Denied and Failed are final; Approved without a certificate is still pending
    (the signer has not issued yet)."""
    status = csr.get("status") or {}
    for condition in status.get("conditions") or []:
        kind = condition.get("type")
        if kind in ("Denied", "Failed") and condition.get("status", "True") == "True":
            reason = condition.get("reason") or kind
            detail = f"{reason}: {condition['message']}" if condition.get("message") else reason
            return CsrState("denied" if kind == "Denied" else "failed", detail)
    if status.get("certificate"):
        try:
            return CsrState("issued", certificate=base64.b64decode(status["certificate"], validate=True))
        except ValueError:
            return CsrState("failed", "status.certificate is not base64")
    approved = any(c.get("type") == "Approved" for c in status.get("conditions") or [])
    return CsrState("pending", "approved, waiting for the signer" if approved else "waiting for approval")


def _sans(cert: x509.Certificate) -> set[str]:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(n) for n in names.get_values_for_type(x509.IPAddress)} | \
        set(names.get_values_for_type(x509.DNSName))


def problem_with(cert: x509.Certificate, key: PrivateKey, node: str, hosts: list[str], now: dt.datetime) -> str:
    """Why `cert` cannot serve for this node with this key (an empty string: it can)."""
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(serialization.Encoding.DER, public) != \
            key.public_key().public_bytes(serialization.Encoding.DER, public):
        return "it is not for our private key"
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names or names[0].value != f"system:node:{node}":
        return f"its subject is {cert.subject.rfc4514_string()}, not system:node:{node}"
    wanted = {str(ipaddress.ip_address(h)) if _is_ip(h) else h for h in hosts}
    missing = wanted - _sans(cert)
    if missing:
        return f"it lacks the SANs {sorted(missing)}"
    if cert.not_valid_after_utc <= now:
        return f"it expired at {cert.not_valid_after_utc.isoformat()}"
    return ""


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def renewal_at(cert: x509.Certificate, fraction: float) -> dt.datetime:
    """When `fraction` of the certificate's lifetime has passed (the kubelet renews at 70–90 %)."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return start + (end - start) * fraction


def renewal_delay(not_before: dt.datetime, not_after: dt.datetime, now: dt.datetime, fraction: float,
                  min_pause: float = MIN_RENEW_PAUSE) -> float:
    """Seconds until a new certificate should be asked for. Already due: at once, except that a certificate
    with time left waits up to `min_pause` (never a CSR loop against a signer issuing short certificates)."""
    due = (not_before + (not_after - not_before) * fraction - now).total_seconds()
    if due > 0:
        return due
    remaining = max((not_after - now).total_seconds(), 0.0)
    return min(min_pause, remaining / 2)


def is_self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject
