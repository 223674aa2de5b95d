"""The pure parts of the proxy's extensions: query parsing, tails, the service scope, the ledger, submissions."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from slurmlink.proxy import policy
from slurmlink.proxy.config import ProxyConfig
from slurmlink.proxy.errors import Refusal
from slurmlink.proxy.forward import _submitted
from slurmlink.proxy.ledger import FILE_NAME, MAX_AGE_SECONDS, Ledger
from slurmlink.proxy.logstream import LogQuery, parse_query
from slurmlink.proxy.roles import ServiceAccess, service_access
from slurmlink.slurm.podfiles import PodFiles, tail_offset


def test_log_query() -> None:
    assert parse_query("") == LogQuery()
    assert parse_query("offset=5&limit_bytes=10&tail_lines=2&follow=true") == LogQuery(5, 10, 2, True)
    for bad in ("offset=-1", "offset=1&offset=2", "x=1", "follow=1", "limit_bytes=0", "offset=1e3",
                "tail_lines=" + "9" * 19, "offset=%D9%A3"):
        with pytest.raises(Refusal) as info:
            parse_query(bad)
        assert info.value.status == 400, bad


@pytest.mark.parametrize("text, lines, expected", [
    (b"a\nb\nc\n", 2, b"b\nc\n"), (b"a\nb\nc", 2, b"b\nc"), (b"a\nb\nc\n", 5, b"a\nb\nc\n"),
    (b"a\nb\nc\n", 0, b""), (b"", 3, b""), (b"\n\n\n", 1, b"\n"), (b"x" * 100 + b"\nend\n", 2, b"x" * 50 + b"\nend\n"),
])
def test_tail_offset(tmp_path: Path, text: bytes, lines: int, expected: bytes) -> None:
    path = tmp_path / "log"
    path.write_bytes(text)
    fd = os.open(path, os.O_RDONLY)
    try:
        start = tail_offset(fd, lines, len(text), window=55)  # the long line is cut at the window
    finally:
        os.close(fd)
    assert text[start:] == expected


def test_service_scope() -> None:
    assert service_access("GET", "GET /slurm/{v}/jobs/") is ServiceAccess.AS_ACCOUNT
    assert service_access("GET", policy.JOB) is ServiceAccess.AS_ACCOUNT
    assert service_access("GET", policy.WHOAMI) is ServiceAccess.AS_ACCOUNT
    assert service_access("DELETE", policy.JOB) is ServiceAccess.AS_JOB_OWNER
    assert service_access("GET", policy.STATUS) is ServiceAccess.AS_JOB_OWNER
    assert service_access("GET", policy.LOGS) is ServiceAccess.AS_JOB_OWNER
    assert service_access("POST", policy.SUBMIT) is ServiceAccess.REFUSED
    assert service_access("GET", "GET /slurmdb/{v}/jobs/") is ServiceAccess.REFUSED


def test_submissions_that_enter_the_ledger() -> None:
    v38 = json.dumps({"script": "x", "job": {"name": "slurmlink-abc", "current_working_directory": "/j/p"}})
    v41 = json.dumps({"jobs": [{"name": "slurmlink-abc", "current_working_directory": "/j/p", "script": "x"}]})
    ok = b'{"job_id": 42, "errors": []}'
    assert _submitted(v38.encode(), 200, ok) == ("42", "slurmlink-abc", "/j/p")
    assert _submitted(v41.encode(), 200, ok) == ("42", "slurmlink-abc", "/j/p")
    assert _submitted(v38.encode(), 500, ok) is None
    assert _submitted(v38.encode(), 200, b'{"errors": [{"error": "x"}]}') is None
    assert _submitted(v38.encode(), 200, b'{"job_id": true}') is None
    assert _submitted(v38.replace("slurmlink-abc", "mine").encode(), 200, ok) is None
    assert _submitted(b"not json", 200, ok) is None


def test_ledger_drops_old_entries_and_torn_lines(tmp_path: Path) -> None:
    now = [1_000_000_000.0]
    ledger = Ledger(str(tmp_path), clock=lambda: now[0])
    ledger.record("1", "alice", "slurmlink-a", "/j/a")
    now[0] += MAX_AGE_SECONDS - 10
    ledger.record("2", "bob", "slurmlink-b", "/j/b")
    path = tmp_path / FILE_NAME
    with path.open("ab") as fh:
        fh.write(b'{"job_id": "3", "user"')
    now[0] += 20
    again = Ledger(str(tmp_path), clock=lambda: now[0])
    assert again.get("1") is None and again.get("3") is None
    assert again.get("2") is not None and again.get("2").user == "bob"  # type: ignore[union-attr]
    again.record("4", "carol", "slurmlink-c", "/j/c")
    assert [json.loads(line)["job_id"] for line in path.read_text().splitlines()] == ["2", "4"]
    assert (path.stat().st_mode & 0o777) == 0o600


def test_pod_dir_is_a_direct_child_of_the_job_root(tmp_path: Path) -> None:
    files = PodFiles(str(tmp_path))
    assert files.is_pod_dir(f"{tmp_path}/pod-1")
    for bad in (str(tmp_path), f"{tmp_path}/a/b", "/tmp/x", "pod-1", f"{tmp_path}/../x", f"{tmp_path}/.."):
        assert not files.is_pod_dir(bad), bad


def test_config_of_service_identities() -> None:
    identity = {"issuers": [{"preset": "egi-production"}], "policy": {"vos": ["vo.example.org"]},
                "mapping": [{"service_account": {"default": "x"}}]}
    service = {"issuer": "https://aai.egi.eu/auth/realms/egi", "subject": "abc", "account": "slapi"}
    base = {"identity": identity, "token_file": "t"}
    config = ProxyConfig.model_validate({**base, "service_identities": [service], "state_dir": "/var/lib/x",
                                         "files": {"job_root": "/scratch/jobs"}})
    assert config.files is not None and config.files.max_chunk_bytes == 16 * 1024 * 1024
    assert ProxyConfig.model_validate({**base, "service_identities": [service]}).state_dir == "/var/lib/slurmlink/proxy"
    with pytest.raises(ValidationError, match="not one of identity.issuers"):
        ProxyConfig.model_validate({**base, "state_dir": "/x",
                                    "service_identities": [{**service, "issuer": "https://other.example.org"}]})
    for account in ("root", "slurm"):
        with pytest.raises(ValidationError, match="may not run as"):
            ProxyConfig.model_validate({**base, "state_dir": "/x", "service_identities": [{**service,
                                                                                           "account": account}]})
    with pytest.raises(ValidationError, match="absolute"):
        ProxyConfig.model_validate({**base, "files": {"job_root": "jobs"}})
