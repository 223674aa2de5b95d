"""Configuration of `slurmlink vk` (see docs/vk.md and slurmlink/examples/vk.yaml)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from slurmlink.config import AbsolutePath, AdminListen, Strict

UPSTREAM_TAINT_KEY = "virtual-node.interlink/no-schedule"
CSR_STATE_FILE = "kubelet-serving.pem"  # in state_dir, unless kubelet.csr.state_file is set
# Labels a node may not set on itself (NodeRestriction): refused here rather than by the apiserver at start.
_FORBIDDEN_LABEL_PREFIXES = ("node-role.kubernetes.io/", "node-restriction.kubernetes.io/")


class TaintConfig(Strict):
    key: str = Field(description="the taint's key")
    value: str = Field(default="", description="its value")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = Field(default="NoSchedule", description=(
        "its effect"))


class CapacityConfig(Strict):
    """What the node offers until the API's ping reports real numbers (Kubernetes quantities)."""

    cpu: str = Field(default="100", description="CPUs")
    memory: str = Field(default="3000Gi", description="memory")
    pods: str = Field(default="1000", description="pods at once")


class NodeConfig(Strict):
    name: str = Field(default="slurmlink", description="the Node's name (and its Lease's)")
    labels: dict[str, str] = Field(default_factory=dict, description=(
        "added to `kubernetes.io/hostname`, `kubernetes.io/os=linux`, `type=virtual-kubelet`, "
        "`virtual-node.interlink/type=virtual-kubelet`, `slurmlink.io/node`; `node-role.kubernetes.io/*` and "
        "`kubernetes.io/role` are refused (NodeRestriction)"))
    taints: list[TaintConfig] = Field(default_factory=list, description=(
        "added to `virtual-node.interlink/no-schedule=true:NoSchedule`; set **only when the node is created** "
        "(NodeRestriction forbids a node to change its own taints later: delete the Node to change them)"))
    internal_ip: str = Field(default="127.0.0.1", description=(
        "the `InternalIP` address the apiserver dials for `kubectl logs`"))
    hostname: str | None = Field(default=None, description=(
        "the node's `Hostname` address (unset: the node's name); a DNS SAN of a `csr` certificate"))
    capacity: CapacityConfig = Field(default_factory=CapacityConfig, description=(
        "what the node offers until the API's ping reports numbers (Kubernetes quantities)"))
    kubelet_version: str | None = Field(default=None, description=(
        "`status.nodeInfo.kubeletVersion`; unset: the apiserver's version (its `/version`, read once at start) "
        "with slurmlink's as semver build metadata, e.g. `v1.36.0+slurmlink.0.1.0` (the k3s form: tools and "
        "version-skew checks see a kubelet of the cluster's version); `v1.30.0+slurmlink.<version>` if "
        "`/version` cannot be read"))

    @field_validator("labels")
    @classmethod
    def _allowed_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for key in labels:
            if key.startswith(_FORBIDDEN_LABEL_PREFIXES) or key == "kubernetes.io/role":
                raise ValueError(f"label {key!r}: a node may not set it on itself (NodeRestriction)")
        return labels


class KubeConfigSection(Strict):
    kubeconfig: str | None = Field(default=None, description=(
        "the node's credentials; unset: `$KUBECONFIG`, `~/.kube/config` or the in-cluster service account"))
    context: str | None = Field(default=None, description="the kubeconfig's context; unset: its current one")
    timeout_seconds: float = Field(default=15.0, gt=0, description="per Kubernetes request")


class InterlinkApiConfig(Strict):
    url: str = Field(default="http://127.0.0.1:3000", description=(
        "the interLink API (`slurmlink api`): http(s)://host:port or unix:///path/to/api.sock"))
    token_file: str | None = Field(default=None, description=(
        "its bearer token, re-read on every call (a sidecar may rotate it)"))
    ca_file: str | None = Field(default=None, description="CA of an HTTPS API; unset: the system's")
    batch_status: bool = Field(default=True, description=(
        "one `/status` call for all pods (slurmlink's API); `false` for upstream interLink: one call per pod, "
        "at most 8 in flight"))
    timeout_seconds: float = Field(default=30.0, gt=0, description="per API call (log follows have no read timeout)")
    changes: bool = Field(default=True, description=(
        "hold slurmlink's change feed (a long poll of `/slurmlink/v1/changes`), so that a pod's status reaches "
        "Kubernetes as soon as the API knows it; the periodic `/status` round stays as the safety net. An API "
        "without the feed (upstream interLink: 404 or 405) is asked again every 5 minutes, and meanwhile only the "
        "rounds report"))
    changes_wait_seconds: float = Field(default=30.0, gt=0, le=60, description=(
        "how long one long poll of the change feed may stay open without a change (the API's limit is 60)"))
    cert_file: str | None = Field(default=None, description=(
        "a client certificate for an API that requires one (its `listen.tls.client_ca_file`)"))
    key_file: str | None = Field(default=None, description="its private key")

    @model_validator(mode="after")
    def _client_pair(self) -> InterlinkApiConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("api.cert_file and api.key_file go together")
        return self


class CsrConfig(Strict):
    """`kubelet.tls: csr`: the serving certificate is requested from the cluster's kubelet-serving signer."""

    state_file: str | None = Field(default=None, description=(
        "key and issued certificate (PEM, mode 0600), reused after a restart without a new approval; unset: "
        "`kubelet-serving.pem` in the vk's `state_dir`"))
    expiration_seconds: int | None = Field(default=None, ge=600, description=(
        "the lifetime asked of the signer; unset: the signer's default (one year on kube-controller-manager)"))
    renew_fraction: float = Field(default=0.8, gt=0, lt=1, description=(
        "a new CSR once this part of the certificate's lifetime has passed"))
    approval_timeout_seconds: float = Field(default=900.0, gt=0, description=(
        "a CSR not signed by then is given up and a new one made"))


TlsMode = Literal["files", "self-signed", "csr"]


class X509AuthConfig(Strict):
    client_ca_file: str | None = Field(default=None, description=(
        "the CA bundle whose client certificates are accepted (CN: user, O: groups): the cluster CA, which signs "
        "the apiserver's kubelet-client certificate. **Needed for `kubectl logs`**; unset: no certificate is "
        "asked for (a warning says so at start)"))


class WebhookAuthConfig(Strict):
    """Bearer tokens, checked by a TokenReview sent to the apiserver (the kubelet's token webhook)."""

    enabled: bool = Field(default=True, description="bearer tokens are checked by a `TokenReview`")
    cache_ttl_seconds: float = Field(default=120.0, ge=0, description=(
        "an accepted token is trusted this long without a new review (the kubelet's default)"))
    cache_unauthenticated_ttl_seconds: float = Field(default=30.0, ge=0, description=(
        "a refused token is refused this long without a new review"))


class AnonymousAuthConfig(Strict):
    enabled: bool = Field(default=False, description=(
        "`false`: a request without credentials is 401. `true`: it is user `system:anonymous`, group "
        "`system:unauthenticated`, and authorised like any other"))


class KubeletAuthenticationConfig(Strict):
    x509: X509AuthConfig = Field(default_factory=X509AuthConfig)
    webhook: WebhookAuthConfig = Field(default_factory=WebhookAuthConfig)
    anonymous: AnonymousAuthConfig = Field(default_factory=AnonymousAuthConfig)


class KubeletAuthorizationConfig(Strict):
    """Webhook: every request is checked by a SubjectAccessReview on the node (nodes/proxy, nodes/log, ...);
    AlwaysAllow: any authenticated caller may do anything. TTLs as the kubelet's defaults."""

    mode: Literal["Webhook", "AlwaysAllow"] = Field(default="Webhook", description=(
        "`Webhook`: every request is authorised by a `SubjectAccessReview` on the node; `AlwaysAllow`: every "
        "authenticated caller may do everything"))
    cache_authorized_ttl_seconds: float = Field(default=300.0, ge=0, description=(
        "an allowed (identity, verb, subresource) is remembered this long (`0`: not at all)"))
    cache_unauthorized_ttl_seconds: float = Field(default=30.0, ge=0, description="a denied one this long")


class KubeletConfig(Strict):
    """The kubelet HTTPS endpoint the apiserver dials for `kubectl logs`."""

    host: str = Field(default="0.0.0.0", description="address to serve on (the apiserver must reach it)")  # noqa: S104
    port: int = Field(default=10250, ge=0, le=65535, description="port to serve on (`0`: a free port)")
    tls: TlsMode | None = Field(default=None, description=(
        "where the serving certificate comes from (see *Kubelet endpoint TLS* in [vk.md](vk.md)); "
        "unset: `files` when `cert_file` is set, else `self-signed`"))
    cert_file: str | None = Field(default=None, description="the certificate of `tls: files`")
    key_file: str | None = Field(default=None, description="its private key")
    client_ca_file: str | None = Field(default=None, description=(
        "the former name of `authentication.x509.client_ca_file`, still read; setting both to different files is "
        "an error"))
    cert_reload_seconds: float = Field(default=60.0, gt=0, description=(
        "`tls: files`: how often the files are checked for a rotated pair (which new connections then get)"))
    csr: CsrConfig = Field(default_factory=CsrConfig)
    authentication: KubeletAuthenticationConfig = Field(default_factory=KubeletAuthenticationConfig)
    authorization: KubeletAuthorizationConfig = Field(default_factory=KubeletAuthorizationConfig)
    authenticate_healthz: bool = Field(default=False, description=(
        "`false`: `/healthz` answers anyone (liveness probes, load balancers); `true`: it is authenticated and "
        "authorised like the rest (`nodes/healthz`, then `nodes/proxy`)"))

    @model_validator(mode="after")
    def _consistent(self) -> KubeletConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("kubelet.cert_file and kubelet.key_file go together")
        if self.tls is None:
            self.tls = "files" if self.cert_file else "self-signed"
        elif self.tls == "files" and not self.cert_file:
            raise ValueError("kubelet.tls: files needs kubelet.cert_file and kubelet.key_file")
        elif self.tls != "files" and self.cert_file:
            raise ValueError(f"kubelet.tls: {self.tls} does not use kubelet.cert_file/key_file; remove them")
        x509 = self.authentication.x509
        if self.client_ca_file:
            if x509.client_ca_file not in (None, self.client_ca_file):
                raise ValueError("kubelet.client_ca_file and kubelet.authentication.x509.client_ca_file differ; "
                                 "keep only the latter")
            x509.client_ca_file = self.client_ca_file
        authentication = self.authentication
        if not (x509.client_ca_file or authentication.webhook.enabled or authentication.anonymous.enabled):
            raise ValueError("kubelet.authentication: no caller could ever be authenticated; set "
                             "x509.client_ca_file, webhook.enabled or anonymous.enabled")
        return self


class ServicesConfig(Strict):
    """Pod ports reachable from the cluster (Services): see *Services* in [vk.md](vk.md)."""

    enabled: bool = Field(default=False, description=(
        "give each Running pod that declares TCP `containerPorts` an address of `pod_addresses` (its "
        "`status.podIP`), listen there on those ports and relay each connection to the pod through the API's "
        "port-forward; `false`: pods show no podIP and nothing listens"))
    pod_addresses: str | None = Field(default=None, description=(
        "the IPv4 range (CIDR) the addresses come from, routed by the site's network to the vk's host (it need not be "
        "configured on an interface); a `127.0.0.0/8` sub-range without 127.0.0.1 (e.g. `127.77.0.0/24`) works "
        "on one host without setup. It must not hold 127.0.0.1, `node.internal_ip`, nor the hosts of "
        "`kubelet`, `admin` and `api.url`. Required when `enabled`"))
    ports: str = Field(default="1024-65535", description=(
        "the pod ports served, `FIRST-LAST` (or one port); others get a `ServicePortUnavailable` Warning. The vk's own "
        "kubelet and admin ports are never served"))
    max_ports_per_pod: int = Field(default=16, ge=1, description=(
        "ports served per pod (listeners); a pod's further ports get a `ServicePortUnavailable` Warning"))
    max_connections_per_pod: int = Field(default=32, ge=1, description=(
        "connections relayed to one pod at once; a further one is closed as soon as it is accepted (one "
        "port-forward session carries at most 32: the API's SPDY limit of 64 streams, two per connection)"))

    @field_validator("pod_addresses")
    @classmethod
    def _network(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                network = ipaddress.ip_network(value)
            except ValueError as exc:
                raise ValueError(f"not a CIDR range with no host bits set: {exc}") from None
            if network.version == 6:
                raise ValueError(f"{value}: IPv6 ranges are not supported yet (give an IPv4 range)")
            if network.num_addresses < 4:
                raise ValueError(f"{value}: too small (a /30 or larger)")
        return value

    @field_validator("ports")
    @classmethod
    def _ports(cls, value: str) -> str:
        first, dash, last = value.partition("-")
        try:
            low, high = int(first), int(last if dash else first)
        except ValueError:
            raise ValueError(f"{value!r}: not FIRST-LAST (e.g. 1024-65535)") from None
        if not 1 <= low <= high <= 65535:
            raise ValueError(f"{value!r}: ports are 1-65535, the first not above the last")
        return value

    @property
    def port_range(self) -> tuple[int, int]:
        first, _, last = self.ports.partition("-")
        return int(first), int(last or first)

    @model_validator(mode="after")
    def _complete(self) -> ServicesConfig:
        if self.enabled and self.pod_addresses is None:
            raise ValueError("services.enabled needs services.pod_addresses (a CIDR range routed to this host)")
        return self


class VkConfig(Strict):
    node: NodeConfig = Field(default_factory=NodeConfig)
    kube: KubeConfigSection = Field(default_factory=KubeConfigSection)
    api: InterlinkApiConfig = Field(default_factory=InterlinkApiConfig)
    kubelet: KubeletConfig = Field(default_factory=KubeletConfig)
    services: ServicesConfig = Field(default_factory=ServicesConfig)
    admin: AdminListen = Field(default_factory=AdminListen, description=(
        "plain HTTP `/healthz` and `/metrics` without client certificates (probes, Prometheus)"))
    workers: int = Field(default=8, ge=1, description="pods handled at once (one pod only ever by one worker)")
    status_interval: float = Field(default=5.0, gt=0, description="seconds between status rounds")
    ping_interval: float = Field(default=5.0, gt=0, description=(
        "seconds between pings of the API; `Ready` follows the API within one interval"))
    lease_duration_seconds: int = Field(default=40, ge=10, description=(
        "the Lease's duration; it is renewed every quarter of it"))
    node_status_interval: float = Field(default=60.0, gt=0, description=(
        "node status is re-sent at least this often (at once on change)"))
    missing_reference_timeout: float = Field(default=300.0, ge=0, description=(
        "how long a pod waits for a missing ConfigMap/Secret before it fails"))
    token_expiration_seconds: int = Field(default=86400, ge=600, description=(
        "lifetime of the ServiceAccount tokens put in projected volumes"))
    projected_token_refresh_fraction: float = Field(default=0.8, gt=0, lt=1, description=(
        "running pods get new ServiceAccount tokens once this part of the old ones' lifetime has passed (as the "
        "kubelet does, and at least daily)"))
    projected_token_refresh_seconds: float | None = Field(default=None, gt=0, description=(
        "instead, a fixed refresh period in seconds, whatever the lifetime (tests, sites that want it)"))
    watch_timeout_seconds: int = Field(default=300, ge=10, description=(
        "the apiserver ends each pod watch after this; the vk resumes it"))
    state_dir: AbsolutePath = Field(default="/var/lib/slurmlink/vk", description=(
        "state that must outlive a restart (with `kubelet.tls: csr`, the serving certificate; see *State that "
        "must persist*); made (0700) at start when something is kept there"))

    @model_validator(mode="after")
    def _state_dir(self) -> VkConfig:
        if self.kubelet.csr.state_file is None:
            self.kubelet.csr.state_file = os.path.join(self.state_dir, CSR_STATE_FILE)
        return self

    @model_validator(mode="after")
    def _pod_addresses_apart(self) -> VkConfig:
        """The pods' range holds none of the host's own addresses: a pod's listener there would take the vk's."""
        if self.services.pod_addresses is not None:
            network = ipaddress.ip_network(self.services.pod_addresses)
            clashes = [f"{address} ({what})" for address, what in self.own_addresses().items()
                       if ipaddress.ip_address(address) in network]
            if clashes:
                raise ValueError(f"services.pod_addresses {network} holds addresses of the vk's own host: "
                                 f"{', '.join(clashes)}; choose a range apart from them")
        return self

    def own_addresses(self) -> dict[str, str]:
        """The host's addresses the vk uses or serves on (address: what), those given as IP addresses."""
        api_host = urlsplit(self.api.url).hostname if self.api.url.startswith("http") else None
        named = [("127.0.0.1", "loopback"), (self.node.internal_ip, "node.internal_ip"),
                 (self.kubelet.host, "kubelet.host"), (self.admin.host, "admin.host"), (api_host, "api.url")]
        own: dict[str, str] = {}
        for address, what in named:
            with contextlib.suppress(ValueError, TypeError):
                own.setdefault(str(ipaddress.ip_address(address or "")), what)
        return own

    def own_ports(self) -> dict[int, str]:
        """The ports the vk itself listens on (port: what), which no pod's listener may take."""
        ports = {self.kubelet.port: "the vk's kubelet port"}
        if self.admin.port:
            ports.setdefault(self.admin.port, "the vk's admin port")
        return {port: what for port, what in ports.items() if port}

    @property
    def lease_renew_interval(self) -> float:
        return self.lease_duration_seconds / 4
