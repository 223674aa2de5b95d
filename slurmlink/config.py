"""Configuration files: one YAML file per service, overridden by SLURMLINK_* environment variables.

`SLURMLINK_POLL_INTERVAL=5` sets `poll_interval`; a double underscore goes one level down:
`SLURMLINK_SITE__PARTITION=gpu` sets `site.partition`. Values are parsed as YAML (so `true`, `5`, `[a, b]`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from slurmlink.core.errors import SlurmlinkError

Model = TypeVar("Model", bound=BaseModel)
ENV_PREFIX = "SLURMLINK_"


class ConfigError(SlurmlinkError):
    """A configuration problem, naming the file (or variable) and the key; one line, for the command to print."""

    default_reason = "InvalidConfig"


class AdminListen(BaseModel):
    """`admin:` of every service: plain HTTP GET /healthz and /metrics, without authentication, for probes and
    Prometheus. Keep it on loopback or a private network (it says more than the public port)."""

    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int | None = Field(default=None, ge=0, le=65535)  # None: no admin listener


def _set(target: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        target = target.setdefault(key, {})
        if not isinstance(target, dict):
            raise ConfigError(f"{ENV_PREFIX}{'__'.join(keys).upper()}: {key} is not a section")
    target[keys[-1]] = value


def load_config(model: type[Model], path: str | Path | None, environ: Mapping[str, str] | None = None) -> Model:
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    source = str(path) if path else "defaults"
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
    fields = set(model.model_fields)
    variables: dict[tuple[str, ...], str] = {}  # keys set from the environment -> the variable that set them
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX):].split("__")]
        if keys[0] not in fields:
            continue  # variables of other services or of the CLI
        try:
            value = yaml.safe_load(raw) if raw else raw
        except yaml.YAMLError as exc:
            raise ConfigError(f"{name}: not valid YAML: {' '.join(str(exc).split())}") from exc
        _set(data, keys, value)
        variables[tuple(keys)] = name
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_problem(e["loc"], e["msg"], variables) for e in exc.errors())
        raise ConfigError(f"{source}: {problems}") from exc


def _problem(loc: tuple[int | str, ...], message: str, variables: Mapping[tuple[str, ...], str]) -> str:
    """`key: what is wrong`, naming the SLURMLINK_* variable instead when the value came from one."""
    message = message.removeprefix("Value error, ")
    key = ".".join(str(p) for p in loc)
    path = tuple(str(p) for p in loc)
    for keys, variable in variables.items():
        if path[:len(keys)] == keys:
            return f"{variable} ({key}): {message}"
    return f"{key}: {message}" if key else message
