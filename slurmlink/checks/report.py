"""What a check finds: one line each, ok / warning / error, naming the key (or the SLURMLINK_* variable that set
it) and the configuration file."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from slurmlink.config import ENV_PREFIX

Level = Literal["ok", "warning", "error"]


@dataclass(frozen=True)
class Finding:
    level: Level
    key: str  # the key at fault, "" for the file as a whole; shown as its variable when one set it
    message: str


@dataclass
class Report:
    """The findings about one configuration file, in the order they were made."""

    source: str  # the configuration file (or "defaults")
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    findings: list[Finding] = field(default_factory=list)

    def ok(self, key: str, message: str) -> None:
        self.findings.append(Finding("ok", key, message))

    def warning(self, key: str, message: str) -> None:
        self.findings.append(Finding("warning", key, message))

    def error(self, key: str, message: str) -> None:
        self.findings.append(Finding("error", key, message))

    @property
    def errors(self) -> int:
        return sum(1 for finding in self.findings if finding.level == "error")

    def subject(self, key: str) -> str:
        """`file: key`, or `file: SLURMLINK_X__Y (x.y)` when the value came from the environment."""
        variable = variable_for(key, self.environ)
        if variable:
            return f"{self.source}: {variable} ({key})"
        return f"{self.source}: {key}" if key else self.source

    def lines(self) -> list[str]:
        return [f"{finding.level:<8}{self.subject(finding.key)}: {finding.message}" for finding in self.findings]


def variable_for(key: str, environ: Mapping[str, str]) -> str | None:
    """The SLURMLINK_* variable that set `key` (or a section above it), as load_config reads them."""
    parts = [part for part in key.split(".") if part]
    for end in range(len(parts), 0, -1):
        name = ENV_PREFIX + "__".join(parts[:end]).upper()
        if name in environ:
            return name
    return None
