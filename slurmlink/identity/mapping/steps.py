"""The `mapping:` section's steps: one options model per strategy, told apart by the step's key.

In YAML a step is `{strategy: {options}}`, e.g. `- pool: {prefix: egi}`; it is read as the options model whose
`kind` is that key, so an unknown strategy or option fails when the file is loaded, naming the step.
A new strategy is one module (strategy + options model) and one entry in `_Options` below.
"""

from __future__ import annotations

from typing import Annotated, Any, get_args

from pydantic import BeforeValidator, Field, GetJsonSchemaHandler, SerializerFunctionWrapHandler, WrapSerializer
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from .alise import AliseOptions
from .pool import PoolOptions
from .service_account import ServiceAccountOptions
from .static import StaticOptions
from .template import TemplateOptions

_Options = StaticOptions | AliseOptions | PoolOptions | TemplateOptions | ServiceAccountOptions
KINDS: tuple[str, ...] = tuple(options.model_fields["kind"].default for options in get_args(_Options))


def _from_yaml(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        raise ValueError("give one strategy per step, e.g. `- static: {path: /etc/slurmlink/users.yaml}`")
    [(kind, options)] = value.items()
    if kind not in KINDS:
        raise ValueError(f"unknown mapping strategy {kind!r}; known: {', '.join(KINDS)}")
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ValueError(f"the options of mapping strategy {kind!r} must be a mapping")
    return {**options, "kind": kind}


def _to_yaml(step: Any, handler: SerializerFunctionWrapHandler) -> Any:
    data = handler(step)
    return {data.pop("kind"): data} if isinstance(data, dict) else data


class _YamlFormSchema:
    """The JSON Schema of a step as written in YAML, `{strategy: {options}}`, not of the model it is read into."""

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        union = handler(schema)  # a oneOf of the options models, told apart by `kind`
        steps = []
        for kind, ref in union["discriminator"]["mapping"].items():
            handler.resolve_ref_schema({"$ref": ref})["properties"].pop("kind", None)  # the step's key says it
            steps.append({"type": "object", "properties": {kind: {"anyOf": [{"$ref": ref}, {"type": "null"}]}},
                          "required": [kind], "additionalProperties": False})
        return {"oneOf": steps}


MappingStep = Annotated[_Options, Field(discriminator="kind"), BeforeValidator(_from_yaml), WrapSerializer(_to_yaml),
                        _YamlFormSchema()]
