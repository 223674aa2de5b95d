"""Configuration of `slurmlink vk` (see docs/vk.md and examples/vk.yaml)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from slurmlink.config import AdminListen

UPSTREAM_TAINT_KEY = "virtual-node.interlink/no-schedule"
# Labels a node may not set on itself (NodeRestriction): refused here rather than by the apiserver at start.
_FORBIDDEN_LABEL_PREFIXES = ("node-role.kubernetes.io/", "node-restriction.kubernetes.io/")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not a silent default


class TaintConfig(Strict):
    key: str
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"


class CapacityConfig(Strict):
    """What the node offers until the API's ping reports real numbers (Kubernetes quantities)."""

    cpu: str = "100"
    memory: str = "3000Gi"
    pods: str = "1000"


class NodeConfig(Strict):
    name: str = "slurmlink"
    labels: dict[str, str] = Field(default_factory=dict)
    taints: list[TaintConfig] = Field(default_factory=list)  # added to the upstream taint, at creation only
    internal_ip: str = "127.0.0.1"  # the address the apiserver dials for `kubectl logs`
    hostname: str | None = None  # the node's Hostname address (default: its name); a DNS SAN of a CSR certificate
    capacity: CapacityConfig = Field(default_factory=CapacityConfig)
    # status.nodeInfo.kubeletVersion; None: the apiserver's version (its /version) + "+slurmlink.<version>"
    kubelet_version: str | None = None

    @field_validator("labels")
    @classmethod
    def _allowed_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for key in labels:
            if key.startswith(_FORBIDDEN_LABEL_PREFIXES) or key == "kubernetes.io/role":
                raise ValueError(f"label {key!r}: a node may not set it on itself (NodeRestriction)")
        return labels


class KubeConfigSection(Strict):
    kubeconfig: str | None = None  # None: $KUBECONFIG, ~/.kube/config, or the in-cluster service account
    context: str | None = None
    timeout_seconds: float = Field(default=15.0, gt=0)


class InterlinkApiConfig(Strict):
    url: str = "http://127.0.0.1:3000"  # also https://..., or unix:///path/to/api.sock
    token_file: str | None = None  # bearer token, re-read on every request (it may be rotated)
    ca_file: str | None = None  # the CA of an https:// API's certificate; None: the system's
    cert_file: str | None = None  # a client certificate for an API that requires one (listen.tls.client_ca_file)
    key_file: str | None = None

    @model_validator(mode="after")
    def _client_pair(self) -> InterlinkApiConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("api.cert_file and api.key_file go together")
        return self
    # slurmlink's API answers many pods per /status call; upstream interLink expects one pod per call.
    batch_status: bool = True
    timeout_seconds: float = Field(default=30.0, gt=0)


class CsrConfig(Strict):
    """`kubelet.tls: csr`: the serving certificate is requested from the cluster's kubelet-serving signer."""

    # Key and issued certificate (PEM, mode 0600), so a restart reuses a valid certificate without a new
    # approval; None: kept in memory only.
    state_file: str | None = None
    expiration_seconds: int | None = Field(default=None, ge=600)  # asked of the signer; None: its default
    renew_fraction: float = Field(default=0.8, gt=0, lt=1)  # renew once this part of the lifetime has passed
    approval_timeout_seconds: float = Field(default=900.0, gt=0)  # then give up on that CSR and ask anew


TlsMode = Literal["files", "self-signed", "csr"]


class X509AuthConfig(Strict):
    # The CA bundle whose client certificates are accepted (CN: user, O: groups): the cluster CA that signs the
    # apiserver's kubelet-client certificate. Unset: client certificates are not asked for.
    client_ca_file: str | None = None


class WebhookAuthConfig(Strict):
    """Bearer tokens, checked by a TokenReview sent to the apiserver (the kubelet's token webhook)."""

    enabled: bool = True
    cache_ttl_seconds: float = Field(default=120.0, ge=0)  # a token the apiserver accepted is trusted this long
    cache_unauthenticated_ttl_seconds: float = Field(default=30.0, ge=0)  # and a refused one refused this long


class AnonymousAuthConfig(Strict):
    enabled: bool = False  # true: requests without credentials are system:anonymous (then authorised as such)


class KubeletAuthenticationConfig(Strict):
    x509: X509AuthConfig = Field(default_factory=X509AuthConfig)
    webhook: WebhookAuthConfig = Field(default_factory=WebhookAuthConfig)
    anonymous: AnonymousAuthConfig = Field(default_factory=AnonymousAuthConfig)


class KubeletAuthorizationConfig(Strict):
    """Webhook: every request is checked by a SubjectAccessReview on the node (nodes/proxy, nodes/log, ...);
    AlwaysAllow: any authenticated caller may do anything. TTLs as the kubelet's defaults."""

    mode: Literal["Webhook", "AlwaysAllow"] = "Webhook"
    cache_authorized_ttl_seconds: float = Field(default=300.0, ge=0)
    cache_unauthorized_ttl_seconds: float = Field(default=30.0, ge=0)


class KubeletConfig(Strict):
    """The kubelet HTTPS endpoint the apiserver dials for `kubectl logs`."""

    host: str = "0.0.0.0"  # noqa: S104 - the apiserver must reach it
    port: int = Field(default=10250, ge=0, le=65535)  # 0: a free port (tests)
    # Where the serving certificate comes from; unset: `files` when cert_file is set, else `self-signed`.
    tls: TlsMode | None = None
    cert_file: str | None = None
    key_file: str | None = None
    client_ca_file: str | None = None  # the former key of authentication.x509.client_ca_file, still read
    # tls: files: how often the files are checked for a rotated pair (which new connections then get)
    cert_reload_seconds: float = Field(default=60.0, gt=0)
    csr: CsrConfig = Field(default_factory=CsrConfig)
    authentication: KubeletAuthenticationConfig = Field(default_factory=KubeletAuthenticationConfig)
    authorization: KubeletAuthorizationConfig = Field(default_factory=KubeletAuthorizationConfig)
    # /healthz answers without credentials (probes and load balancers reach it); true: it is checked like the rest
    authenticate_healthz: bool = False

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


class VkConfig(Strict):
    node: NodeConfig = Field(default_factory=NodeConfig)
    kube: KubeConfigSection = Field(default_factory=KubeConfigSection)
    api: InterlinkApiConfig = Field(default_factory=InterlinkApiConfig)
    kubelet: KubeletConfig = Field(default_factory=KubeletConfig)
    admin: AdminListen = Field(default_factory=AdminListen)  # /healthz and /metrics without client certificates
    workers: int = Field(default=8, ge=1)  # pods handled at once; one pod is only ever handled by one worker
    status_interval: float = Field(default=5.0, gt=0)  # seconds between status rounds
    ping_interval: float = Field(default=5.0, gt=0)  # seconds between pings of the API (node Ready follows them)
    lease_duration_seconds: int = Field(default=40, ge=10)
    node_status_interval: float = Field(default=60.0, gt=0)  # node status is re-sent at least this often
    missing_reference_timeout: float = Field(default=300.0, ge=0)  # a pod waits this long for its ConfigMaps/Secrets
    token_expiration_seconds: int = Field(default=86400, ge=600)  # ServiceAccount tokens of projected volumes
    # Running pods get new tokens once this part of the old ones' lifetime has passed (as the kubelet does) ...
    projected_token_refresh_fraction: float = Field(default=0.8, gt=0, lt=1)
    # ... or every this many seconds, whatever the lifetime (tests, sites that want it); unset by default
    projected_token_refresh_seconds: float | None = Field(default=None, gt=0)
    watch_timeout_seconds: int = Field(default=300, ge=10)  # the apiserver ends each watch after this; we resume

    @property
    def lease_renew_interval(self) -> float:
        return self.lease_duration_seconds / 4
