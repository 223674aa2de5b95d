"""The pure parts of the proxy's edges: the policy's job ids, the header allow-list, the connection counts,
the answers the HTTP edge writes itself and what it refuses of a parsed request's head (the HTTP edge itself,
served on loopback: test_proxy_edge_http.py)."""

from __future__ import annotations

import json

import h11
import pytest

from slurmlink.edge import EdgeLimits, OpenConnections, head_end, head_refusal, refusal_bytes, switches_to_spdy
from slurmlink.proxy.headers import upstream_headers
from slurmlink.proxy.policy import MAX_REMEMBERED_TARGET, decide, decide_remembered, is_job_id


@pytest.mark.parametrize("text, valid", [
    ("1", True), ("17", True), ("999999999999", True), ("0", False), ("00", False), ("007", False),
    ("", False), ("1\n", False), ("١", False), ("²", False), ("+1", False), (" 1", False),
])
def test_job_ids_as_slurm_writes_them(text: str, valid: bool) -> None:
    assert is_job_id(text) is valid


@pytest.mark.parametrize("method, path", [
    ("GET", "/slurm/v0.0.40/job/0"), ("DELETE", "/slurm/v0.0.40/job/0/"), ("GET", "/slurm/v0.0.40/job/0042"),
    ("GET", "/slurmdb/v0.0.40/job/0"), ("GET", "/slurmlink/v1/jobs/0/status"),
    ("GET", "/slurmlink/v1/jobs/01/logs/main"), ("POST", "/slurmlink/v1/jobs/0/signal"),
])
def test_a_job_id_no_job_can_have_is_a_404(method: str, path: str) -> None:
    verdict = decide(method, path, allow_slurmdb=True)
    assert (verdict.allowed, verdict.status, verdict.rule) == (False, 404, "no-such-job")


@pytest.mark.parametrize("path", [
    "/slurm/v0.0.40/job/1\n", "/slurm/v0.0.40\n/ping", "/slurm/v0.0.40/ping\n", "/openapi/v3\n",
    "/slurm/v0.0.40/job/1%0A", "/slurm/v0.0.40/ping%0a",
])
def test_paths_are_matched_whole(path: str) -> None:
    assert not decide("GET", path).allowed


@pytest.mark.parametrize("method, path, query", [
    ("POST", "/slurm/v0.0.40/job/submit", ""), ("GET", "/slurm/v0.0.40/job/0", ""), ("GET", "/slurm/v0.0.40/job/7", ""),
    ("DELETE", "/slurm/v0.0.40/job/7", ""), ("GET", "/slurmlink/v1/statuses", "jobs=1,2"), ("GET", "/slurm/x", ""),
    ("GET", "/slurm/v0.0.40/jobs", "%00"), ("GET", "/slurm/v0.0.40/" + "a" * MAX_REMEMBERED_TARGET, ""),
])
def test_remembered_decisions_are_decides(method: str, path: str, query: str) -> None:
    for allow_slurmdb in (False, True):
        for _ in range(2):  # the second time from memory
            assert decide_remembered(method, path, query, allow_slurmdb=allow_slurmdb) == \
                decide(method, path, query, allow_slurmdb=allow_slurmdb)


def test_only_allowed_headers_pass_the_first_of_each_as_spelled() -> None:
    out = upstream_headers([("content-type", "application/json"), ("Content-Type", "text/plain"),
                            ("content_type", "x"), ("accept", "application/json"), ("user-agent", "u"),
                            ("x-custom", "1"), ("origin", "o"), ("x-slurm-user-name", "root")],
                           user="alice", token="T")  # noqa: S106
    assert out == [("content-type", "application/json"), ("accept", "application/json"),
                   ("X-SLURM-USER-NAME", "alice"), ("X-SLURM-USER-TOKEN", "T")]


def test_connections_are_counted_per_address_and_in_total() -> None:
    limits = EdgeLimits(max_connections=3, max_connections_per_address=2)
    counts = OpenConnections()
    assert counts.admit("a", limits) is None and counts.admit("a", limits) is None
    assert counts.admit("a", limits)[:2] == (429, "TooManyConnections")  # type: ignore[index]
    assert counts.admit("b", limits) is None
    assert counts.admit("c", limits)[:2] == (503, "TooManyConnections")  # type: ignore[index]
    counts.release("a")
    assert counts.admit("c", limits) is None
    for address in ("a", "b", "c"):
        counts.release(address)
    assert (counts.total, counts.by_address) == (0, {})


def test_the_edges_answers_are_whole_http_with_the_json_shape() -> None:
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "a")]))
    client.receive_data(refusal_bytes(431, "HeadersTooLarge", "too large"))
    response = client.next_event()
    assert isinstance(response, h11.Response) and response.status_code == 431
    assert (b"connection", b"close") in list(response.headers)
    data = client.next_event()
    assert isinstance(data, h11.Data) and json.loads(data.data) == {"error": "HeadersTooLarge",
                                                                    "reason": "too large"}
    assert (b"retry-after", b"5") in list(h11_head(refusal_bytes(429, "TooManyConnections", "x")).headers)


def h11_head(answer: bytes) -> h11.Response:
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "a")]))
    client.receive_data(answer)
    event = client.next_event()
    assert isinstance(event, h11.Response)
    return event


def judged(target: bytes = b"/", headers: tuple[tuple[bytes, bytes], ...] = ((b"host", b"a"),),
           version: str = "1.1", upgrade: bool = False, may_switch: bool = False) -> tuple[int, str] | None:
    refused = head_refusal(method="POST", target=target, http_version=version, headers=list(headers),
                           upgrade=upgrade, may_switch=may_switch, max_header_bytes=16 * 1024)
    return refused[:2] if refused else None


HOST = (b"host", b"a")


@pytest.mark.parametrize("target, headers, version, upgrade, status", [
    (b"/", (HOST, (b"x-big", b"x" * 20_000)), "1.1", False, 431),
    (b"/" + b"a" * 20_000, (HOST,), "1.1", False, 431),
    (b"/", (HOST, (b"content-length", b"5"), (b"transfer-encoding", b"chunked")), "1.1", False, 400),
    (b"/", (HOST, (b"transfer-encoding", b"chunked"), (b"content-length", b"5")), "1.1", False, 400),
    (b"/", (HOST, (b"transfer-encoding", b"gzip, chunked")), "1.1", False, 400),
    (b"/", (HOST, (b"transfer-encoding", b"chunked"), (b"transfer-encoding", b"chunked")), "1.1", False, 400),
    (b"/", (HOST, (b"transfer-encoding", b"chunked")), "1.0", False, 400),  # RFC 9112 6.1: faulty framing
    (b"/", (), "1.1", False, 400),
    (b"/", (HOST, (b"host", b"b")), "1.1", False, 400),
    (b"/", (HOST,), "0.9", False, 400),
    (b"/", (HOST,), "2.0", False, 400),
    (b"http://evil.example.org/slurm/v0.0.40/job/submit", (HOST,), "1.1", False, 400),
    (b"*", (HOST,), "1.1", False, 400),
    (b"example.org:443", (HOST,), "1.1", False, 400),
    (b"/slurm/v0.0.40/jobs#x", (HOST,), "1.1", False, 400),
    (b"/", (HOST, (b"connection", b"upgrade"), (b"upgrade", b"h2c"), (b"content-length", b"5")), "1.1", True, 400),
    (b"/", (HOST, (b"connection", b"upgrade"), (b"upgrade", b"h2c"), (b"transfer-encoding", b"chunked")), "1.1",
     True, 400),
    (b"/", (HOST, (b"connection", b"upgrade"), (b"upgrade", b"SPDY/3.1, h2c")), "1.1", True, 400),
], ids=["one-large-header", "long-target", "length-and-chunked", "chunked-and-length", "other-coding",
        "chunked-twice", "chunked-in-1.0", "no-host", "two-hosts", "http-0.9", "http-2.0", "absolute-form",
        "asterisk-form", "authority-form", "fragment", "upgrade-with-length", "upgrade-with-chunks",
        "upgrade-offering-spdy"])
def test_heads_llhttp_reads_and_the_edge_refuses(target: bytes, headers: tuple[tuple[bytes, bytes], ...],
                                                 version: str, upgrade: bool, status: int) -> None:
    assert judged(target, headers, version, upgrade) == (status, "HeadersTooLarge" if status == 431 else "BadRequest")


@pytest.mark.parametrize("target, headers, version", [
    (b"/slurm/v0.0.40/jobs", (HOST, (b"authorization", b"Bearer " + b"t" * 8192)), "1.1"),  # an 8 KiB token
    (b"/slurm/v0.0.40/job/submit", (HOST, (b"transfer-encoding", b"Chunked ")), "1.1"),
    (b"/slurm/v0.0.40/job/submit?a=b", (HOST, (b"content-length", b"10")), "1.1"),
    (b"/", (), "1.0"),  # HTTP/1.0 needs no Host
])
def test_ordinary_heads_pass(target: bytes, headers: tuple[tuple[bytes, bytes], ...], version: str) -> None:
    assert judged(target, headers, version) is None


@pytest.mark.parametrize("headers", [
    (HOST, (b"connection", b"Upgrade, HTTP2-Settings"), (b"upgrade", b"h2c")),  # curl --http2 over http
    (HOST, (b"connection", b"Upgrade"), (b"upgrade", b"websocket"), (b"content-length", b"00")),
])
def test_an_upgrade_not_served_without_a_body_passes_to_be_ignored(headers: tuple[tuple[bytes, bytes], ...]) -> None:
    assert judged(b"/slurm/v0.0.40/ping", headers, upgrade=True) is None


SPDY_UPGRADE = (HOST, (b"connection", b"Upgrade"), (b"upgrade", b"SPDY/3.1"))


def test_only_a_post_switching_to_spdy_alone_may_switch() -> None:
    assert switches_to_spdy("POST", list(SPDY_UPGRADE))
    assert switches_to_spdy("POST", [HOST, (b"upgrade", b"spdy/3.1 ")])
    assert not switches_to_spdy("GET", list(SPDY_UPGRADE))
    assert not switches_to_spdy("CONNECT", list(SPDY_UPGRADE))
    for offered in ([(b"upgrade", b"websocket")], [(b"upgrade", b"SPDY/3.1, h2c")],
                    [(b"upgrade", b"SPDY/3.1"), (b"upgrade", b"h2c")], []):
        assert not switches_to_spdy("POST", [HOST, *offered]), offered
    assert judged(b"/slurmlink/v1/jobs/4/exec", SPDY_UPGRADE, upgrade=True, may_switch=True) is None
    assert judged(b"/slurmlink/v1/jobs/4/exec", SPDY_UPGRADE, upgrade=True, may_switch=False) == (400, "BadRequest")
    assert judged(b"/slurmlink/v1/jobs/4/exec", SPDY_UPGRADE[1:], upgrade=True, may_switch=True) == (400, "BadRequest")


@pytest.mark.parametrize("data, start, tail, end", [
    (b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody", 0, b"", 27),
    (b"xxGET / HTTP/1.1\r\n\r\n", 2, b"", 20),
    (b"\r\n\r\nGET / HTTP/1.1\r\n\r\n", 4, b"", 22),  # the caller skips empty lines before a request line
    (b"\nbody", 0, b"\r\n\r", 1),  # the empty line spans two reads
    (b"\r\nbody", 0, b"a\r\n", 2),
    (b"\r\n\r\n", 0, b"abc", 4),
    (b"GET / HTTP/1.1\r\nX: " + b" " * 100, 0, b"", 119),  # not whole: the read counts whole
])
def test_a_heads_end_is_found_in_raw_bytes(data: bytes, start: int, tail: bytes, end: int) -> None:
    assert head_end(data, start, tail) == end


@pytest.mark.parametrize("job_id, signal", [
    ("42", "TERM\n"), ("42", "TERM\r"), ("42", "\u212aILL"), ("42", "\uff11\uff15"), ("42", "1\n"), ("42", "TE RM"),
    ("42\n", "TERM"), ("4\u00b2", "TERM"), ("42_1\n", "TERM"),
])
def test_scancel_checks_job_ids_and_signals_whole(job_id: str, signal: str) -> None:
    from slurmlink.slurm.base import SlurmError
    from slurmlink.slurm.commands import scancel
    with pytest.raises(SlurmError):
        scancel.argv(job_id, signal)
