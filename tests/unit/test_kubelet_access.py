"""Who may call the vk's kubelet endpoint: the kubelet's path → `nodes` attributes mapping, the TTL cache, the
identity of a client certificate, the config keys; and KubeletAuth's caches against the real stand-in's
TokenReview and SubjectAccessReview (a fake clock, so expiry is tested without waiting)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from slurmlink.config import ConfigError, load_config
from slurmlink.vk.config import KubeConfigSection, KubeletConfig, VkConfig
from slurmlink.vk.kube import make_client
from slurmlink.vk.kubeletaccess import (
    ANONYMOUS,
    Attributes,
    Identity,
    TtlCache,
    certificate_identity,
    forbidden_message,
    is_clean,
    request_attributes,
)
from slurmlink.vk.kubeletauth import KubeletAuth, ReviewFailed
from standins.kube import KubeStandin
from tests.harness.clock import FakeClock
from tests.harness.services import node_kubeconfig

NODE = "n1"


# --- the mapping ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method, path, expected", [
    ("GET", "/containerLogs/ns/pod/c", [("get", "proxy")]),
    ("POST", "/exec/ns/pod/c", [("create", "proxy")]),
    ("GET", "/attach/ns/pod/c", [("get", "proxy")]),
    ("POST", "/portForward/ns/pod", [("create", "proxy")]),
    ("POST", "/run/ns/pod/c", [("create", "proxy")]),
    ("GET", "/logs/", [("get", "log")]),
    ("GET", "/logs/syslog", [("get", "log")]),
    ("GET", "/stats/summary", [("get", "stats")]),
    ("GET", "/metrics", [("get", "metrics")]),
    ("GET", "/metrics/cadvisor", [("get", "metrics")]),
    ("GET", "/spec/", [("get", "spec")]),
    ("POST", "/checkpoint/ns/pod/c", [("create", "checkpoint")]),
    ("GET", "/runningpods/", [("get", "pods"), ("get", "proxy")]),
    ("GET", "/pods", [("get", "pods"), ("get", "proxy")]),
    ("GET", "/healthz", [("get", "healthz"), ("get", "proxy")]),
    ("HEAD", "/healthz", [("get", "healthz"), ("get", "proxy")]),
    ("GET", "/configz", [("get", "configz"), ("get", "proxy")]),
    ("PUT", "/metricsx", [("update", "proxy")]),  # a prefix only counts up to a path separator
    ("PATCH", "/statsfoo/x", [("patch", "proxy")]),
    ("DELETE", "/", [("delete", "proxy")]),
    ("OPTIONS", "/containerLogs/ns/pod/c", [("", "proxy")]),  # no verb: nothing grants it
])
def test_paths_map_to_node_subresources_as_the_kubelet(method: str, path: str,
                                                       expected: list[tuple[str, str]]) -> None:
    attributes = request_attributes(method, path, NODE)
    assert [(a.verb, a.subresource) for a in attributes] == expected
    assert {(a.resource, a.name) for a in attributes} == {("nodes", NODE)}


@pytest.mark.parametrize("path, clean", [
    ("/containerLogs/ns/p/c", True), ("/runningpods/", True), ("/", True), ("/healthz", True),
    ("/metrics/../containerLogs/ns/p/c", False), ("/stats/./x", False), ("//containerLogs/ns/p/c", False),
    ("/containerLogs//p/c", False), ("relative", False),
])
def test_only_clean_paths_are_authorised(path: str, clean: bool) -> None:
    assert is_clean(path) is clean


def test_forbidden_message_reads_like_the_kubelets() -> None:
    assert (forbidden_message(Identity("ann"), Attributes("get", "proxy", NODE))
            == "Forbidden (user=ann, verb=get, resource=nodes, subresource=proxy)")


def test_certificate_identity_is_cn_and_organisations() -> None:
    peer = {"subject": ((("organizationName", "team-a"),), (("organizationName", "team-b"),),
                        (("commonName", "ann"),))}
    assert certificate_identity(peer) == Identity("ann", ("team-a", "team-b", "system:authenticated"))
    assert certificate_identity({"subject": ((("organizationName", "x"),),)}) is None  # no CN: no user


# --- the cache --------------------------------------------------------------------------------------------------

def test_cache_entries_expire_after_their_own_ttl() -> None:
    clock = FakeClock()
    cache: TtlCache[str, bool] = TtlCache(clock=clock)
    cache.put("allowed", True, 300)
    cache.put("denied", False, 30)
    cache.put("never", True, 0)  # a TTL of 0 disables caching
    assert cache.get("allowed") is True and cache.get("denied") is False and cache.get("never") is None
    clock.now += 29.9
    assert cache.get("denied") is False
    clock.now += 0.1
    assert cache.get("denied") is None and cache.get("allowed") is True
    clock.now += 270
    assert cache.get("allowed") is None and len(cache) == 0


def test_a_full_cache_drops_expired_then_oldest_entries() -> None:
    clock = FakeClock()
    cache: TtlCache[int, int] = TtlCache(max_entries=3, clock=clock)
    cache.put(1, 1, 10)
    cache.put(2, 2, 100)
    cache.put(3, 3, 100)
    clock.now += 20  # 1 has expired
    cache.put(4, 4, 100)
    assert [cache.get(k) for k in (1, 2, 3, 4)] == [None, 2, 3, 4]
    cache.put(5, 5, 100)  # none expired: the oldest (2) goes
    assert [cache.get(k) for k in (2, 3, 4, 5)] == [None, 3, 4, 5]


# --- configuration ----------------------------------------------------------------------------------------------

def test_defaults_are_secure() -> None:
    kubelet = KubeletConfig()
    assert kubelet.authentication.anonymous.enabled is False
    assert kubelet.authentication.webhook.enabled is True
    assert kubelet.authorization.mode == "Webhook"
    assert kubelet.authenticate_healthz is False
    assert (kubelet.authentication.webhook.cache_ttl_seconds, kubelet.authorization.cache_authorized_ttl_seconds,
            kubelet.authorization.cache_unauthorized_ttl_seconds) == (120, 300, 30)


def test_the_former_client_ca_key_still_works_and_conflicts_are_named() -> None:
    assert KubeletConfig(client_ca_file="/ca.crt").authentication.x509.client_ca_file == "/ca.crt"
    same = {"client_ca_file": "/ca.crt", "authentication": {"x509": {"client_ca_file": "/ca.crt"}}}
    assert KubeletConfig.model_validate(same).authentication.x509.client_ca_file == "/ca.crt"
    with pytest.raises(ValidationError, match="keep only the latter"):
        KubeletConfig.model_validate({"client_ca_file": "/a", "authentication": {"x509": {"client_ca_file": "/b"}}})


def test_a_kubelet_nobody_could_call_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "vk.yaml"
    path.write_text("kubelet: {authentication: {webhook: {enabled: false}}}\n")
    with pytest.raises(ConfigError, match="no caller could ever be authenticated"):
        load_config(VkConfig, path, {})
    path.write_text("kubelet: {authorization: {mode: Sometimes}}\n")
    with pytest.raises(ConfigError, match="kubelet.authorization.mode"):
        load_config(VkConfig, path, {})


# --- KubeletAuth against the stand-in's reviews -----------------------------------------------------------------

@pytest.fixture(scope="module")
def standin() -> Iterator[KubeStandin]:
    with KubeStandin() as kube:
        yield kube


def _auth(standin: KubeStandin, clock: FakeClock, **config: object) -> KubeletAuth:
    # The node's own identity, as the vk has: enough to ask for both reviews.
    kubeconfig = node_kubeconfig(standin, standin.workdir / "node.kubeconfig", NODE)
    kube = make_client(KubeConfigSection(kubeconfig=str(kubeconfig)))
    return KubeletAuth(KubeletConfig.model_validate(config), NODE, kube, clock)


def test_tokens_are_reviewed_once_and_remembered_for_their_ttl(standin: KubeStandin) -> None:
    standin.add_user_token("tok-ann", "ann", ("team",))
    clock = FakeClock()

    async def scenario() -> None:
        auth = _auth(standin, clock)
        ann = await auth.authenticate(None, "Bearer tok-ann")
        assert ann == Identity("ann", ("team", "system:authenticated"))
        assert await auth.authenticate(None, "Bearer nonsense") is None
        standin.authenticator.tokens.pop("tok-ann")  # revoked at the apiserver ...
        standin.add_user_token("nonsense", "late", ())  # ... and a refused token made valid
        assert await auth.authenticate(None, "Bearer tok-ann") == ann  # both cached
        assert await auth.authenticate(None, "Bearer nonsense") is None
        clock.now += 30  # the refusal expires first (30 s), the acceptance later (120 s)
        assert (await auth.authenticate(None, "Bearer nonsense")).user == "late"  # type: ignore[union-attr]
        assert await auth.authenticate(None, "Bearer tok-ann") == ann
        clock.now += 90
        assert await auth.authenticate(None, "Bearer tok-ann") is None
        assert await auth.authenticate(None, "Basic abc") is None  # only bearer tokens
        assert await auth.authenticate(None, None) is None  # anonymous is off by default
        await auth.kube.close()

    asyncio.run(scenario())


def test_anonymous_only_when_enabled(standin: KubeStandin) -> None:
    async def scenario() -> None:
        auth = _auth(standin, FakeClock(), authentication={"anonymous": {"enabled": True}})
        assert await auth.authenticate(None, None) == ANONYMOUS
        assert await auth.authenticate(None, "Bearer not-a-token") is None  # a bad token is never anonymous
        await auth.kube.close()

    asyncio.run(scenario())


def test_decisions_are_cached_per_identity_and_attributes(standin: KubeStandin) -> None:
    clock = FakeClock()
    bob, carl = Identity("bob", ("system:authenticated",)), Identity("carl", ("system:authenticated",))
    logs = request_attributes("GET", "/containerLogs/ns/p/c", NODE)
    pods = request_attributes("GET", "/runningpods/", NODE)

    async def scenario() -> None:
        auth = _auth(standin, clock)
        assert await auth.refused(bob, logs) == logs[0]
        standin.grant("user:bob", ("get",), ("nodes/proxy",))
        standin.grant("user:carl", ("get",), ("nodes/pods",), names=(NODE,))
        assert await auth.refused(bob, logs) == logs[0]  # the refusal is remembered for 30 s
        assert await auth.refused(carl, pods) is None  # the fine-grained subresource suffices
        assert await auth.refused(carl, logs) == logs[0]  # but is not nodes/proxy
        clock.now += 30
        assert await auth.refused(bob, logs) is None
        always = _auth(standin, clock, authorization={"mode": "AlwaysAllow"})
        assert await always.refused(Identity("nobody"), logs) is None
        await auth.kube.close()
        await always.kube.close()

    asyncio.run(scenario())


def test_an_apiserver_out_of_reach_refuses_and_caches_nothing(tmp_path: Path) -> None:
    with KubeStandin(tmp_path / "standin") as gone:
        kubeconfig = node_kubeconfig(gone, tmp_path / "node.kubeconfig", NODE)
    clock = FakeClock()

    async def scenario() -> None:
        auth = KubeletAuth(KubeletConfig(), NODE, make_client(KubeConfigSection(kubeconfig=str(kubeconfig))), clock)
        assert await auth.authenticate(None, "Bearer tok") is None  # 401, not anonymous, not a pass
        with pytest.raises(ReviewFailed):
            await auth.refused(Identity("ann"), request_attributes("GET", "/containerLogs/a/b/c", NODE))
        assert len(auth._tokens) == 0 and len(auth._decisions) == 0
        await auth.kube.close()

    asyncio.run(scenario())
