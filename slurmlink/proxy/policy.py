"""Which requests may reach slurmrestd: an allow-list of (method, path pattern), deny by default. Pure.

The path is checked as the client sent it (percent-encoding intact), before any decoding: a path that
holds `..` segments, `//`, an encoded slash or backslash, a NUL, or any character outside the patterns
is refused, so what is checked is exactly what is forwarded.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass

VERSION = r"v0\.0\.(?:3[6-9]|4[0-5])"  # v0.0.36 .. v0.0.45
MAX_REMEMBERED_TARGET = 256  # decisions are remembered only for targets this short: memory stays bounded


class ServiceAccess(enum.Enum):
    """What a service identity (roles.py) may do with a request a rule allows."""

    AS_ACCOUNT = "as-account"  # runs as the service identity's own account
    AS_JOB_OWNER = "as-job-owner"  # only for a job in the ledger, as the owner the ledger names
    REFUSED = "refused"


READ = ServiceAccess.AS_ACCOUNT
OWNERS = ServiceAccess.AS_JOB_OWNER


@dataclass(frozen=True)
class Rule:
    name: str  # route pattern, for metrics and error bodies
    methods: frozenset[str]
    pattern: re.Pattern[str]
    slurmdb: bool = False
    extension: bool = False  # answered by the proxy itself (slurmlink.proxy.extensions), not forwarded
    upgrade: bool = False  # an SPDY/3.1 upgrade answered by the proxy itself (slurmlink.proxy.interactive)
    service: tuple[tuple[str, ServiceAccess], ...] = ()  # (method, access) for service identities; else refused

    def service_access(self, method: str) -> ServiceAccess:
        return dict(self.service).get(method.upper(), ServiceAccess.REFUSED)


def _rule(methods: str, template: str, *, slurmdb: bool = False, extension: bool = False, upgrade: bool = False,
          service: ServiceAccess | dict[str, ServiceAccess] = ServiceAccess.REFUSED) -> Rule:
    regex = re.escape(template).replace(r"\{v\}", VERSION).replace(r"\{id\}", r"(?P<id>[0-9]{1,12})")
    # a container name is one path segment; the extension decodes and checks it like the cli backend does
    regex = regex.replace(r"/\?", "/?").replace(r"\{container\}", r"[^/]{1,253}")
    name = f"{methods} {template.replace('/?', '/')}"
    method_set = frozenset(methods.split("|"))
    access = service if isinstance(service, dict) else dict.fromkeys(method_set, service)
    return Rule(name, method_set, re.compile(rf"\A{regex}\Z"), slurmdb, extension, upgrade,
                tuple(sorted(access.items())))


# Everything the proxy lets through, and what a service identity may do with it. An extension route is one
# line here (its handler is in extensions.py).
RULES: tuple[Rule, ...] = (
    _rule("GET", "/slurm/{v}/ping/?", service=READ),
    _rule("GET", "/slurm/{v}/diag/?", service=READ),
    _rule("POST", "/slurm/{v}/job/submit/?"),
    _rule("GET|DELETE", "/slurm/{v}/job/{id}/?", service={"GET": READ, "DELETE": OWNERS}),
    _rule("GET", "/slurm/{v}/jobs/?", service=READ),
    _rule("GET", "/openapi/v3", service=READ),
    _rule("GET", "/slurmdb/{v}/job/{id}/?", slurmdb=True),
    _rule("GET", "/slurmdb/{v}/jobs/?", slurmdb=True),
    _rule("GET", "/slurmlink/v1/whoami", extension=True, service=READ),
    _rule("GET", "/slurmlink/v1/capacity", extension=True, service=READ),
    _rule("GET", "/slurmlink/v1/jobs/{id}/status", extension=True, service=OWNERS),
    _rule("GET", "/slurmlink/v1/statuses", extension=True, service=OWNERS),
    _rule("GET", "/slurmlink/v1/status-changes", extension=True, service=OWNERS),
    _rule("GET", "/slurmlink/v1/jobs/{id}/logs/{container}", extension=True, service=OWNERS),
    _rule("POST", "/slurmlink/v1/jobs/{id}/signal", extension=True, service=OWNERS),
    # SPDY/3.1 upgrades (interactive.py), users only: a step runs as the token's own account
    _rule("POST", "/slurmlink/v1/jobs/{id}/exec", upgrade=True),
    _rule("POST", "/slurmlink/v1/jobs/{id}/portforward", upgrade=True),
)
BY_NAME = {rule.name: rule for rule in RULES}
SUBMIT = "POST /slurm/{v}/job/submit/"
JOB = "GET|DELETE /slurm/{v}/job/{id}/"
WHOAMI = "GET /slurmlink/v1/whoami"
CAPACITY = "GET /slurmlink/v1/capacity"
STATUS = "GET /slurmlink/v1/jobs/{id}/status"
STATUSES = "GET /slurmlink/v1/statuses"
STATUS_CHANGES = "GET /slurmlink/v1/status-changes"
LOGS = "GET /slurmlink/v1/jobs/{id}/logs/{container}"
SIGNAL = "POST /slurmlink/v1/jobs/{id}/signal"
EXEC = "POST /slurmlink/v1/jobs/{id}/exec"
PORTFORWARD = "POST /slurmlink/v1/jobs/{id}/portforward"

_ENCODED_SEPARATOR = re.compile(r"%(?:2f|5c|00)", re.IGNORECASE)


@dataclass(frozen=True)
class PolicyDecision:
    allowed: bool
    rule: str  # the allow rule that matched, or the name of the rule that refused
    message: str = ""
    extension: bool = False
    upgrade: bool = False
    status: int = 403  # of a refusal: 404 for a job id no job can have

    @property
    def route(self) -> str:
        """A bounded label for metrics: the matched pattern, or `denied:<rule>`."""
        return self.rule if self.allowed else f"denied:{self.rule}"


def is_job_id(text: str) -> bool:
    """A job id as SLURM writes it: SLURM would read `007` as job 7, and a check of `007` would miss job 7."""
    return text.isascii() and text.isdigit() and text[0] != "0"


def _deny(rule: str, message: str) -> PolicyDecision:
    return PolicyDecision(False, rule, message)


def decide(method: str, path: str, query: str = "", *, allow_slurmdb: bool = False) -> PolicyDecision:
    """`path` is the raw request path (no query), `query` the raw query string."""
    if "\x00" in path or "\x00" in query or "%00" in query:
        return _deny("no-nul", "a NUL byte in the request target is refused")
    if _ENCODED_SEPARATOR.search(path):
        return _deny("no-encoded-separator", "encoded '/', '\\' or NUL (%2F, %5C, %00) in the path is refused")
    if "\\" in path:
        return _deny("no-backslash", "a backslash in the path is refused")
    if not path.startswith("/"):
        return _deny("absolute-path", "the request target must be an absolute path")
    segments = path.split("/")[1:]
    if any(seg in (".", "..") or seg.lower() in ("%2e", "%2e%2e", ".%2e", "%2e.") for seg in segments):
        return _deny("no-dot-segments", "'.' and '..' path segments are refused")
    if "//" in path:
        return _deny("no-empty-segments", "empty path segments ('//') are refused")
    method = method.upper()
    path_matched = False
    for rule in RULES:
        match = rule.pattern.fullmatch(path)
        if match is None:
            continue
        path_matched = True
        if method not in rule.methods:
            continue
        if rule.slurmdb and not allow_slurmdb:
            return _deny("slurmdb-disabled", "/slurmdb queries are not enabled on this proxy (allow_slurmdb)")
        job_id = match.groupdict().get("id")
        if job_id is not None and not is_job_id(job_id):
            return PolicyDecision(False, "no-such-job", f"there is no job {job_id} (a job id is a number from 1, "
                                  "without leading zeros)", status=404)
        return PolicyDecision(True, rule.name, extension=rule.extension, upgrade=rule.upgrade)
    if path_matched:
        return _deny("method-not-allowed", f"{method} is not allowed on this path")
    return _deny("path-not-allowed", f"{method} {path} is not on the proxy's allow-list")


def decide_remembered(method: str, path: str, query: str = "", *, allow_slurmdb: bool = False) -> PolicyDecision:
    """`decide`, remembered for request lines seen lately (every submission has the same one): it is pure, and
    matching the rules one by one took 2 µs a request alone, up to 9 µs in the proxy under load (bench/README.md)."""
    if len(path) + len(query) > MAX_REMEMBERED_TARGET:
        return decide(method, path, query, allow_slurmdb=allow_slurmdb)
    return _remembered(method, path, query, allow_slurmdb)


@functools.lru_cache(maxsize=1024)
def _remembered(method: str, path: str, query: str, allow_slurmdb: bool) -> PolicyDecision:
    return decide(method, path, query, allow_slurmdb=allow_slurmdb)
