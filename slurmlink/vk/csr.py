"""`kubelet.tls: csr`: the serving certificate comes from the cluster's `kubernetes.io/kubelet-serving` signer.

A fresh key, a CSR, then wait for an approver (on a real cluster an admin or an approver controller: nothing
approves kubelet-serving CSRs by default) and the signer. Until then the endpoint serves a self-signed
certificate, so /healthz answers and the node condition says what is awaited. The certificate is renewed by a
new CSR once `renew_fraction` of its lifetime has passed and swapped into the running server.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lightkube import AsyncClient

from slurmlink.core.errors import SlurmlinkError
from slurmlink.vk import csrspec
from slurmlink.vk.config import CsrConfig
from slurmlink.vk.kube import Obj, raw, status_code
from slurmlink.vk.tls import PrivateKey, ServingContext, key_pem, new_key, pem_blocks, write_private

log = logging.getLogger(__name__)
CONDITION = "KubeletServingCertificate"
CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
POLL_SECONDS = 2.0
REMIND_SECONDS = 300.0  # how often a long wait for approval is logged again
RETRY_PAUSES = (10.0, 600.0)  # first and longest pause before a new CSR after one failed


class CsrApi(Protocol):
    async def create(self, body: Obj) -> Obj: ...
    async def get(self, name: str) -> Obj: ...


class KubeCsrApi:
    """CSRs through the vk's Kubernetes client (a node may create, get, list and watch CSRs)."""

    def __init__(self, kube: AsyncClient) -> None:
        self.kube = kube

    async def create(self, body: Obj) -> Obj:
        return await raw(self.kube, "POST", CSR_PATH, body)

    async def get(self, name: str) -> Obj:
        return await raw(self.kube, "GET", f"{CSR_PATH}/{name}")


class CsrRefused(SlurmlinkError):
    """The CSR will not give a certificate: denied, failed, deleted, not approved in time, or unusable."""


Report = Callable[[str, str, str], None]  # (status, reason, message) of the node condition


class ServingCertificates:
    def __init__(self, node: str, hosts: list[str], config: CsrConfig, api: CsrApi, serving: ServingContext,
                 report: Report) -> None:
        self.node, self.hosts, self.config = node, hosts, config
        self.api, self.serving, self.report = api, serving, report
        self.issued: x509.Certificate | None = None  # the signer's certificate being served, if any
        self.requests = 0  # CSRs created (for tests and logs)

    # --- the state file -------------------------------------------------------------------------------------
    def restore(self) -> bool:
        """Serve the certificate of the state file if it still fits this node; True if it does."""
        if not self.config.state_file or not Path(self.config.state_file).exists():
            return False
        path = Path(self.config.state_file)
        try:
            blocks = pem_blocks(path.read_bytes())
            key = serialization.load_pem_private_key(blocks["PRIVATE KEY"], None)
            cert = x509.load_pem_x509_certificate(blocks["CERTIFICATE"])
        except (KeyError, ValueError, TypeError) as exc:
            log.warning("serving certificate: cannot read %s (%s); asking for a new one", path, exc)
            return False
        if not isinstance(key, PrivateKey):
            log.warning("serving certificate: %s holds a key of another type; asking for a new one", path)
            return False
        problem = csrspec.problem_with(cert, key, self.node, self.hosts, dt.datetime.now(dt.UTC))
        if problem:
            log.info("serving certificate: the one in %s does not fit (%s); asking for a new one", path, problem)
            return False
        self._serve(cert, key, f"from {path}")
        return True

    def _save(self, cert: x509.Certificate, key: PrivateKey) -> None:
        if self.config.state_file:
            write_private(Path(self.config.state_file), key_pem(key) + cert.public_bytes(serialization.Encoding.PEM))

    # --- serving --------------------------------------------------------------------------------------------
    def _serve(self, cert: x509.Certificate, key: PrivateKey, origin: str) -> None:
        self.serving.install(cert.public_bytes(serialization.Encoding.PEM), key_pem(key))
        self.issued = cert
        renew = csrspec.renewal_at(cert, self.config.renew_fraction)
        message = (f"serving the certificate {origin}, issued by {cert.issuer.rfc4514_string()}, valid until "
                   f"{cert.not_valid_after_utc.isoformat()}; renewal from {renew.isoformat()}")
        log.info("serving certificate: %s", message)
        self.report("True", "Issued", message)

    def _say(self, reason: str, message: str) -> None:
        """Report a wait or a failure: the condition stays True while a signer's certificate is still valid."""
        if self.issued is None:
            self.report("False", reason, message + "; serving a self-signed certificate meanwhile")
            return
        until = self.issued.not_valid_after_utc
        if until <= dt.datetime.now(dt.UTC):
            self.report("False", reason, f"{message}; the served certificate expired at {until.isoformat()}")
        else:
            self.report("True", f"Renewal{reason}", f"{message}; the served certificate is valid until "
                                                    f"{until.isoformat()}")

    # --- asking ---------------------------------------------------------------------------------------------
    async def obtain(self) -> None:
        """Ask until a certificate is issued and served; the current one keeps being served meanwhile."""
        pause = RETRY_PAUSES[0]
        while True:
            key = new_key()
            try:
                cert = await self._request(key)
            except CsrRefused as exc:
                problem = str(exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the apiserver is away or refuses: try again later
                code = status_code(exc)
                problem = f"cannot create or read the CSR ({f'HTTP {code}: ' if code else ''}{exc})"
                if code == 403:
                    problem += " — the node's identity needs create and get on certificatesigningrequests"
            else:
                self._save(cert, key)
                self._serve(cert, key, "from the cluster's signer")
                return
            log.warning("serving certificate: %s; a new CSR in %.0fs", problem, pause)
            self._say("Failed", f"{problem}; a new CSR follows")
            await asyncio.sleep(pause)
            pause = min(pause * 2, RETRY_PAUSES[1])

    async def _request(self, key: PrivateKey) -> x509.Certificate:
        body = csrspec.csr_object(self.node, csrspec.request_pem(key, self.node, self.hosts),
                                  self.config.expiration_seconds)
        created = await self.api.create(body)
        self.requests += 1
        name = str(created["metadata"]["name"])
        waiting = (f"CSR {name} (signer {csrspec.SIGNER}) awaits approval by an admin or an approver "
                   f"(kubectl certificate approve {name})")
        log.warning("serving certificate: %s", waiting)
        self._say("WaitingForApproval", waiting)
        state = await self._wait(name, waiting)
        cert = x509.load_pem_x509_certificate(state.certificate)
        problem = csrspec.problem_with(cert, key, self.node, self.hosts, dt.datetime.now(dt.UTC))
        if problem:
            raise CsrRefused(f"CSR {name} was signed, but the certificate is unusable: {problem}")
        return cert

    async def _wait(self, name: str, waiting: str) -> csrspec.CsrState:
        started = reminded = time.monotonic()
        while True:
            try:
                state = csrspec.read_status(await self.api.get(name))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if status_code(exc) == 404:
                    raise CsrRefused(f"CSR {name} was deleted before it was signed") from None
                log.warning("serving certificate: cannot read CSR %s: %s", name, exc)
                state = csrspec.CsrState("pending")
            if state.phase == "issued":
                return state
            if state.phase != "pending":
                raise CsrRefused(f"CSR {name} {state.phase}: {state.detail}")
            now = time.monotonic()
            if now - started > self.config.approval_timeout_seconds:
                raise CsrRefused(f"CSR {name} was not signed within {self.config.approval_timeout_seconds:.0f}s")
            if now - reminded > REMIND_SECONDS:
                log.warning("serving certificate: still %s", waiting)
                reminded = now
            await asyncio.sleep(POLL_SECONDS)

    async def run(self) -> None:
        """Obtain a certificate (unless one was restored), then renew it whenever it is due."""
        if self.issued is None:
            self.report("False", "Requesting", "serving a self-signed certificate until the cluster's signer "
                                               "issues one")
            await self.obtain()
        while True:
            assert self.issued is not None
            delay = csrspec.renewal_delay(self.issued.not_valid_before_utc, self.issued.not_valid_after_utc,
                                          dt.datetime.now(dt.UTC), self.config.renew_fraction)
            await asyncio.sleep(delay)
            log.info("serving certificate: renewing (valid until %s)", self.issued.not_valid_after_utc.isoformat())
            await self.obtain()
