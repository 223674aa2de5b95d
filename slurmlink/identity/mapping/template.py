"""Strategy `template`: a username built from claims (unsafe where the claim is not unique)."""

from __future__ import annotations

import logging
import string
from typing import Literal

from pydantic import Field, model_validator

from .base import MappingError, MappingRequest, Strategy, StrategyOptions

log = logging.getLogger(__name__)

# Claims Check-in documents as unique and stable per person; anything else can collide.
UNIQUE_CLAIMS = frozenset({"sub", "voperson_id", "eduperson_unique_id"})


def parse_template(template: str, lowercase: bool) -> tuple[list[str], tuple[str, ...]]:
    """The claim names a template uses and what makes it unsafe; ValueError if it is not a usable template."""
    fields: list[str] = []
    warnings: list[str] = []
    for _text, field_name, spec, conversion in string.Formatter().parse(template):
        if field_name is None:
            continue
        # Plain claim names only: no attribute or index access through the format mini-language.
        if not field_name.isidentifier() or conversion:
            raise ValueError(f"claim template {template!r}: {{{field_name}}} must be a plain claim name")
        fields.append(field_name)
        if field_name not in UNIQUE_CLAIMS:
            warnings.append(f"claim {field_name} is not guaranteed unique: two people may share an account")
        elif spec and "." in spec:
            warnings.append(f"truncating {field_name} ({spec}) can make two people collide")
    if not fields:
        raise ValueError(f"claim template {template!r} uses no claim")
    if lowercase:
        warnings.append("lower-casing can make two people collide")
    return fields, tuple(warnings)


class ClaimTemplate(Strategy):
    """A username from claims, e.g. `{preferred_username}` or `egi_{voperson_id:.8}`.

    Unsafe unless the template is built from a unique claim without truncation: Check-in says
    `preferred_username` "MUST NOT" be relied upon to be unique, so two people could get one account. Warnings
    are logged at start and listed in `warnings`. A missing or non-string claim is a miss.
    """

    def __init__(self, template: str, *, lowercase: bool = False, name: str = "template") -> None:
        self.name = name
        self.template = template
        self.lowercase = lowercase
        self.description = f"claim template {template!r}"
        self.fields, self.warnings = parse_template(template, lowercase)
        for warning in self.warnings:
            log.warning("mapping template %r is unsafe: %s", template, warning)

    async def resolve(self, request: MappingRequest) -> str | None:
        values: dict[str, str] = {}
        for name in self.fields:
            value = request.claims.get(name)
            if not isinstance(value, str) or not value:
                return None
            values[name] = value
        try:
            username = self.template.format_map(values)
        except (ValueError, TypeError) as exc:
            raise MappingError(f"claim template {self.template!r} failed: {exc}") from exc
        return username.lower() if self.lowercase else username


class TemplateOptions(StrategyOptions):
    """An account name made from the token's claims."""

    kind: Literal["template"] = "template"
    name: str = Field(default="template", description=(
        "the step's name, which a VO's `settings.strategies: [...]` refers to; names must be distinct"))
    template: str = Field(description=(
        "the account from claims, e.g. `\"{preferred_username}\"` (Check-in does not guarantee it unique)"))
    lowercase: bool = Field(default=False, description="lower-case the result")

    @model_validator(mode="after")
    def _parses(self) -> TemplateOptions:
        parse_template(self.template, self.lowercase)
        return self

    def build(self) -> ClaimTemplate:
        return ClaimTemplate(self.template, lowercase=self.lowercase, name=self.name)
