"""KubeStandin: start the stand-in on a free loopback port (uvicorn in a thread), write a kubeconfig, steer it."""

from __future__ import annotations

import base64
import copy
import socket
import ssl
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml

from slurmlink.streams.upgrade import UpgradableH11

from . import csr as csrs
from .app import Services, build_app
from .auth import AUTHENTICATED, Authenticator
from .endpointslices import EndpointSliceController
from .faults import Faults
from .gc import POD_GC_QUARANTINE, GarbageCollector
from .logs import KubeletClient
from .pki import CertificateAuthority
from .rbac import Grants, cluster_defaults
from .registry import Caller, Registry
from .resources import by_kind, lookup
from .scheduler import Scheduler
from .store import Store
from .tokens import TokenIssuer

ADMIN = Caller("kubernetes-admin", ("system:masters", AUTHENTICATED))
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class _PeerCertProtocol(UpgradableH11):
    """uvicorn's HTTP/1.1 protocol (able to relay an SPDY upgrade to a kubelet), plus the verified client
    certificate in each request's scope state."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        peer = ssl_object.getpeercert() if ssl_object is not None else None
        self.app_state = {**self.app_state, "peer_cert": peer or None}


class KubeStandin:
    """The apiserver stand-in. `with KubeStandin() as kube:` starts it; `kube.kubeconfig` is ready to use."""

    def __init__(self, workdir: Path | None = None, *, tls: bool = True, host: str = "127.0.0.1", port: int = 0,
                 admin_token: str = "standin-admin-token",  # noqa: S107 (a test-only token)
                 scheduler: bool = True, history_limit: int = 500, bookmark_interval: float = 10.0,
                 kubelet_ca: Path | None = None, pod_gc_quarantine: float | None = POD_GC_QUARANTINE) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="kube-standin-") if workdir is None else None
        self.workdir: Path = Path(self._tmp.name) if self._tmp is not None else workdir  # type: ignore[assignment]
        self.tls, self.host, self._port = tls, host, port
        self.admin_token = admin_token
        self.ca = CertificateAuthority()
        self.store = Store(history_limit=history_limit)
        self.registry = Registry(self.store, self.ca)
        self.faults = Faults()
        self.issuer = TokenIssuer()
        pki = self.workdir / "pki"
        self.ca_path, _ = self.ca.write(pki, "ca")
        # The apiserver's own client identity towards kubelets (--kubelet-client-certificate).
        kubelet_client = self.ca.issue_client("kube-apiserver-kubelet-client", ("kubeadm:cluster-admins",))
        cert, key = self.ca.write(pki, "apiserver-kubelet-client", kubelet_client)
        assert key is not None
        self.kubelet_client_cert = (cert, key)
        self.grants = cluster_defaults(Grants())
        self.authenticator = Authenticator(self.store, self.issuer, {admin_token: ADMIN})
        self.scheduler = Scheduler(self.registry)
        self.scheduler.enabled = scheduler
        self.gc = GarbageCollector(self.registry, pod_gc_quarantine)
        self._services = Services(
            registry=self.registry, issuer=self.issuer, faults=self.faults, scheduler=self.scheduler,
            authenticator=self.authenticator, grants=self.grants,
            kubelet=KubeletClient(cert, key, kubelet_ca), address="", bookmark_interval=bookmark_interval,
            gc=self.gc, endpoint_slices=EndpointSliceController(self.registry))
        self.audit = self._services.audit  # every authenticated request's RBAC attributes (audit.py)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        for namespace in SYSTEM_NAMESPACES:
            self.registry.create(by_kind("Namespace"), "", {"metadata": {"name": namespace}}, ADMIN)

    # --- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> KubeStandin:
        # IPPROTO_TCP so asyncio sets TCP_NODELAY: watch lines must not sit in Nagle's buffer.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        self.port = sock.getsockname()[1]
        self._services.address = f"{self.host}:{self.port}"
        options: dict[str, Any] = {}
        if self.tls:
            serving = self.ca.issue_server([self.host, "localhost", "kubernetes", "kubernetes.default.svc"])
            cert, key = self.ca.write(self.workdir / "pki", "apiserver", serving)
            # Client certificates are optional (tokens work too) but must chain to our CA when sent.
            options = {"ssl_certfile": str(cert), "ssl_keyfile": str(key), "ssl_ca_certs": str(self.ca_path),
                       "ssl_cert_reqs": ssl.CERT_OPTIONAL}
        config = uvicorn.Config(build_app(self._services), log_level="warning", access_log=False,
                                http=_PeerCertProtocol, lifespan="on", timeout_graceful_shutdown=1, **options)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True,
                                        name="kube-standin")
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the Kubernetes stand-in did not start")
            time.sleep(0.02)
        self._socket = sock
        self.write_kubeconfig(self.kubeconfig)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self.faults.clear()
            self.store.end_watches("close")  # open watches would hold the graceful shutdown
            self._server.should_exit = True
            if self._thread is not None:
                self._thread.join(timeout=10)
            self._socket.close()
            self._server = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> KubeStandin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- how to reach it ---------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    def issue_client_cert(self, user: str, groups: tuple[str, ...] = ()) -> tuple[Path, Path]:
        """A client certificate our CA signed (CN=user, O=groups), e.g. `system:node:<name>` for a node."""
        cert, key = self.ca.write(self.workdir / "pki", f"client-{user.replace(':', '_')}",
                                  self.ca.issue_client(user, groups))
        assert key is not None
        return cert, key

    def add_user_token(self, token: str, user: str, groups: tuple[str, ...] = ()) -> None:
        """A static bearer token (as --token-auth-file) for `user`; it passes TokenReviews too."""
        self.authenticator.tokens[token] = Caller(user, (*groups, AUTHENTICATED))

    def grant(self, subject: str, verbs: tuple[str, ...], resources: tuple[str, ...], api_group: str = "",
              names: tuple[str, ...] = ()) -> None:
        """An RBAC-like grant that SubjectAccessReviews see: `grant("user:ann", ("get",), ("nodes/proxy",))`."""
        self.grants.grant(subject, verbs, resources, api_group, names)

    def write_kubeconfig(self, path: Path, *, user: str = "token", namespace: str = "default") -> Path:
        """A kubeconfig with contexts `standin` (bearer token) and `standin-cert` (client cert); `user` picks."""
        cluster: dict[str, Any] = {"server": self.url}
        if self.tls:
            cluster["certificate-authority-data"] = base64.b64encode(self.ca.cert_pem).decode()
        admin = self.ca.issue_client(ADMIN.user, ("system:masters",))
        config = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "standin", "cluster": cluster}],
            "users": [{"name": "admin-token", "user": {"token": self.admin_token}},
                      {"name": "admin-cert", "user": {
                          "client-certificate-data": base64.b64encode(admin.cert_pem).decode(),
                          "client-key-data": base64.b64encode(admin.key_pem).decode()}}],
            "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "admin-token",
                                                         "namespace": namespace}},
                         {"name": "standin-cert", "context": {"cluster": "standin", "user": "admin-cert",
                                                              "namespace": namespace}}],
            "current-context": "standin" if user == "token" else "standin-cert",
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    def client(self) -> httpx.Client:
        """A plain HTTP client with admin rights, for tests that want to see raw answers."""
        verify: Any = ssl.create_default_context(cafile=str(self.ca_path)) if self.tls else False
        return httpx.Client(base_url=self.url, verify=verify,
                            headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=10)

    # --- steering (tests call these directly; all thread-safe) -------------------------------------------------
    def drop_watches(self, abrupt: bool = False) -> int:
        """End every open watch: cleanly (as on timeout) or by cutting the connection mid-stream."""
        return self.store.end_watches("abort" if abrupt else "close")

    def expire_next_watches(self, count: int = 1, resource: str | None = None) -> None:
        """The next `count` watch requests (of `resource`, e.g. "pods", or of any) answer 410 Expired, whatever
        resourceVersion they ask from."""
        self.faults.expire_next_watches(count, resource)

    def compact(self) -> None:
        """Forget the change history (an etcd compaction): watches from any older resourceVersion get 410."""
        self.store.compact()

    @property
    def latency(self) -> float:
        return self.faults.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self.faults.latency = seconds

    def get(self, plural: str, name: str, namespace: str = "", group: str = "") -> dict[str, Any] | None:
        rtype = lookup(group, "v1", plural)
        assert rtype is not None, plural
        obj = self.store.get(rtype.store_key, namespace, name)
        return None if obj is None else self.registry.present(rtype, obj)

    def create(self, plural: str, body: dict[str, Any], namespace: str = "", group: str = "") -> dict[str, Any]:
        rtype = lookup(group, "v1", plural)
        assert rtype is not None, plural
        return self.registry.create(rtype, namespace, copy.deepcopy(body), ADMIN)

    def approve_csr(self, name: str) -> dict[str, Any]:
        """Approve a CertificateSigningRequest and, for the built-in signers, issue its certificate."""
        rtype = by_kind("CertificateSigningRequest", "certificates.k8s.io")
        for _attempt in range(5):
            current = self.registry.current(rtype, "", name)
            updated = copy.deepcopy(current)
            conditions = updated.setdefault("status", {}).setdefault("conditions", [])
            if not any(c.get("type") == "Approved" for c in conditions):
                conditions.append(csrs.approval_condition())
            csrs.sign_if_approved(updated, self.ca)
            if self.store.replace(rtype.store_key, updated, current["metadata"]["resourceVersion"]) is not None:
                return self.registry.present(rtype, updated)
        raise RuntimeError(f"could not approve CSR {name}")

    def set_scheduling(self, enabled: bool) -> None:
        self.scheduler.enabled = enabled
