"""Go's `encoding/json` rules for wire structs whose peer is written in Go (interLink).

- input: keys of *our* structs match case-insensitively (`uid`, `UID`, `Uid`), unknown keys are ignored,
  `null` is "no value" (an empty list for a slice, "" for a string, unset for a time);
- output: exact Go key casing, `null` for an empty slice, `omitempty` keys left out when empty.

`Model.from_wire(body)`, `model.to_wire()` / `dump_wire(obj)`. Every malformed body raises `WireError`
whose message starts with the path of the bad field, e.g. `pod.metadata.uid: missing`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Self, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)
from pydantic.fields import FieldInfo

from slurmlink.core.errors import SlurmlinkError

Obj = dict[str, Any]

GO_ZERO_TIME = "0001-01-01T00:00:00Z"


class WireError(SlurmlinkError, ValueError):
    """A request body that does not fit the wire format; the message names the bad field first."""


class _OmitEmpty:
    """Marker for Go `omitempty`: the key is left out when the value is empty or zero."""


class _Pointer:
    """Marker for a Go pointer to a slice: None is left out, while [] is sent as [] (it means "clear")."""


OMITEMPTY = _OmitEmpty()
POINTER = _Pointer()


def _accepted_keys(name: str, field: FieldInfo) -> list[str]:
    va = field.validation_alias
    if isinstance(va, AliasChoices):
        return [c for c in va.choices if isinstance(c, str)]
    if isinstance(va, str):
        return [va]
    return [field.alias or name]


class WireModel(BaseModel):
    """Base of every wire struct: Go-tolerant parsing in, Go-exact JSON out."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _go_decode(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        folded = {key.lower(): key for name, f in cls.model_fields.items() for key in _accepted_keys(name, f)}
        out: Obj = {}
        for key, value in data.items():
            if value is None:  # Go leaves the zero value for null: a default does the same here
                continue
            canonical = folded.get(key.lower(), key) if isinstance(key, str) else key
            out[canonical] = value  # as in Go, the last of two spellings wins
        return out

    @model_serializer(mode="wrap")
    def _go_encode(self, handler: SerializerFunctionWrapHandler) -> Obj:
        data: Obj = handler(self)
        for name, field in type(self).model_fields.items():
            alias = field.serialization_alias or field.alias or name
            key = alias if alias in data else name
            if key not in data:
                continue
            value = data[key]
            if OMITEMPTY in field.metadata:
                if value is None or value in ("", 0, [], {}):
                    del data[key]
            elif POINTER in field.metadata:
                if value is None:
                    del data[key]
            elif value == []:
                data[key] = None  # Go marshals a nil slice as null
        return data

    @classmethod
    def from_wire(cls, body: Any) -> Self:
        """Parse a decoded JSON value (or raw JSON text/bytes); raise WireError naming the bad field."""
        return validate(cls, decode(body))

    def to_wire(self) -> Obj:
        """The JSON object exactly as the Go peer would marshal it."""
        return self.model_dump(mode="json", by_alias=True)


def decode(body: Any) -> Any:
    if isinstance(body, bytes | bytearray | str):
        if not body.strip():
            return None
        try:
            return json.loads(body)
        except ValueError as exc:
            raise WireError(f"body: not valid JSON ({exc})") from None
    return body


def _path(loc: tuple[int | str, ...], prefix: str = "") -> str:
    out = prefix.rstrip(".")
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


M = TypeVar("M", bound=WireModel)


def validate(cls: type[M], data: Any, prefix: str = "") -> M:
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{_path(err['loc'], prefix)}: {'missing' if err['type'] == 'missing' else err['msg']}"
            for err in exc.errors()
        ]
        raise WireError("; ".join(problems)) from None


def dump_wire(obj: WireModel | list[WireModel] | None) -> Any:
    """Go JSON of a model or of a list of models (a nil slice, e.g. no statuses, is null)."""
    if obj is None:
        return None
    if isinstance(obj, list):
        return [m.to_wire() for m in obj] or None
    return obj.to_wire()


K8sList = list[Obj]


def go_field(key: str, default: Any = None, *, factory: Callable[[], Any] | None = None) -> Any:
    """A field whose Go JSON key is `key`; Python code (and mypy) use the attribute name."""
    if factory is not None:
        return Field(default_factory=factory, validation_alias=key, serialization_alias=key)
    return Field(default, validation_alias=key, serialization_alias=key)


