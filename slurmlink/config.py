"""Configuration files: one YAML file per service, overridden by SLURMLINK_* environment variables.

`SLURMLINK_POLL_INTERVAL=5` sets `poll_interval`; a double underscore goes one level down:
`SLURMLINK_SITE__PARTITION=gpu` sets `site.partition`. A value is read by the type of the key it sets: text
as it is (`SLURMLINK_SITE__PARTITION=2024` is the partition "2024"), anything else as YAML (`true`, `5`, `[a, b]`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from slurmlink.core.errors import SlurmlinkError

Model = TypeVar("Model", bound=BaseModel)
ENV_PREFIX = "SLURMLINK_"


class Strict(BaseModel):
    """The base of every configuration section."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not a silent default


def _absolute(path: str) -> str:
    if not path.startswith("/"):
        raise ValueError("must be an absolute path")
    return path


# A service's `state_dir` (see slurmlink.statepaths): made at start, so a relative path would depend on the cwd.
AbsolutePath = Annotated[str, AfterValidator(_absolute)]


class ConfigError(SlurmlinkError):
    """A configuration problem, naming the file (or variable) and the key; one line, for the command to print."""

    default_reason = "InvalidConfig"


class AdminListen(Strict):
    """`admin:` of every service: plain HTTP GET /healthz and /metrics, without authentication, for probes and
    Prometheus. Keep it on loopback or a private network (it says more than the public port)."""

    host: str = Field(default="127.0.0.1", description="address of the admin listener")
    port: int | None = Field(default=None, ge=0, le=65535, description="its port; unset: no admin listener")


def _set(target: dict[str, Any], keys: list[str], value: Any, variable: str) -> None:
    for depth, key in enumerate(keys[:-1]):
        target = target.setdefault(key, {})
        if not isinstance(target, dict):
            raise ConfigError(f"{variable}: {'.'.join(keys[:depth + 1])} is set to a value, not a section")
    target[keys[-1]] = value


def load_config(model: type[Model], path: str | Path | None, environ: Mapping[str, str] | None = None) -> Model:
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        data = loaded or {}
    variables: dict[tuple[str, ...], str] = {}  # keys set from the environment -> the variable that set them
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX):].split("__")]
        if keys[0] not in model.model_fields:
            continue  # variables of other services or of the CLI
        _set(data, keys, environment_value(model, keys, raw, name), name)
        variables[tuple(keys)] = name
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_problem(e["loc"], e["msg"], variables) for e in exc.errors())
        raise ConfigError(f"{path}: {problems}" if path else problems) from exc


# --- values from the environment -----------------------------------------------------------------------------
# Helm, compose and systemd pass every value as a string, so a variable is read by the type of the key it sets:
# text keys take the value as it is (a partition `2024`, a node `007`); other keys read it as YAML whose scalars
# stay text for pydantic to convert by the field's type (`true`, `5`, `[a, 007]` for a list of names).

class _ScalarsAsText(yaml.SafeLoader):
    """YAML whose plain scalars stay strings, except null (`~`, `null`, empty)."""


_ScalarsAsText.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag == "tag:yaml.org,2002:null"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_NULL = ("", "~", "null", "Null", "NULL")


def environment_value(model: type[BaseModel], keys: list[str], raw: str, variable: str) -> Any:
    """The value variable `variable` gives the key `keys` of `model`, read as that key's type asks."""
    annotation = _annotation_at(model, keys, variable)
    options = _options(annotation)
    if raw in _NULL and type(None) in options:
        return None
    if options and all(_is_text(option) for option in options if option is not type(None)):
        return raw
    try:
        return yaml.load(raw, Loader=_ScalarsAsText)  # noqa: S506 - a SafeLoader with fewer resolvers
    except yaml.YAMLError as exc:
        raise ConfigError(f"{variable}: not valid YAML: {' '.join(str(exc).split())}") from exc


def _annotation_at(model: type[BaseModel], keys: list[str], variable: str) -> Any:
    """The type of the key `keys` (walking sections and mappings); an unknown key is an error naming `variable`."""
    current: Any = model
    for depth, key in enumerate(keys):
        if current is Any:
            return Any  # free-form below here
        options = _options(current)
        sections = [o for o in options if isinstance(o, type) and issubclass(o, BaseModel)]
        mappings = [o for o in options if get_origin(o) in (dict, Mapping)]
        where = ".".join(keys[:depth]) or "the configuration"
        if sections:
            fields = next((s.model_fields for s in sections if key in s.model_fields), None)
            if fields is None:
                known = ", ".join(sorted(set().union(*(s.model_fields for s in sections))))
                raise ConfigError(f"{variable}: {where} has no key {key!r} (known: {known})")
            current = fields[key].annotation
        elif mappings:
            current = (get_args(mappings[0]) or (str, Any))[1]
        else:
            raise ConfigError(f"{variable}: {where} is not a section; set it whole "
                              f"({ENV_PREFIX}{'__'.join(keys[:depth]).upper()}=...)")
    return current


def _options(annotation: Any) -> tuple[Any, ...]:
    """The members of a union (`int | None` -> int, NoneType), or the type itself."""
    if get_origin(annotation) is Annotated:
        return _options(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        return tuple(member for arg in get_args(annotation) for member in _options(arg))
    return (annotation,)


def _is_text(annotation: Any) -> bool:
    if annotation is str:
        return True
    return get_origin(annotation) is Literal and all(isinstance(v, str) for v in get_args(annotation))


def _problem(loc: tuple[int | str, ...], message: str, variables: Mapping[tuple[str, ...], str]) -> str:
    """`key: what is wrong`, naming the SLURMLINK_* variable instead when the value came from one, and the
    variables that took part when the problem is with a whole section (e.g. two keys that exclude each other)."""
    message = message.removeprefix("Value error, ")
    key = ".".join(str(p) for p in loc)
    path = tuple(str(p) for p in loc)
    for keys, variable in variables.items():
        if path[:len(keys)] == keys:
            return f"{variable} ({key}): {message}"
    below = sorted(variable for keys, variable in variables.items() if keys[:len(path)] == path)
    if below:
        message = f"{message} (set from the environment: {', '.join(below)})"
    return f"{key}: {message}" if key else message
