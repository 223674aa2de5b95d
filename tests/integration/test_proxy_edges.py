"""`slurmlink proxy` at its edges, in front of the real slurmrestd of the test SLURM: claims matched only as
written, enum-like inputs checked whole, the header allow-list and size limits, slow, stalled and greedy
clients, malformed HTTP, and the identity cache's lifetime. Every refusal has the proxy's JSON shape.

Requests that must reach the proxy byte for byte are written on raw sockets (HTTP clients would fix them).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from slurmlink.devcluster import DevCluster
from standins.checkin import CheckinStandin
from tests.harness.waiting import wait_until
from tests.integration.proxy_fixtures import (
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

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.5


@pytest.fixture(scope="module")
def users_file(slurm_cluster: DevCluster, checkin: CheckinStandin, people: dict[str, str],
               tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("proxy-edges") / "users.txt"
    path.write_text("".join(f"{checkin.issuer} {people[who]} {account}\n" for who, account in
                            (("alice", slurm_cluster.users[0]), ("bob", slurm_cluster.users[1]))))
    return path


def edge_config(cluster: DevCluster, checkin: CheckinStandin, users_file: Path, **overrides: Any) -> Any:
    options: dict[str, Any] = {
        "clients": {"header_timeout_seconds": HEADER_TIMEOUT, "body_timeout_seconds": BODY_TIMEOUT},
        "signals": {"slurm_conf": str(cluster.conf_path),
                    "scancel": str(cluster.bin_dir / "scancel") if cluster.bin_dir else "scancel"},
    }
    options.update(overrides)
    return proxy_config(cluster, checkin, users_file, **options)


@pytest.fixture(scope="module")
def proxy(slurm_cluster: DevCluster, checkin: CheckinStandin, users_file: Path) -> Iterator[ProxyServer]:
    server = ProxyServer(edge_config(slurm_cluster, checkin, users_file)).start()
    yield server
    server.stop()


@pytest.fixture()
def alice(checkin: CheckinStandin, people: dict[str, str]) -> str:
    return checkin.mint(people["alice"])


def refusal(data: bytes) -> dict[str, Any]:
    """The proxy's refusal shape: a JSON object with a CamelCase `error` and a sentence as `reason`."""
    answer = json.loads(data)
    assert isinstance(answer, dict) and answer["error"][:1].isupper() and answer["reason"], answer
    return answer


def read_answer(sock: socket.socket, timeout: float) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of the one answer on `sock` (the proxy closes after its refusals)."""
    sock.settimeout(timeout)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), refusal(body)


# --- claims match only as written ------------------------------------------------------------------------------

@pytest.mark.parametrize("entitlement", [
    f"urn:mace:egi.eu:group:{VO.replace('.', '%2E', 1)}:role=member#aai.egi.eu",
    f"urn:mace:egi.eu:group:{VO.replace('.', '%2e')}:role=member#aai.egi.eu",
    f"urn%3Amace:egi.eu:group:{VO}:role=member#aai.egi.eu",
    f"urn:mace:egi.eu:group:{VO}:role=member%23aai.egi.eu",
    f"urn:mace:egi.eu:group:{VO}:role=%6Dember#aai.egi.eu",
    f"urn:mace:egi.eu:group:{VO}:role=member#aai.egi.eu\n",
], ids=["encoded-dot", "all-dots-encoded", "encoded-colon", "encoded-hash", "encoded-role", "trailing-newline"])
def test_escaped_entitlements_never_match_the_vo(proxy: ProxyServer, checkin: CheckinStandin, users_file: Path,
                                                 slurm_cluster: DevCluster, entitlement: str) -> None:
    subject = checkin.new_subject()
    checkin.set_user(subject, eduperson_entitlement=[entitlement])
    with users_file.open("a") as mapped:  # mapped, so that only the VO check can refuse it
        mapped.write(f"{checkin.issuer} {subject} {slurm_cluster.users[0]}\n")
    before = job_ids(slurm_cluster)
    answer = httpx.post(f"{proxy.url}/slurm/{V}/job/submit", headers=bearer(checkin.mint(subject)), timeout=30,
                        json=submit_body("slurmlink-proxy-escaped"))
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"] == "NotAuthorized"
    assert VO in answer.json()["reason"]
    assert not job_ids(slurm_cluster) - before


# --- enum-like inputs, checked whole -------------------------------------------------------------------------

@pytest.mark.parametrize("method, target, status", [
    ("GET", f"/slurm/{V}%0A/ping", 403),  # a version with a trailing newline
    ("GET", f"/slurm/{V}/job/1%0A", 403),
    ("GET", f"/slurm/{V}/job/0", 404),
    ("DELETE", f"/slurm/{V}/job/0", 404),
    ("GET", f"/slurm/{V}/job/007", 404),  # SLURM would read job 7: what is checked must be what is acted on
    ("DELETE", f"/slurm/{V}/job/00", 404),
    ("GET", "/slurmlink/v1/jobs/0/status", 404),
    ("POST", "/slurmlink/v1/jobs/0/signal?signal=TERM", 404),
    ("GET", "/slurmlink/v1/statuses?jobs=0", 400),
    ("GET", "/slurmlink/v1/statuses?jobs=1,%D9%A1", 400),  # an Arabic-Indic digit one
    ("GET", "/slurmlink/v1/jobs/1/logs/main%0A", 400),  # a container name with a trailing newline
    ("GET", "/slurmlink/v1/jobs/1/logs/ma%69n", 400),  # encoded: a name is matched as written
    ("GET", "/slurmlink/v1/jobs/1/logs/Main", 400),
])
def test_enum_like_inputs_are_checked_whole(proxy: ProxyServer, alice: str, method: str, target: str,
                                            status: int) -> None:
    answered, _, data = raw_request(proxy.port, method, target, [("Authorization", f"Bearer {alice}")])
    assert answered == status, data
    refusal(data)


def test_signal_names_are_checked_whole(proxy: ProxyServer, alice: str, slurm_cluster: DevCluster) -> None:
    submitted = httpx.post(f"{proxy.url}/slurm/{V}/job/submit", headers=bearer(alice), timeout=30,
                           json=submit_body("slurmlink-proxy-signalled", "#!/bin/bash\nsleep 600"))
    assert submitted.status_code == 200, submitted.text
    job_id = str(submitted.json()["job_id"])
    try:
        for signal in ("TERM%0A", "TERM%0D", "%E2%84%AAILL", "TE%20RM", "%EF%BC%91%EF%BC%95"):  # Kelvin sign, wide 15
            status, _, data = raw_request(proxy.port, "POST", f"/slurmlink/v1/jobs/{job_id}/signal?signal={signal}",
                                          [("Authorization", f"Bearer {alice}")])
            assert status == 400, (signal, data)
            assert "not a signal" in refusal(data)["reason"]
    finally:
        httpx.delete(f"{proxy.url}/slurm/{V}/job/{job_id}", headers=bearer(alice), timeout=30)


def test_unknown_jobs_are_404(proxy: ProxyServer, alice: str) -> None:
    unknown = "987654321"
    with httpx.Client(base_url=proxy.url, headers=bearer(alice), timeout=30) as client:
        for path in (f"/slurmlink/v1/jobs/{unknown}/status", f"/slurmlink/v1/jobs/{unknown}/signal?signal=TERM"):
            answer = client.request("POST" if "signal" in path else "GET", path)
            assert answer.status_code == 404, answer.text
            refusal(answer.content)
        for method in ("GET", "DELETE"):
            answer = client.request(method, f"/slurm/{V}/job/{unknown}")
            assert answer.status_code == 404, answer.text


# --- headers and bodies ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    [("X-Big", "x" * 20_000)],
    [(f"X-Many-{i}", "y" * 100) for i in range(200)],
], ids=["one-large-header", "many-headers"])
def test_oversized_headers_are_431(proxy: ProxyServer, alice: str, slurm_cluster: DevCluster,
                                   headers: list[tuple[str, str]]) -> None:
    before = job_ids(slurm_cluster)
    status, _, data = raw_request(proxy.port, "POST", f"/slurm/{V}/job/submit",
                                  [("Authorization", f"Bearer {alice}"), ("Content-Type", "application/json"),
                                   *headers], json.dumps(submit_body("slurmlink-proxy-big-headers")).encode())
    assert status == 431, data
    assert refusal(data)["error"] == "HeadersTooLarge"
    assert not job_ids(slurm_cluster) - before


def test_a_token_of_8_kib_still_fits(proxy: ProxyServer, alice: str) -> None:
    status, _, data = raw_request(proxy.port, "GET", f"/slurm/{V}/ping",
                                  [("Authorization", f"Bearer {'a' * 8192}"), ("Accept", "application/json")])
    assert status == 401, data  # refused for what it is, not for its size


@pytest.mark.parametrize("request_bytes", [
    b"GARBAGE\r\n\r\n",
    b"GET /slurm/x HTTP/1.1\r\nHost: a\r\nBad Header Line\r\n\r\n",
    b"POST /slurm/x HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n",
    b"POST /slurm/x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"GET /slurm/x HTTP/1.1\r\nHost: a\r\nHost: b\r\nX: \x00\r\n\r\n",
    b"POST /slurm/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET /slurm/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
], ids=["not-http", "bad-header-line", "bad-content-length", "two-content-lengths", "nul-in-header",
        "length-and-chunked", "unknown-transfer-coding"])
def test_malformed_http_gets_the_json_shape(proxy: ProxyServer, request_bytes: bytes) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(request_bytes)
        status, answer = read_answer(sock, 10)
    assert status in (400, 501) and answer["error"] == "BadRequest", answer


@pytest.mark.parametrize("method, path, status", [("POST", "/healthz", 405), ("DELETE", "/healthz", 405)])
def test_the_proxys_own_routes_refuse_in_its_shape(proxy: ProxyServer, method: str, path: str,
                                                   status: int) -> None:
    answered, _, data = raw_request(proxy.port, method, path, [])
    assert answered == status, data
    refusal(data)


# --- slow, stalled and departing clients ---------------------------------------------------------------------

def test_a_connection_that_sends_nothing_is_closed(proxy: ProxyServer) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        status, answer = read_answer(sock, HEADER_TIMEOUT + 10)
    assert status == 408 and answer["error"] == "RequestTimeout", answer
    assert time.monotonic() - started < HEADER_TIMEOUT + 5


def test_headers_dripped_slowly_are_cut_off(proxy: ProxyServer, alice: str) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(f"GET /slurm/{V}/ping HTTP/1.1\r\nHost: a\r\n".encode())
        status, answer = read_answer(sock, HEADER_TIMEOUT + 10)
    assert status == 408 and answer["error"] == "RequestTimeout", answer


def test_a_stalled_body_is_a_408(proxy: ProxyServer, alice: str, slurm_cluster: DevCluster) -> None:
    before = job_ids(slurm_cluster)
    body = json.dumps(submit_body("slurmlink-proxy-stalled")).encode()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(f"POST /slurm/{V}/job/submit HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {alice}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                     + body[:10])
        status, answer = read_answer(sock, BODY_TIMEOUT + 10)
    assert status == 408 and answer["error"] == "RequestTimeout", answer
    assert not job_ids(slurm_cluster) - before


def test_a_client_leaving_mid_upload_leaves_one_log_line(proxy: ProxyServer, alice: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="slurmlink.proxy")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(f"POST /slurm/{V}/job/submit HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {alice}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 50000\r\n\r\n{\"job\":".encode())
    wait_until(lambda: any("left before its body" in r.getMessage() for r in caplog.records), 10,
               "the proxy to log the departure")
    left = [r for r in caplog.records if "left before its body" in r.getMessage()]
    assert len(left) == 1, [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if r.exc_info or "Exception in ASGI" in r.getMessage()]


# --- connection caps -------------------------------------------------------------------------------------------

def connect_from(address: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((address, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def test_connections_are_capped_per_address_and_in_total(slurm_cluster: DevCluster, checkin: CheckinStandin,
                                                          users_file: Path, alice: str) -> None:
    config = edge_config(slurm_cluster, checkin, users_file, clients={
        "header_timeout_seconds": 60, "max_connections": 5, "max_connections_per_address": 3})
    server = ProxyServer(config).start()
    held: list[socket.socket] = []
    try:
        held += [connect_from("127.0.0.1", server.port) for _ in range(3)]
        with connect_from("127.0.0.1", server.port) as fourth:
            status, answer = read_answer(fourth, 10)
        assert status == 429 and answer["error"] == "TooManyConnections", answer
        held += [connect_from("127.0.0.2", server.port) for _ in range(2)]
        with connect_from("127.0.0.3", server.port) as sixth:
            status, answer = read_answer(sixth, 10)
        assert status == 503 and answer["error"] == "TooManyConnections", answer
        held.pop(0).close()  # a closed connection makes room again

        def served() -> bool:
            try:
                return httpx.get(f"{server.url}/slurm/{V}/ping", headers=bearer(alice), timeout=10).status_code == 200
            except httpx.HTTPError:
                return False
        wait_until(served, 10, "room for a connection after one closed")
    finally:
        for sock in held:
            sock.close()
        server.stop()


# --- the identity cache and token lifetimes ----------------------------------------------------------------------

def test_a_token_issued_for_too_long_is_refused(proxy: ProxyServer, checkin: CheckinStandin,
                                                people: dict[str, str]) -> None:
    token = checkin.mint(people["alice"], lifetime=2 * 86400)  # the default maximum is a day
    answer = httpx.get(f"{proxy.url}/slurm/{V}/ping", headers=bearer(token), timeout=30)
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"] == "TokenRejected" and "(exp - iat)" in answer.json()["reason"]


def test_a_revoked_token_stops_changing_jobs_at_once(slurm_cluster: DevCluster, checkin: CheckinStandin,
                                                     users_file: Path, people: dict[str, str]) -> None:
    """With `token_recheck_on_change_seconds: 0` a change asks the issuer every time; reads use the cache."""
    server = ProxyServer(edge_config(slurm_cluster, checkin, users_file, token_recheck_on_change_seconds=0)).start()
    try:
        token = checkin.mint(people["alice"])
        with httpx.Client(base_url=server.url, headers=bearer(token), timeout=30) as client:
            submitted = client.post(f"/slurm/{V}/job/submit", json=submit_body("slurmlink-proxy-revoked"))
            assert submitted.status_code == 200, submitted.text
            job = f"/slurm/{V}/job/{submitted.json()['job_id']}"
            checkin.revoke(token)
            assert client.get(job).status_code == 200  # a read: the cached identity (cache_ttl_seconds)
            before = job_ids(slurm_cluster)
            refused = client.post(f"/slurm/{V}/job/submit", json=submit_body("slurmlink-proxy-revoked"))
            assert refused.status_code == 401, refused.text
            assert refused.json()["error"] == "TokenRejected"
            assert client.delete(job).status_code == 401
            assert not job_ids(slurm_cluster) - before
    finally:
        server.stop()


# --- what reaches slurmrestd -------------------------------------------------------------------------------------

class Recorder(http.server.BaseHTTPRequestHandler):
    """Stands where slurmrestd stands, to show the headers the proxy sends (slurmrestd cannot show them)."""

    seen: list[list[tuple[str, str]]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        Recorder.seen.append(list(self.headers.items()))
        body = json.dumps({"meta": {}, "errors": [], "warnings": [], "jobs": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_only_allowed_client_headers_reach_slurmrestd(slurm_cluster: DevCluster, checkin: CheckinStandin,
                                                      users_file: Path, alice: str) -> None:
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    server = ProxyServer(edge_config(slurm_cluster, checkin, users_file, api_version=V,
                                     upstream=f"http://127.0.0.1:{upstream.server_address[1]}")).start()
    try:
        client_headers = [("Authorization", f"Bearer {alice}"), ("Accept", "application/json"),
                          ("Content-Type", "application/json"), ("Content-Type", "text/evil"),
                          ("User-Agent", "evil-agent"), ("Cookie", "session=evil"), ("X-Custom", "evil"),
                          ("Origin", "https://evil.example.org"), ("Referer", "https://evil.example.org/"),
                          ("X-Real-IP", "10.6.6.6"), ("Content_Type", "evil"), ("Accept-Language", "evil"),
                          ("Range", "bytes=0-1"), ("If-None-Match", "\"evil\""), ("Via", "evil"),
                          ("X-SLURM-USER-NAME", "root"), ("Forwarded", "for=evil")]
        status, _, data = raw_request(server.port, "GET", f"/slurm/{V}/jobs", client_headers)
        assert status == 200, data
        sent = Recorder.seen[-1]
        assert not [(k, v) for k, v in sent if "evil" in v or "6.6.6" in v], sent
        assert {k.lower() for k, _ in sent} <= {"host", "accept", "content-type", "accept-encoding", "connection",
                                                "user-agent", "x-slurm-user-name", "x-slurm-user-token"}, sent
        assert [v for k, v in sent if k.lower() == "x-slurm-user-name"] == [slurm_cluster.users[0]]
        assert [v for k, v in sent if k.lower() == "content-type"] == ["application/json"]
    finally:
        server.stop()
        upstream.shutdown()


# --- clients that stop reading ----------------------------------------------------------------------------------

class BusySite(http.server.BaseHTTPRequestHandler):
    """Stands where slurmrestd stands: a job listing as large as a busy site's (8 MB, more than the sockets hold;
    the test cluster's answers fit in them), and a small answer to anything else."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = (b'{"jobs": ["' + b"x" * (8 << 20) + b'"]}') if self.path.endswith("/jobs") else b'{"pings": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the proxy may give up on a stalled client's answer
            self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_client_that_stops_reading_its_answer_loses_its_connection_not_slurmrestds(
        slurm_cluster: DevCluster, checkin: CheckinStandin, users_file: Path, alice: str,
        caplog: pytest.LogCaptureFixture) -> None:
    # One connection to slurmrestd in all: while a client that stopped reading held it, everyone else got 503.
    caplog.set_level(logging.INFO)
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), BusySite)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    server = ProxyServer(edge_config(slurm_cluster, checkin, users_file, api_version=V, max_upstream_connections=1,
                                     upstream=f"http://127.0.0.1:{upstream.server_address[1]}",
                                     clients={"send_timeout_seconds": 1.0})).start()
    try:
        with socket.socket() as stalled:
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.connect(("127.0.0.1", server.port))
            stalled.sendall(f"GET /slurm/{V}/jobs HTTP/1.1\r\nHost: proxy\r\nAuthorization: Bearer {alice}\r\n\r\n"
                            .encode())
            assert stalled.recv(1024).startswith(b"HTTP/1.1 200")  # the answer began; nothing more is read
            answer = httpx.get(f"{server.url}/slurm/{V}/ping", headers=bearer(alice), timeout=30)
            assert answer.status_code == 200, answer.text  # served once the stalled client's send timed out
            stalled.settimeout(30)
            received = 0
            with contextlib.suppress(ConnectionResetError):
                while chunk := stalled.recv(1 << 20):
                    received += len(chunk)
            assert received < 8 << 20  # the proxy closed the connection before the whole answer went out
    finally:
        server.stop()
        upstream.shutdown()
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "took no part of its answer" in m]) == 1, messages
    assert not [m for m in messages if "Exception in ASGI" in m or "without completing" in m], messages


# --- upgrades the edge does not take as one ----------------------------------------------------------------

@pytest.mark.parametrize("verb", ["exec", "portforward"])
def test_an_spdy_upgrade_without_connection_upgrade_is_refused_not_a_500(
        slurm_cluster: DevCluster, checkin: CheckinStandin, users_file: Path, alice: str, verb: str,
        caplog: pytest.LogCaptureFixture) -> None:
    # Without `Connection: Upgrade` llhttp reads no upgrade: the request is served on the httptools edge, which
    # cannot switch. Refused before the job is looked up, not a bug's 500 and traceback per request.
    srun = str(slurm_cluster.bin_dir / "srun") if slurm_cluster.bin_dir else "/usr/bin/srun"
    server = ProxyServer(edge_config(slurm_cluster, checkin, users_file, interactive={
        "enabled": True, "srun": srun, "slurm_conf": str(slurm_cluster.conf_path)})).start()
    submitted = httpx.post(f"{server.url}/slurm/{V}/job/submit", headers=bearer(alice), timeout=30,
                           json=submit_body("slurmlink-proxy-no-connection-upgrade", "#!/bin/bash\nsleep 600"))
    assert submitted.status_code == 200, submitted.text
    job_id = str(submitted.json()["job_id"])
    try:
        wait_until(lambda: job_state(slurm_cluster, job_id)[0] == "RUNNING", 60, "the job to run")
        status, _, data = raw_request(server.port, "POST", f"/slurmlink/v1/jobs/{job_id}/{verb}?output=1",
                                      [("Authorization", f"Bearer {alice}"), ("Upgrade", "SPDY/3.1"),
                                       ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
                                       ("X-Stream-Protocol-Version", "portforward.k8s.io")],
                                      b'{"command": ["id"]}')  # raw_request says `Connection: close`
    finally:
        httpx.delete(f"{server.url}/slurm/{V}/job/{job_id}", headers=bearer(alice), timeout=30)
        server.stop()
    assert (status, refusal(data)["error"]) == (400, "UpgradeRequired"), data
    assert not [r for r in caplog.records if r.exc_info or "nternal" in r.getMessage()], caplog.records


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_http2_over_plain_http_is_answered_in_http_1_1(proxy: ProxyServer, alice: str) -> None:
    """curl --http2 asks to upgrade to h2c (RFC 7540's, on any request, body or not): the proxy ignores it."""
    def curl(path: str, *options: str) -> tuple[str, str]:
        done = subprocess.run(["curl", "--http2", "-sS", "-H", f"Authorization: Bearer {alice}", *options,
                               "-w", "\n%{http_code} %{http_version}", f"{proxy.url}{path}"],
                              capture_output=True, text=True, timeout=60, check=True)
        body, _, status = done.stdout.rpartition("\n")
        return body, status

    body, status = curl(f"/slurm/{V}/ping")
    assert status == "200 1.1", body
    body, status = curl(f"/slurm/{V}/job/submit", "-H", "Content-Type: application/json", "--data-binary",
                        json.dumps(submit_body("slurmlink-proxy-curl-http2", "#!/bin/bash\ntrue")))
    assert status == "200 1.1", body
    httpx.delete(f"{proxy.url}/slurm/{V}/job/{json.loads(body)['job_id']}", headers=bearer(alice), timeout=30)
