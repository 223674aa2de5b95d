"""The REST backend's job listing against what SLURM 24.11's slurmrestd answers to `jobs?update_time=`.

The answers replayed here are the ones measured live (issue 11): v0.0.42 says "nothing changed" with a
`200`, `jobs: []` and a warning (never a `304`); v0.0.40 and v0.0.41 refuse a numeric `update_time` with
`422` and errors 9202/9000 but take SLURM's "now-N" form; v0.0.38 (22.05) answers `304`. The live tests
run the same paths against the real daemons (tests/integration); these pin the decisions without them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from slurmlink.slurm.rest import RestBackend, RestConfig
from slurmlink.slurm.rest_shapes import unchanged_listing

RUNNING = {"jobs": [{"job_id": 7, "name": "slurmlink-a", "user_name": "sltest1", "job_state": ["RUNNING"],
                     "current_working_directory": "/jobs/a"}], "warnings": [], "errors": []}
NO_CHANGES = {"jobs": [], "errors": [], "warnings": [{
    "description": "No job changes since update_time[1764878400]", "source": "_op_handler_jobs"}]}
REFUSED = {"jobs": [], "warnings": [], "errors": [
    {"description": "Parsing of 1764878400 for timestamp failed", "error_number": 9202, "error": "x",
     "source": "update_time"},
    {"description": "Rejecting request. Failure parsing query parameters", "error_number": 9000, "error": "y",
     "source": "_op_handler_jobs"}]}


def test_only_the_no_changes_warning_or_a_304_means_unchanged() -> None:
    assert unchanged_listing(304, None)
    assert unchanged_listing(200, NO_CHANGES)
    assert not unchanged_listing(200, {"jobs": [], "warnings": [], "errors": []})  # really no jobs left
    assert not unchanged_listing(200, RUNNING)
    assert not unchanged_listing(422, REFUSED)


def backend(version: str, answers: list[tuple[int, Any]], seen: list[httpx.Request]) -> RestBackend:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status, body = answers.pop(0) if len(answers) > 1 else answers[0]
        return httpx.Response(status, json=body) if body is not None else httpx.Response(status)

    http = httpx.AsyncClient(base_url="http://site", transport=httpx.MockTransport(handler))
    return RestBackend(RestConfig(url="http://site", api_version=version), http=http)


def listings(b: RestBackend, times: int) -> list[list[str]]:
    async def go() -> list[list[str]]:
        out = []
        for _ in range(times):
            out.append([job.job_id for job in await b._listing("service", "token")])
        await b.close()
        return out
    return asyncio.run(go())


def test_v42_no_changes_keeps_the_jobs() -> None:
    seen: list[httpx.Request] = []
    b = backend("v0.0.42", [(200, RUNNING), (200, NO_CHANGES)], seen)
    assert listings(b, 3) == [["7"], ["7"], ["7"]]
    assert "update_time" not in seen[0].url.params and "update_time" in seen[1].url.params


def test_v38_304_keeps_the_jobs() -> None:
    seen: list[httpx.Request] = []
    b = backend("v0.0.38", [(200, RUNNING), (304, None)], seen)
    assert listings(b, 2) == [["7"], ["7"]]


def test_v40_and_v41_send_update_time_as_now_minus_seconds() -> None:
    for version in ("v0.0.40", "v0.0.41"):
        seen: list[httpx.Request] = []
        b = backend(version, [(200, RUNNING), (200, NO_CHANGES)], seen)
        assert listings(b, 2) == [["7"], ["7"]]
        sent = seen[1].url.params["update_time"]
        assert sent.startswith("now-") and 2 <= int(sent[4:]) < 10


def test_update_time_refused_means_full_listings_from_then_on() -> None:
    seen: list[httpx.Request] = []
    b = backend("v0.0.43", [(200, RUNNING), (422, REFUSED), (200, RUNNING)], seen)
    assert listings(b, 3) == [["7"], ["7"], ["7"]]
    # first full, then refused with update_time and repeated without; never sent again
    assert ["update_time" in r.url.params for r in seen] == [False, True, False, False]


def test_an_empty_list_without_the_warning_means_the_jobs_are_gone() -> None:
    seen: list[httpx.Request] = []
    b = backend("v0.0.42", [(200, RUNNING), (200, {"jobs": [], "warnings": [], "errors": []})], seen)
    assert listings(b, 2) == [["7"], []]
