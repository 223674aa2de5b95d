"""`slurmlink proxy` (mode 1) in front of the real slurmrestd of the test SLURM, with Check-in identity.

Every refused request also checks that SLURM saw no new job and that a sentinel job of another user survived.
Requests that must reach the proxy byte for byte (`..`, `//`, `%2F`, duplicated or underscored headers) are
written on a raw socket: HTTP clients normalise them away.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from slurmlink.devcluster import DevCluster
from slurmlink.proxy import ProxyConfig
from slurmlink.slurm import rest_shapes
from standins.checkin import CheckinStandin, new_key
from tests.harness.ports import free_port
from tests.harness.waiting import wait_until
from tests.integration.proxy_fixtures import (
    MAX_BODY,
    VO,
    ProxyServer,
    V,
    bearer,
    job_ids,
    job_state,
    proxy_config,
    raw_request,
    submit_body,
)


@pytest.fixture(scope="module")
def users_file(slurm_cluster: DevCluster, checkin: CheckinStandin, people: dict[str, str],
               tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("proxy") / "users.txt"
    path.write_text("".join(f"{checkin.issuer} {people[who]} {account}\n" for who, account in
                            (("alice", slurm_cluster.users[0]), ("bob", slurm_cluster.users[1]),
                             ("eve", slurm_cluster.users[2]))))
    return path


@pytest.fixture(scope="module")
def proxy(slurm_cluster: DevCluster, checkin: CheckinStandin, users_file: Path) -> Iterator[ProxyServer]:
    server = ProxyServer(proxy_config(slurm_cluster, checkin, users_file)).start()
    yield server
    server.stop()


# --- the sentinel: a job of bob's that no refused request may touch ------------------------------------------

@dataclass
class Context:
    tokens: dict[str, str]
    sentinel: str
    slurm_token: str
    extra: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def ctx(proxy: ProxyServer, checkin: CheckinStandin, people: dict[str, str],
        slurm_cluster: DevCluster) -> Iterator[Context]:
    tokens = {who: checkin.mint(sub) for who, sub in people.items()}
    answer = httpx.post(f"{proxy.url}/slurm/{V}/job/submit", headers=bearer(tokens["bob"]), timeout=30,
                        json=submit_body("slurmlink-proxy-sentinel", "#!/bin/bash\nsleep 600"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["errors"] == []
    sentinel = str(answer.json()["job_id"])
    context = Context(tokens, sentinel, slurm_cluster.token(slurm_cluster.slurm_user, lifespan=900))
    context.extra["forged"] = checkin.sign(checkin.access_claims(people["alice"]),
                                           key=new_key("RS256", checkin.rsa_kid))
    context.extra["expired"] = checkin.mint(people["alice"], lifetime=-600)
    context.extra["other_issuer"] = checkin.mint(people["alice"], iss="https://evil.example.org/auth/realms/egi")
    context.extra["slurm_hs256"] = slurm_cluster.token(slurm_cluster.users[0])
    yield context
    httpx.delete(f"{proxy.url}/slurm/{V}/job/{sentinel}", headers=bearer(checkin.mint(people["bob"])), timeout=30)


# --- what works --------------------------------------------------------------------------------------------

def test_submit_runs_as_the_mapped_account(proxy: ProxyServer, ctx: Context, slurm_cluster: DevCluster) -> None:
    for who, account in (("alice", slurm_cluster.users[0]), ("bob", slurm_cluster.users[1])):
        answer = httpx.post(f"{proxy.url}/slurm/{V}/job/submit", headers=bearer(ctx.tokens[who]),
                            json=submit_body(f"slurmlink-proxy-{who}"), timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["errors"] == []
        job_id = str(answer.json()["job_id"])
        info = httpx.get(f"{proxy.url}/slurm/{V}/job/{job_id}", headers=bearer(ctx.tokens[who]), timeout=30)
        assert info.status_code == 200
        assert info.headers["content-type"].startswith("application/json")
        assert info.json()["jobs"][0]["user_name"] == account
        assert job_state(slurm_cluster, job_id)[1] == account


def test_injected_identity_headers_on_submit_are_replaced(proxy: ProxyServer, ctx: Context,
                                                          slurm_cluster: DevCluster) -> None:
    body = json.dumps(submit_body("slurmlink-proxy-inject")).encode()
    status, _, data = raw_request(proxy.port, "POST", f"/slurm/{V}/job/submit", [
        ("X-SLURM-USER-NAME", "root"), ("x_slurm_user_name", "root"), ("X-SLURM-USER-TOKEN", ctx.slurm_token),
        ("Content-Type", "application/json"), ("Authorization", f"Bearer {ctx.tokens['alice']}")], body)
    assert status == 200, data
    job_id = str(json.loads(data)["job_id"])
    assert job_state(slurm_cluster, job_id)[1] == slurm_cluster.users[0]


def test_listing_ping_and_spec_pass(proxy: ProxyServer, ctx: Context) -> None:
    with httpx.Client(base_url=proxy.url, headers=bearer(ctx.tokens["alice"]), timeout=30) as client:
        assert client.get(f"/slurm/{V}/ping/").status_code == 200
        jobs = client.get(f"/slurm/{V}/jobs")
        assert jobs.status_code == 200 and "jobs" in jobs.json()
        assert client.get("/openapi/v3").status_code == 200
        # 22.05: 304, empty; 24.11's v0.0.42: 200, no jobs, a warning; v0.0.40/41 take "now-N" only
        since = "now+3600" if rest_shapes.number(V) in (40, 41) else str(int(time.time()) + 3600)
        unchanged = client.get(f"/slurm/{V}/jobs", params={"update_time": since})
        body = unchanged.json() if unchanged.content else None
        assert rest_shapes.unchanged_listing(unchanged.status_code, body), (unchanged.status_code, body)
        cancel = client.delete(f"/slurm/{V}/job/999999999", params={"signal": "SIGTERM"})
        assert cancel.status_code in (404, 500) and cancel.json()["errors"][0]["error_number"] == 2017


def test_healthz_and_metrics(proxy: ProxyServer, ctx: Context) -> None:
    health = httpx.get(f"{proxy.admin_url}/healthz", timeout=30)
    assert health.status_code == 200, health.text
    assert health.json()["status"] == "ok" and health.json()["api_version"] == V
    metrics = httpx.get(f"{proxy.admin_url}/metrics", timeout=30).text
    assert 'slurmlink_proxy_requests_total{decision="allowed",route="POST /slurm/{v}/job/submit/",status="200"}' \
        in metrics
    assert "slurmlink_proxy_upstream_seconds_bucket" in metrics
    for token in ctx.tokens.values():
        assert token not in metrics


def test_public_port_tells_unauthenticated_callers_nothing_of_slurmrestd(proxy: ProxyServer) -> None:
    """Only ok/unavailable on the public /healthz; the details and /metrics are the admin listener's."""
    health = httpx.get(f"{proxy.url}/healthz", timeout=30)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    for word in ("v0.0.", "pings", "offered", "slurmrestd", "api_version"):
        assert word not in health.text
    metrics = httpx.get(f"{proxy.url}/metrics", timeout=30)
    assert metrics.status_code in (401, 403, 404) and "slurmlink_proxy" not in metrics.text


# --- refused ------------------------------------------------------------------------------------------------

Headers = Callable[[Context], list[tuple[str, str]]]


def auth(who: str) -> Headers:
    return lambda c: [("Authorization", f"Bearer {c.tokens.get(who) or c.extra[who]}")]


def plus(base: Headers, *more: tuple[str, str | Callable[[Context], str]]) -> Headers:
    return lambda c: [*base(c), *((k, v(c) if callable(v) else v) for k, v in more)]


def none(_: Context) -> list[tuple[str, str]]:
    return []


SUBMIT = f"/slurm/{V}/job/submit"
SENTINEL = f"/slurm/{V}/job/{{sentinel}}"
slurm_token: Callable[[Context], str] = lambda c: c.slurm_token  # noqa: E731

# (id, method, target, headers, send a submit body, expected status)
REFUSED: list[tuple[str, str, str, Headers, bool, int]] = [
    # no or bad credentials: 401 before anything reaches slurmrestd
    ("no-authorization", "POST", SUBMIT, none, True, 401),
    ("basic-scheme", "POST", SUBMIT, lambda c: [("Authorization", "Basic YWxpY2U6cGFzc3dvcmQ=")], True, 401),
    ("empty-bearer", "POST", SUBMIT, lambda c: [("Authorization", "Bearer ")], True, 401),
    ("bearer-no-space", "POST", SUBMIT, lambda c: [("Authorization", f"Bearer{c.tokens['alice']}")], True, 401),
    ("two-authorization-headers", "POST", SUBMIT, plus(auth("alice"), ("Authorization", lambda c:
                                                                         f"Bearer {c.tokens['bob']}")), True, 401),
    ("forged-token", "POST", SUBMIT, auth("forged"), True, 401),
    ("expired-token", "POST", SUBMIT, auth("expired"), True, 401),
    ("other-issuer", "POST", SUBMIT, auth("other_issuer"), True, 401),
    ("other-vo", "POST", SUBMIT, auth("eve"), True, 401),
    ("unmapped-member", "POST", SUBMIT, auth("nomap"), True, 401),
    ("slurm-jwt-as-bearer", "POST", SUBMIT, auth("slurm_hs256"), True, 401),
    ("slurmuser-headers-without-bearer", "POST", SUBMIT,
     lambda c: [("X-SLURM-USER-NAME", "root"), ("X-SLURM-USER-TOKEN", c.slurm_token)], True, 401),
    # identity headers from the client are dropped: the proxy acts as alice, and refuses her cancel of bob's job
    # itself (403 job-owner) before slurmrestd sees it (slurmctld 24.11 deadlocks on such a cancel)
    ("a-cancels-bs-job", "DELETE", SENTINEL, auth("alice"), False, 403),
    ("inject-user-root", "DELETE", SENTINEL, plus(auth("alice"), ("X-SLURM-USER-NAME", "root")), False, 403),
    ("inject-underscore-name", "DELETE", SENTINEL, plus(auth("alice"), ("x_slurm_user_name", "root")), False, 403),
    ("inject-duplicated-name", "DELETE", SENTINEL, plus(auth("alice"), ("X-Slurm-User-Name", "root"),
                                                        ("X-Slurm-User-Name", "root")), False, 403),
    ("inject-slurmuser-token", "DELETE", SENTINEL, plus(auth("alice"), ("X-SLURM-USER-TOKEN", slurm_token),
                                                        ("X-SLURM-USER-NAME", "root")), False, 403),
    ("inject-underscore-token", "DELETE", SENTINEL, plus(auth("alice"), ("X_SLURM_USER_TOKEN", slurm_token),
                                                         ("x-slurm-user-name", "root")), False, 403),
    ("inject-forwarded", "DELETE", SENTINEL, plus(auth("alice"), ("X-Forwarded-User", "root"),
                                                  ("Forwarded", "for=127.0.0.1"), ("Cookie", "u=root")), False, 403),
    # paths off the allow-list, or smuggled past it
    ("dot-dot", "GET", f"/slurm/{V}/../slurmdb/{V}/jobs", auth("alice"), False, 403),
    ("dot-dot-submit", "POST", f"/slurm/{V}/jobs/../job/submit", auth("alice"), True, 403),
    ("encoded-dot-dot", "POST", f"/slurm/{V}/jobs/%2e%2e/job/submit", auth("alice"), True, 403),
    ("encoded-slash", "POST", f"/slurm/{V}/job%2Fsubmit", auth("alice"), True, 403),
    ("encoded-slash-lower", "POST", f"/slurm/{V}/job%2fsubmit", auth("alice"), True, 403),
    ("encoded-backslash", "POST", f"/slurm/{V}/job%5Csubmit", auth("alice"), True, 403),
    ("encoded-nul", "POST", f"/slurm/{V}/job/submit%00", auth("alice"), True, 403),
    ("double-slash-leading", "POST", f"//slurm/{V}/job/submit", auth("alice"), True, 403),
    ("double-slash-inner", "POST", f"/slurm/{V}//job/submit", auth("alice"), True, 403),
    ("upper-case-path", "POST", f"/SLURM/{V}/job/submit", auth("alice"), True, 403),
    ("old-api-version", "POST", "/slurm/v0.0.35/job/submit", auth("alice"), True, 403),
    ("node-update", "POST", f"/slurm/{V}/node/x", auth("alice"), True, 403),
    ("node-delete", "DELETE", f"/slurm/{V}/node/x", auth("alice"), False, 403),
    ("nodes-list", "GET", f"/slurm/{V}/nodes", auth("alice"), False, 403),
    ("reservation-create", "POST", f"/slurm/{V}/reservation/maint", auth("alice"), True, 403),
    ("reservation-delete", "DELETE", f"/slurm/{V}/reservation/maint", auth("alice"), False, 403),
    ("partition-update", "POST", f"/slurm/{V}/partition/debug", auth("alice"), True, 403),
    ("reconfigure", "GET", f"/slurm/{V}/reconfigure", auth("alice"), False, 403),
    ("job-update", "POST", SENTINEL, auth("bob"), True, 403),
    ("slurmdb-jobs-not-enabled", "GET", f"/slurmdb/{V}/jobs", auth("alice"), False, 403),
    ("slurmdb-write", "POST", f"/slurmdb/{V}/users", auth("alice"), True, 403),
    ("slurmdb-delete", "DELETE", f"/slurmdb/{V}/job/{{sentinel}}", auth("alice"), False, 403),
    ("bulk-cancel", "DELETE", f"/slurm/{V}/jobs", auth("bob"), False, 403),
    ("put-submit", "PUT", SUBMIT, auth("alice"), True, 403),
    ("patch-job", "PATCH", SENTINEL, auth("bob"), True, 403),
    # a method llhttp does not know is not HTTP it reads: refused at the edge, before the allow-list
    ("unknown-method", "BREW", SUBMIT, auth("alice"), True, 400),
    ("head-jobs", "HEAD", f"/slurm/{V}/jobs", auth("alice"), False, 403),
    ("options-submit", "OPTIONS", SUBMIT, auth("alice"), False, 403),
]


@pytest.mark.parametrize("method, target, headers, with_body, expected",
                         [pytest.param(*case[1:], id=case[0]) for case in REFUSED])
def test_refused(proxy: ProxyServer, ctx: Context, slurm_cluster: DevCluster, method: str, target: str,
                 headers: Headers, with_body: bool, expected: int) -> None:
    before = job_ids(slurm_cluster)
    body = json.dumps(submit_body("slurmlink-proxy-evil")).encode() if with_body else b""
    status, response_headers, data = raw_request(
        proxy.port, method, target.format(sentinel=ctx.sentinel),
        [("Content-Type", "application/json"), *headers(ctx)], body)
    assert status == expected, data
    if method != "HEAD":
        answer = json.loads(data)
        assert answer["error"] and answer["reason"], answer
        for token in [*ctx.tokens.values(), *ctx.extra.values(), ctx.slurm_token]:
            assert token not in data.decode()
    if expected == 401:
        assert "bearer" in response_headers.get("www-authenticate", "").lower()
    if expected == 403:
        assert json.loads(data or b"{}").get("rule") or method == "HEAD"
        if json.loads(data or b"{}").get("rule") == "job-owner":  # judged as alice, whatever headers came
            assert f"than {slurm_cluster.users[0]}:" in json.loads(data)["reason"]
    assert not job_ids(slurm_cluster) - before, "a refused request created a job"
    assert job_state(slurm_cluster, ctx.sentinel) in {("PENDING", slurm_cluster.users[1]),
                                                      ("RUNNING", slurm_cluster.users[1])}


def test_only_the_owner_may_cancel_or_signal_a_running_job(proxy: ProxyServer, ctx: Context,
                                                          slurm_cluster: DevCluster) -> None:
    """slurmctld 24.11.5 deadlocks when a user cancels another's running job: the proxy must refuse it first."""
    answer = httpx.post(f"{proxy.url}/slurm/{V}/job/submit", headers=bearer(ctx.tokens["bob"]), timeout=30,
                        json=submit_body("slurmlink-proxy-owned", "#!/bin/bash\nsleep 600"))
    assert answer.status_code == 200, answer.text
    job_id = str(answer.json()["job_id"])
    wait_until(lambda: job_state(slurm_cluster, job_id)[0] == "RUNNING", 60, f"job {job_id} to run", 0.1)
    job = f"{proxy.url}/slurm/{V}/job/{job_id}"
    for params in ({}, {"signal": "KILL"}, {"signal": "TERM", "flags": "BATCH_JOB"}):
        refused = httpx.delete(job, params=params, headers=bearer(ctx.tokens["alice"]), timeout=30)
        assert refused.status_code == 403, refused.text
        assert refused.json()["rule"] == "job-owner"
        assert "belongs to another user" in refused.json()["reason"]  # the sentence, not the error's word
        assert job_state(slurm_cluster, job_id) == ("RUNNING", slurm_cluster.users[1])
    ping = subprocess.run(["scontrol", "ping"], env={**os.environ, **slurm_cluster.env}, capture_output=True,
                          text=True, timeout=30)
    assert "is UP" in ping.stdout, ping
    cancelled = httpx.delete(job, headers=bearer(ctx.tokens["bob"]), timeout=30)
    assert cancelled.status_code == 200, cancelled.text
    wait_until(lambda: job_state(slurm_cluster, job_id)[0] in ("CANCELLED", ""), 60, f"job {job_id} to be cancelled",
               0.1)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_oversized_body_is_refused_while_reading(proxy: ProxyServer, ctx: Context, slurm_cluster: DevCluster,
                                                 chunked: bool) -> None:
    before = job_ids(slurm_cluster)
    body = json.dumps(submit_body("slurmlink-proxy-big", pad=MAX_BODY * 2)).encode()
    status, _, data = raw_request(proxy.port, "POST", SUBMIT, [("Content-Type", "application/json"),
                                                               *auth("alice")(ctx)], body, chunked=chunked)
    assert status == 413, data
    assert json.loads(data)["error"] == "PayloadTooLarge"
    assert not job_ids(slurm_cluster) - before
    # a lying Content-Length is no way around the limit: uvicorn/h11 reads the declared length only,
    # so the chunked case above is the one that counts bytes from the stream


def test_rate_limit_per_user(slurm_cluster: DevCluster, checkin: CheckinStandin, users_file: Path,
                             ctx: Context) -> None:
    server = ProxyServer(proxy_config(slurm_cluster, checkin, users_file,
                                      rate_limit={"requests_per_second": 0.2, "burst": 3})).start()
    try:
        before = job_ids(slurm_cluster)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            statuses = [client.get(f"/slurm/{V}/jobs", headers=bearer(ctx.tokens["alice"])).status_code
                        for _ in range(3)]
            assert statuses == [200, 200, 200]
            limited = client.post(SUBMIT, headers=bearer(ctx.tokens["alice"]), json=submit_body("slurmlink-rl"))
            assert limited.status_code == 429
            assert int(limited.headers["retry-after"]) >= 1
            assert limited.json()["error"] == "TooManyRequests"
            assert client.get(f"/slurm/{V}/jobs", headers=bearer(ctx.tokens["bob"])).status_code == 200
        assert not job_ids(slurm_cluster) - before
    finally:
        server.stop()


def test_repeated_bad_tokens_are_throttled_per_address(slurm_cluster: DevCluster, checkin: CheckinStandin,
                                                       users_file: Path, ctx: Context) -> None:
    server = ProxyServer(proxy_config(slurm_cluster, checkin, users_file,
                                      auth_failure_limit={"requests_per_second": 0.1, "burst": 3})).start()
    try:
        before = job_ids(slurm_cluster)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            bad = [client.post(SUBMIT, headers=bearer(ctx.extra["forged"]), json=submit_body("slurmlink-bf"))
                   for _ in range(4)]
            assert [r.status_code for r in bad] == [401, 401, 401, 429]
            assert bad[-1].json()["error"] == "TooManyFailures" and int(bad[-1].headers["retry-after"]) >= 1
            # from the same address even a good token waits: the address is what is throttled
            assert client.get(f"/slurm/{V}/jobs", headers=bearer(ctx.tokens["alice"])).status_code == 429
        assert not job_ids(slurm_cluster) - before
    finally:
        server.stop()


def test_upstream_down_is_a_clear_502(slurm_cluster: DevCluster, checkin: CheckinStandin, users_file: Path,
                                      ctx: Context) -> None:
    server = ProxyServer(proxy_config(slurm_cluster, checkin, users_file,
                                      upstream=f"http://127.0.0.1:{free_port()}")).start()
    try:
        started = time.monotonic()
        answer = httpx.get(f"{server.url}/slurm/{V}/jobs", headers=bearer(ctx.tokens["alice"]), timeout=30)
        assert answer.status_code == 502
        assert "slurmrestd is unreachable" in answer.json()["reason"]
        assert time.monotonic() - started < 10
        health = httpx.get(f"{server.admin_url}/healthz", timeout=30)
        assert health.status_code == 503 and "unreachable" in health.json()["reason"]
        public = httpx.get(f"{server.url}/healthz", timeout=30)
        assert public.status_code == 503 and public.json() == {"status": "unavailable"}
    finally:
        server.stop()


def test_issuer_trouble_is_a_503_with_retry_after(proxy: ProxyServer, checkin: CheckinStandin,
                                                  people: dict[str, str], slurm_cluster: DevCluster) -> None:
    fresh = checkin.mint(people["alice"])  # not cached yet: the proxy must ask userinfo
    before = job_ids(slurm_cluster)
    checkin.set_fault("userinfo", status=503)
    try:
        answer = httpx.post(f"{proxy.url}{SUBMIT}", headers=bearer(fresh), json=submit_body("slurmlink-503"),
                            timeout=60)
    finally:
        checkin.clear_faults()
    assert answer.status_code == 503, answer.text
    assert int(answer.headers["retry-after"]) > 0
    assert answer.json()["error"] == "TokenRejected"
    assert not job_ids(slurm_cluster) - before


def test_upstream_that_never_answers_is_a_503(slurm_cluster: DevCluster, checkin: CheckinStandin,
                                              users_file: Path, ctx: Context) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel completes connections; nobody ever answers
    port = silent.getsockname()[1]
    server = ProxyServer(proxy_config(slurm_cluster, checkin, users_file, upstream=f"http://127.0.0.1:{port}",
                                      upstream_timeout_seconds=1)).start()
    try:
        started = time.monotonic()
        answer = httpx.get(f"{server.url}/slurm/{V}/jobs", headers=bearer(ctx.tokens["alice"]), timeout=30)
        assert answer.status_code == 503
        assert answer.headers["retry-after"]
        assert "slurmrestd did not answer" in answer.json()["reason"]
        assert time.monotonic() - started < 10
    finally:
        server.stop()
        silent.close()


def test_no_token_reaches_the_logs(proxy: ProxyServer, ctx: Context, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("DEBUG"):
        httpx.get(f"{proxy.url}/slurm/{V}/jobs", headers=bearer(ctx.tokens["alice"]), timeout=30)
        httpx.get(f"{proxy.url}/slurm/{V}/jobs", headers=bearer(ctx.extra["forged"]), timeout=30)
        raw_request(proxy.port, "DELETE", f"/slurm/{V}/job/{ctx.sentinel}",
                    [*auth("alice")(ctx), ("X-SLURM-USER-TOKEN", ctx.slurm_token)])
    assert caplog.records, "the proxy logs its decisions"
    text = "\n".join(record.getMessage() for record in caplog.records)
    for token in [*ctx.tokens.values(), *ctx.extra.values(), ctx.slurm_token]:
        assert token not in text


@pytest.mark.parametrize("target", ["http://127.0.0.1/slurm/v0.0.38/job/submit", "*"])
def test_odd_request_targets(proxy: ProxyServer, ctx: Context, slurm_cluster: DevCluster, target: str) -> None:
    before = job_ids(slurm_cluster)
    status, _, _ = raw_request(proxy.port, "POST", target, [("Content-Type", "application/json"),
                                                            *auth("alice")(ctx)],
                               json.dumps(submit_body("slurmlink-proxy-odd")).encode())
    assert status in (400, 403)
    assert not job_ids(slurm_cluster) - before


# --- the pure parts, no SLURM needed ---------------------------------------------------------------------------

def test_header_hygiene_drops_every_spelling() -> None:
    from slurmlink.proxy.headers import upstream_headers
    client = [("X-SLURM-USER-NAME", "root"), ("x_slurm_user_name", "root"), ("X-Slurm-User-Name", "root"),
              ("X-SLURM-USER-TOKEN", "t"), ("x-slurm_user-token", "t"), ("X_SLURM_ANYTHING", "1"),
              ("Authorization", "Bearer t"), ("authorization", "Bearer u"), ("Cookie", "a=b"), ("Host", "evil"),
              ("Content-Length", "5"), ("Transfer-Encoding", "chunked"), ("Connection", "keep-alive, X-Custom"),
              ("X-Custom", "hop"), ("X-Forwarded-For", "1.2.3.4"), ("x_forwarded_user", "root"),
              ("Forwarded", "for=x"), ("Keep-Alive", "5"), ("Upgrade", "h2c"), ("Proxy-Authorization", "x"),
              ("TE", "trailers"), ("Content-Type", "application/json"), ("Accept", "*/*")]
    out = upstream_headers(client, user="sltest1", token="SLURMUSER")  # noqa: S106
    assert out == [("Content-Type", "application/json"), ("Accept", "*/*"),
                   ("X-SLURM-USER-NAME", "sltest1"), ("X-SLURM-USER-TOKEN", "SLURMUSER")]


def test_policy_table() -> None:
    from slurmlink.proxy.policy import decide
    allowed = [("GET", "/slurm/v0.0.36/ping"), ("GET", "/slurm/v0.0.45/ping/"), ("GET", "/slurm/v0.0.38/diag/"),
               ("POST", "/slurm/v0.0.40/job/submit"), ("GET", "/slurm/v0.0.38/job/17"),
               ("DELETE", "/slurm/v0.0.38/job/17/"), ("GET", "/slurm/v0.0.38/jobs"), ("GET", "/openapi/v3")]
    for method, path in allowed:
        assert decide(method, path).allowed, (method, path)
    assert decide("GET", "/slurmdb/v0.0.38/job/17", allow_slurmdb=True).allowed
    assert decide("GET", "/slurmdb/v0.0.38/jobs/", allow_slurmdb=True).allowed
    refused = [("GET", "/slurm/v0.0.46/ping"), ("GET", "/slurm/v0.0.3/ping"), ("GET", "/slurm/v0.0.38/ping//"),
               ("GET", "/slurm/v0.0.38/job/-1"), ("GET", "/slurm/v0.0.38/job/1a"), ("GET", "/slurm/v0.0.38/job/"),
               ("POST", "/slurm/v0.0.38/job/17"), ("GET", "/slurm/v0.0.38/jobs?x"), ("GET", "/openapi/v3/"),
               ("GET", "/openapi"), ("get", "/slurm/v0.0.38/jobs/x"), ("GET", "/slurm/v0.0.38/./jobs"),
               ("GET", "/slurm/v0.0.38/%2E%2E/jobs"), ("GET", "slurm/v0.0.38/jobs"), ("GET", ""),
               ("GET", "/slurm/v0.0.38/jobs\x00"), ("GET", "/slurm/v0.0.38\\jobs"),
               ("POST", "/slurmdb/v0.0.38/job/17"), ("DELETE", "/slurmdb/v0.0.38/job/17")]
    for method, path in refused:
        verdict = decide(method, path, allow_slurmdb=True)
        assert not verdict.allowed and verdict.rule and verdict.message, (method, path)
    assert decide("GET", "/slurm/v0.0.38/jobs", "update_time=1%00").rule == "no-nul"
    assert decide("GET", "/slurmdb/v0.0.38/jobs").rule == "slurmdb-disabled"


def test_slurm_token_is_renewed_and_token_file_reread(tmp_path: Path) -> None:
    import jwt as pyjwt

    from slurmlink.proxy.slurm_token import SlurmTokenError, SlurmTokenSource
    key = tmp_path / "jwt.key"
    key.write_bytes(os.urandom(32))
    now = [1_000_000.0]
    source = SlurmTokenSource(slurm_user="slurm", jwt_key_file=str(key), lifespan=300, clock=lambda: now[0])
    first = source.token()
    claims = pyjwt.decode(first, key.read_bytes(), algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {"sun": "slurm", "iat": 1_000_000, "exp": 1_000_300}
    now[0] += 150
    assert source.token() == first
    now[0] += 60  # less than a third of its life left
    assert source.token() != first

    tokens = tmp_path / "slurm.token"
    tokens.write_text("SLURM_JWT=aaa\n")
    from_file = SlurmTokenSource(slurm_user="slurm", token_file=str(tokens))
    assert from_file.token() == "aaa"
    tokens.write_text("bbbb\n")
    assert from_file.token() == "bbbb"
    tokens.write_text("")
    with pytest.raises(SlurmTokenError):
        from_file.token()


def test_rate_limiter_refills() -> None:
    from slurmlink.proxy.ratelimit import RateLimiter
    limiter = RateLimiter(rate=2.0, burst=2)
    assert [limiter.take("a", now=0.0), limiter.take("a", now=0.0)] == [0.0, 0.0]
    assert limiter.take("a", now=0.0) == pytest.approx(0.5)
    assert limiter.take("b", now=0.0) == 0.0
    assert limiter.take("a", now=0.6) == 0.0


def test_config_needs_one_slurm_token_source() -> None:
    from pydantic import ValidationError
    identity = {"issuers": [{"issuer": "https://aai.example.org"}], "policy": {"vos": [VO]},
                "mapping": [{"service_account": {"default": "x"}}]}
    with pytest.raises(ValidationError):
        ProxyConfig.model_validate({"identity": identity})
    with pytest.raises(ValidationError):
        ProxyConfig.model_validate({"identity": identity, "jwt_key_file": "k", "token_file": "t"})
    with pytest.raises(ValidationError):
        ProxyConfig.model_validate({"identity": identity, "jwt_key_file": "k", "surprise": 1})
    config = ProxyConfig.model_validate({"identity": identity, "token_file": "t"})
    assert (config.max_body_bytes, config.max_upstream_connections, config.allow_slurmdb) == (1 << 20, 32, False)


def test_slurmlink_proxy_command_serves(slurm_cluster: DevCluster, checkin: CheckinStandin, users_file: Path,
                                        people: dict[str, str], tmp_path: Path) -> None:
    """`slurmlink proxy -c file` as its own process: configuration file in, a working proxy out."""
    import sys

    import yaml

    config = proxy_config(slurm_cluster, checkin, users_file)
    path = tmp_path / "proxy.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))
    process = subprocess.Popen([sys.executable, "-m", "slurmlink.cli", "proxy", "-c", str(path)],
                               stdout=subprocess.DEVNULL, stderr=open(tmp_path / "proxy.log", "wb"))  # noqa: SIM115
    url = f"http://127.0.0.1:{config.listen.port}"
    try:
        def healthy() -> bool:
            try:
                return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, 30, "slurmlink proxy to answer")
        token = checkin.mint(people["alice"])
        ping = httpx.get(f"{url}/slurm/{V}/ping/", headers=bearer(token), timeout=10)
        assert ping.status_code == 200 and ping.json()["pings"]
        admin = f"http://127.0.0.1:{config.admin.port}"
        assert httpx.get(f"{admin}/healthz", timeout=10).json()["api_version"] == V
        assert "slurmlink_proxy_requests_total" in httpx.get(f"{admin}/metrics", timeout=10).text
    finally:
        process.terminate()
        process.wait(10)
    assert process.returncode == 0  # both servers stopped on SIGTERM
