"""Which requests may reach slurmrestd: an allow-list of (method, path pattern), deny by default. Pure.

The path is checked as the client sent it (percent-encoding intact), before any decoding: a path that
holds `..` segments, `//`, an encoded slash or backslash, a NUL, or any character outside the patterns
is refused, so what is checked is exactly what is forwarded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

VERSION = r"v0\.0\.(?:3[6-9]|4[0-5])"  # v0.0.36 .. v0.0.45


@dataclass(frozen=True)
class Rule:
    name: str  # route pattern, for metrics and error bodies
    methods: frozenset[str]
    pattern: re.Pattern[str]
    slurmdb: bool = False
    extension: bool = False  # answered by the proxy itself (slurmlink.proxy.extensions), not forwarded


def _rule(methods: str, template: str, *, slurmdb: bool = False, extension: bool = False) -> Rule:
    regex = re.escape(template).replace(r"\{v\}", VERSION).replace(r"\{id\}", r"[0-9]{1,12}")
    # a container name is one path segment; the extension decodes and checks it like the cli backend does
    regex = regex.replace(r"/\?", "/?").replace(r"\{container\}", r"[^/]{1,253}")
    name = f"{methods} {template.replace('/?', '/')}"
    return Rule(name, frozenset(methods.split("|")), re.compile(rf"\A{regex}\Z"), slurmdb, extension)


RULES: tuple[Rule, ...] = (
    _rule("GET", "/slurm/{v}/ping/?"),
    _rule("GET", "/slurm/{v}/diag/?"),
    _rule("POST", "/slurm/{v}/job/submit/?"),
    _rule("GET|DELETE", "/slurm/{v}/job/{id}/?"),
    _rule("GET", "/slurm/{v}/jobs/?"),
    _rule("GET", "/openapi/v3"),
    _rule("GET", "/slurmdb/{v}/job/{id}/?", slurmdb=True),
    _rule("GET", "/slurmdb/{v}/jobs/?", slurmdb=True),
    _rule("GET", "/slurmlink/v1/whoami", extension=True),
    _rule("GET", "/slurmlink/v1/capacity", extension=True),
    _rule("GET", "/slurmlink/v1/jobs/{id}/status", extension=True),
    _rule("GET", "/slurmlink/v1/statuses", extension=True),
    _rule("GET", "/slurmlink/v1/jobs/{id}/logs/{container}", extension=True),
    _rule("POST", "/slurmlink/v1/jobs/{id}/signal", extension=True),
)
SUBMIT = "POST /slurm/{v}/job/submit/"
JOB = "GET|DELETE /slurm/{v}/job/{id}/"
WHOAMI = "GET /slurmlink/v1/whoami"
CAPACITY = "GET /slurmlink/v1/capacity"
STATUS = "GET /slurmlink/v1/jobs/{id}/status"
STATUSES = "GET /slurmlink/v1/statuses"
LOGS = "GET /slurmlink/v1/jobs/{id}/logs/{container}"
SIGNAL = "POST /slurmlink/v1/jobs/{id}/signal"

_ENCODED_SEPARATOR = re.compile(r"%(?:2f|5c|00)", re.IGNORECASE)


@dataclass(frozen=True)
class PolicyDecision:
    allowed: bool
    rule: str  # the allow rule that matched, or the name of the rule that refused
    message: str = ""
    extension: bool = False

    @property
    def route(self) -> str:
        """A bounded label for metrics: the matched pattern, or `denied:<rule>`."""
        return self.rule if self.allowed else f"denied:{self.rule}"


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
        if not rule.pattern.match(path):
            continue
        path_matched = True
        if method not in rule.methods:
            continue
        if rule.slurmdb and not allow_slurmdb:
            return _deny("slurmdb-disabled", "/slurmdb queries are not enabled on this proxy (allow_slurmdb)")
        return PolicyDecision(True, rule.name, extension=rule.extension)
    if path_matched:
        return _deny("method-not-allowed", f"{method} is not allowed on this path")
    return _deny("path-not-allowed", f"{method} {path} is not on the proxy's allow-list")
