"""CertificateSigningRequests: the requester recorded on create, and the built-in signers issuing on approval."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from .errors import invalid
from .pki import CertificateAuthority
from .timefmt import format_time, now

# The signers kube-controller-manager's csrsigning controller serves with the cluster CA.
BUILT_IN_SIGNERS = ("kubernetes.io/kubelet-serving", "kubernetes.io/kube-apiserver-client",
                    "kubernetes.io/kube-apiserver-client-kubelet")


def prepare_new(csr: dict[str, Any], user: str, groups: tuple[str, ...]) -> None:
    spec = csr.setdefault("spec", {})
    if not spec.get("request") or not spec.get("signerName"):
        raise invalid("CertificateSigningRequest", "certificates.k8s.io", csr["metadata"].get("name", ""),
                      [("spec.request" if not spec.get("request") else "spec.signerName", "Required value")])
    spec.setdefault("usages", ["digital signature", "key encipherment"])
    # The real apiserver overwrites the requester fields with the authenticated identity.
    spec["username"], spec["groups"] = user, list(groups)
    csr["status"] = {}


def _condition(csr: dict[str, Any], kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status", "True") == "True"
               for c in (csr.get("status") or {}).get("conditions") or [])


def approval_condition(reason: str = "ApprovedByTest", message: str = "approved by a test") -> dict[str, Any]:
    stamp = format_time(now())
    return {"type": "Approved", "status": "True", "reason": reason, "message": message,
            "lastUpdateTime": stamp, "lastTransitionTime": stamp}


def sign_if_approved(csr: dict[str, Any], ca: CertificateAuthority) -> None:
    """Issue the certificate for an approved, unsigned CSR of a built-in signer (what csrsigning does)."""
    spec, status = csr.get("spec") or {}, csr.setdefault("status", {})
    if status.get("certificate") or not _condition(csr, "Approved") or _condition(csr, "Denied"):
        return
    if spec.get("signerName") not in BUILT_IN_SIGNERS:
        return
    lifetime = dt.timedelta(seconds=spec.get("expirationSeconds") or 24 * 3600)
    pem = ca.sign_csr(base64.b64decode(spec["request"]), spec.get("usages") or [], lifetime)
    status["certificate"] = base64.b64encode(pem).decode()
