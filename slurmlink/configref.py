"""What the configuration files look like, exported from their pydantic models so that nothing can drift:
the JSON Schema of each service's file (`slurmlink config schema NAME`) and the key tables of
docs/configuration.md (`slurmlink config reference`), with each key's type, default and `Field(description=...)`.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from slurmlink.api.config import ApiConfig
from slurmlink.checks.run import MODELS
from slurmlink.identity.config import IdentityConfig, IssuerSection
from slurmlink.proxy.config import ProxyConfig
from slurmlink.vk.config import VkConfig

# The tables of docs/configuration.md, each between `<!-- BEGIN config reference NAME -->` and `<!-- END ... -->`.
TABLES: dict[str, tuple[type[BaseModel], str]] = {
    "api": (ApiConfig, ""), "identity": (IdentityConfig, "identity."), "proxy": (ProxyConfig, ""), "vk": (VkConfig, ""),
}
# Sections shared by several files are listed once, at this key; elsewhere their row points there.
DOCUMENTED_AT: dict[type[BaseModel], str] = {IdentityConfig: "identity.*", IssuerSection: "identity.issuers[]"}
UPDATE_COMMAND = "slurmlink config reference --update docs/configuration.md"
_REGION = re.compile(r"(<!-- BEGIN config reference (?P<name>[a-z]+) -->\n).*?"
                     r"(<!-- END config reference (?P=name) -->)", re.DOTALL)


def json_schema(name: str) -> dict[str, Any]:
    schema = MODELS[name].model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema,
            "title": f"slurmlink {name} configuration"}


@dataclass(frozen=True)
class Row:
    key: str
    type: str
    default: str
    meaning: str


def table(name: str) -> str:
    model, prefix = TABLES[name]
    lines = [f"<!-- generated from the models by `{UPDATE_COMMAND}`: edit their descriptions, not this table -->",
             "| key | type | default | meaning |", "|---|---|---|---|"]
    lines += [f"| `{r.key}` | {_cell(r.type)} | {_cell(r.default)} | {_cell(r.meaning)} |" for r in rows(model, prefix)]
    return "\n".join(lines) + "\n"


def update_markdown(text: str) -> str:
    """The text with every marked table regenerated (KeyError for a marker naming no table)."""
    return _REGION.sub(lambda m: m.group(1) + table(m.group("name")) + m.group(3), text)


def rows(model: type[BaseModel], prefix: str = "") -> Iterator[Row]:
    for name, field in model.model_fields.items():
        if name == "kind":  # a mapping step's strategy: its key in YAML (below)
            continue
        yield from _field_rows(prefix + name, field)


def _field_rows(key: str, field: FieldInfo) -> Iterator[Row]:
    annotation = _unwrap(field.annotation)
    section = _section(annotation)
    item = _unwrap(get_args(annotation)[0]) if get_origin(annotation) is list else None
    steps = _steps(item) if item is not None else []
    meaning = field.description or (_summary(section) if section is not None else "")
    if section is not None and DOCUMENTED_AT.get(section, key) != key:
        yield Row(key, "section", _default(field), _see(meaning, DOCUMENTED_AT[section]))
    elif section is not None:
        if meaning or field.is_required() or field.default is None:
            yield Row(key, "section", _default(field), meaning)
        yield from rows(section, key + ".")
    elif steps:
        yield Row(key, "list of steps", _default(field), meaning + "; the strategies follow")
        for kind, options in steps:
            yield Row(f"{key}[].{kind}", "section", "", _summary(options))
            yield from rows(options, f"{key}[].{kind}.")
    elif item is not None and (nested := _section(item) or _section_in_union(item)) is not None:
        at = DOCUMENTED_AT.get(nested, key + "[]")
        yield Row(key, _type(annotation, field), _default(field),
                  _see(meaning, at) if at != key + "[]" else meaning)
        if at == key + "[]":
            yield from rows(nested, key + "[].")
    else:
        yield Row(key, _type(annotation, field), _default(field), meaning)


def _see(meaning: str, key: str) -> str:
    return f"{meaning}; its keys are listed as `{key}`" if meaning else f"its keys are listed as `{key}`"


def _summary(model: type[BaseModel]) -> str:
    """The first paragraph of the section's own docstring (not an inherited one)."""
    return (model.__dict__.get("__doc__") or "").strip().split("\n\n")[0]


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _section(annotation: Any) -> type[BaseModel] | None:
    """The model of a section (also an optional one), or None."""
    if _is_union(annotation):
        rest = [a for a in get_args(annotation) if a is not type(None)]
        return _section(rest[0]) if len(rest) == 1 else None
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _section_in_union(annotation: Any) -> type[BaseModel] | None:
    """The one model among the alternatives of `str | VoSection`, or None."""
    models = [m for m in map(_section, get_args(annotation)) if m is not None] if _is_union(annotation) else []
    return models[0] if len(models) == 1 else None


def _steps(annotation: Any) -> list[tuple[str, type[BaseModel]]]:
    """A union of models told apart by their `kind` (mapping steps, written `{kind: {options}}`)."""
    members = [_section(a) for a in get_args(annotation)] if _is_union(annotation) else []
    if len(members) < 2 or not all(m is not None and "kind" in m.model_fields for m in members):
        return []
    return [(m.model_fields["kind"].default, m) for m in members if m is not None]


_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", Any: "any"}


def _type(annotation: Any, field: FieldInfo | None = None) -> str:
    text, bounds = _type_name(annotation), _bounds(field) if field is not None else []
    return f"{text} {', '.join(bounds)}" if bounds else text


def _type_name(annotation: Any) -> str:
    annotation = _unwrap(annotation)
    origin, args = get_origin(annotation), get_args(annotation)
    if _is_union(annotation):
        return " or ".join(_type_name(a) for a in args if a is not type(None))
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin is list:
        item = _unwrap(args[0])
        if _section(item) is not None:
            return "list of sections"
        return f"list of ({_type_name(item)})" if _is_union(item) else f"list of {_type_name(item)}"
    if origin is dict:
        return f"map of {_type_name(args[1])}"
    if _section(annotation) is not None:
        return "section"
    return _NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _bounds(field: FieldInfo) -> list[str]:
    out = []
    for rule in field.metadata:
        if isinstance(rule, annotated_types.Gt):
            out.append(f"> {rule.gt}")
        elif isinstance(rule, annotated_types.Ge):
            out.append(f"≥ {rule.ge}")
        elif isinstance(rule, annotated_types.Lt):
            out.append(f"< {rule.lt}")
        elif isinstance(rule, annotated_types.Le):
            out.append(f"≤ {rule.le}")
        elif isinstance(rule, annotated_types.MinLen):
            out.append("(not empty)" if rule.min_length == 1 else f"(at least {rule.min_length})")
    return out


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True) if field.default is PydanticUndefined else field.default
    if isinstance(value, BaseModel):
        return ""  # a section: its keys have their own defaults
    if value is None:
        return "unset"
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    if isinstance(value, bool | int | float):
        return f"`{yaml.safe_dump(value).split(chr(10))[0]}`"
    return f"`{yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000).strip()}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")
