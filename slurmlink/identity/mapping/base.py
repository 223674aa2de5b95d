"""What every mapping strategy shares: the request it sees, its answer, its error, and the base class."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from slurmlink.config import Strict
from slurmlink.core.errors import SlurmlinkError
from slurmlink.identity.entitlements import Decision

# POSIX portable user names as useradd accepts them by default, lower case only, at most 32 characters.
# fullmatch, not `$`: `$` also matches before a trailing newline.
USERNAME_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


class MappingError(SlurmlinkError):
    """No account may be used for this request. `message` is a sentence for the user and the audit log."""

    default_reason = "NoAccountMapping"


@dataclass(frozen=True)
class MappingResult:
    username: str
    strategy: str
    reason: str


@dataclass(frozen=True)
class MappingRequest:
    """What a strategy sees. `account_ok(name)` says whether a name would pass the safety check (pools use it
    to skip accounts that do not exist or are not allowed, instead of assigning them and failing forever)."""

    issuer: str
    subject: str
    claims: Mapping[str, Any]
    decision: Decision
    account_ok: Callable[[str], bool] = field(default=lambda _name: True, compare=False)


class Strategy:
    """One link of the chain. `name` is what VO settings (`strategies: [...]`) and results refer to."""

    name: str = "strategy"
    description: str = ""

    async def resolve(self, request: MappingRequest) -> str | None:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release connections and pools; the default has none."""


class StrategyOptions(Strict):
    """The options of one `mapping:` step, checked when the file is loaded. `kind` is the step's key in YAML
    (`- static: {path: ...}`); `build()` makes the strategy, reading files and opening databases."""

    kind: str
    name: str

    def build(self) -> Strategy:
        raise NotImplementedError


def show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
