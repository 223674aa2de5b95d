"""The one interLink client's requests, and slurmlink's own bodies, as both sides read them."""

from __future__ import annotations

import pytest

from slurmlink.wire import names
from slurmlink.wire.client import ApiCallError, RouteUnsupported, create_body, log_request
from slurmlink.wire.interlink import parse_create, parse_log_request
from slurmlink.wire.projected import ProjectedWrite, parse_body

POD = {"metadata": {"name": "p", "namespace": "team-a", "uid": "u-1"},
       "spec": {"containers": [{"name": "main", "image": "debian"}]}}


def test_create_body_is_what_the_api_reads() -> None:
    secret = {"metadata": {"name": "s"}, "data": {}}
    body = create_body(POD, None, [secret])
    assert body["configmaps"] is None and body["jobscriptURL"] == ""  # as the Go virtual kubelet sends it
    request = parse_create(body)
    assert (request.uid, request.secrets, request.configmaps) == ("u-1", [secret], [])


def test_log_request_is_what_the_api_reads() -> None:
    query = parse_log_request(log_request(POD, "main", tail=3, previous=True).to_wire())
    assert (query.namespace, query.pod_uid, query.container_name) == ("team-a", "u-1", "main")
    assert (query.opts.tail, query.opts.previous, query.opts.follow) == (3, True, False)


def test_projected_write_round_trip() -> None:
    sent = ProjectedWrite("u-1", [("kube-api-access", "token", b"eyJ.a.b")])
    assert parse_body(sent.to_wire()) == sent


def test_dropped_flags_header_round_trip() -> None:
    assert names.dropped_flags(names.dropped_flags_value(["--job-name", "--chdir"])) == ["--job-name", "--chdir"]
    assert names.dropped_flags(None) == names.dropped_flags("") == []


@pytest.mark.parametrize("status, transient", [(0, True), (503, True), (429, True), (400, False), (404, False)])
def test_api_call_errors(status: int, transient: bool) -> None:
    error = ApiCallError("/create", status, "why")
    assert (error.transient, error.message, error.reason) == (transient, "why", "ApiCallFailed")
    assert str(error) == f"/create: {'unreachable' if status == 0 else f'HTTP {status}'}: why"
    assert isinstance(RouteUnsupported(names.PROJECTED_ROUTE, 404, ""), ApiCallError)
