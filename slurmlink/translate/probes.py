"""Probes and lifecycle hooks of a container -> the words `sl_run` takes before its `--` (see prelude.sh).

Pure: the pod's probe and hook specs are validated with Kubernetes' defaults and rules, and turned into a
flat argv that the script builder shell-quotes item by item, like every other value from the pod:

    probe KIND ACTION INITIAL PERIOD TIMEOUT SUCCESS FAILURE GRACE N ARGV(N)...
    hook KIND ACTION LABEL N ARGV(N)...

KIND is startup|liveness|readiness (probes) or poststart|prestop (hooks); ACTION is exec|http|tcp|grpc|sleep;
LABEL names a hook in its failure Event (the kubelet's words);
ARGV is what the prelude runs for one check: the container runtime's command line for `exec` (the same
image, environment and mounts as the container), else one of the prelude's own checks (`sl_http`, `sl_tcp`,
`sl_grpc`, `sleep`).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from slurmlink.core.errors import PodRejected
from slurmlink.core.kube import as_dict, as_list, as_str
from slurmlink.translate.env import expand

# pod field -> the prelude's word
PROBES = {"startupProbe": "startup", "livenessProbe": "liveness", "readinessProbe": "readiness"}
HOOKS = {"postStart": "poststart", "preStop": "prestop"}
PROBE_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
HOOK_HANDLERS = ("exec", "httpGet", "sleep")
# Kubernetes' defaults (a 0 in the pod means "default" too, as the apiserver's defaulting does)
DEFAULT_PERIOD, DEFAULT_TIMEOUT, DEFAULT_SUCCESS, DEFAULT_FAILURE = 10, 1, 1, 3
DEFAULT_HOST = "127.0.0.1"  # the pod's IP: the job shares the compute node's network
_HOST = re.compile(r"\A[A-Za-z0-9:][A-Za-z0-9.:-]{0,252}\Z")  # a name or an IP: it becomes /dev/tcp/HOST/PORT
_HEADER_NAME = re.compile(r"\A[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")  # an HTTP token
_PORT_NAME = re.compile(r"\A[a-z0-9]([a-z0-9-]{0,13})\Z")
PATH_SAFE = "/?&=%:@!$'()*+,;-._~#[]"  # kept as they are in a request target; the rest is percent-encoded

ExecArgv = Callable[[list[str]], list[str]]  # a command -> the runtime's argv running it like the container


def container_words(container: Mapping[str, Any], env: Mapping[str, str], grace: int, exec_argv: ExecArgv,
                    *, init: bool = False) -> list[str]:
    """`sl_run`'s probe and hook words for one container ([] when it has none)."""
    name = container.get("name")
    present = [f for f in (*PROBES, "lifecycle") if container.get(f) is not None]
    if init and present:
        raise PodRejected(f"init container {name}: {present[0]} is not allowed for init containers", "InvalidProbe")
    words: list[str] = []
    for field, kind in PROBES.items():
        if container.get(field) is not None:
            words += _probe(as_dict(container[field], f"{name}.{field}"), kind, f"container {name}: {field}",
                            container, env, grace, exec_argv)
    lifecycle = as_dict(container.get("lifecycle"), f"container {name}: lifecycle")
    for field, kind in HOOKS.items():
        if lifecycle.get(field) is not None:
            where = f"container {name}: lifecycle.{field}"
            hook = as_dict(lifecycle[field], where)
            action, argv = _handler(hook, HOOK_HANDLERS, where, container, env, exec_argv, probe=False)
            words += ["hook", kind, action, _hook_label(hook, action), str(len(argv)), *argv]
    return words


def _hook_label(hook: dict[str, Any], action: str) -> str:
    """What the kubelet names a hook by in its failure Event: the command, the path, the seconds."""
    if action == "exec":
        return "[" + " ".join(str(c) for c in hook["exec"].get("command") or []) + "]"
    if action == "http":
        return str(hook["httpGet"].get("path") or "")
    return str(hook["sleep"].get("seconds"))


def _probe(spec: dict[str, Any], kind: str, where: str, container: Mapping[str, Any], env: Mapping[str, str],
           grace: int, exec_argv: ExecArgv) -> list[str]:
    initial = _seconds(spec, "initialDelaySeconds", 0, where)
    period = _seconds(spec, "periodSeconds", DEFAULT_PERIOD, where)
    timeout = _seconds(spec, "timeoutSeconds", DEFAULT_TIMEOUT, where)
    success = _seconds(spec, "successThreshold", DEFAULT_SUCCESS, where)
    failure = _seconds(spec, "failureThreshold", DEFAULT_FAILURE, where)
    if kind != "readiness" and success != 1:
        raise PodRejected(f"{where}.successThreshold must be 1 for {kind} probes", "InvalidProbe")
    own_grace = spec.get("terminationGracePeriodSeconds")
    if own_grace is not None:
        if kind == "readiness":
            raise PodRejected(f"{where}.terminationGracePeriodSeconds must not be set for readiness probes",
                              "InvalidProbe")
        # a probe's own grace period must be positive (Kubernetes' validation)
        grace = _seconds(spec, "terminationGracePeriodSeconds", grace, where)
        if grace < 1:
            raise PodRejected(f"{where}.terminationGracePeriodSeconds must be greater than 0", "InvalidProbe")
    action, argv = _handler(spec, PROBE_HANDLERS, where, container, env, exec_argv, probe=True)
    return ["probe", kind, action, *(str(v) for v in (initial, period, timeout, success, failure, grace)),
            str(len(argv)), *argv]


def _seconds(spec: Mapping[str, Any], key: str, default: int, where: str) -> int:
    value = spec.get(key)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > 10**7:
        raise PodRejected(f"{where}.{key} must be a non-negative integer", "InvalidProbe")
    return value or default if key != "initialDelaySeconds" else value


def _handler(spec: dict[str, Any], allowed: tuple[str, ...], where: str, container: Mapping[str, Any],
             env: Mapping[str, str], exec_argv: ExecArgv, *, probe: bool) -> tuple[str, list[str]]:
    given = [h for h in dict.fromkeys((*PROBE_HANDLERS, *HOOK_HANDLERS)) if spec.get(h) is not None]
    if not given:
        raise PodRejected(f"{where} must specify a handler type ({', '.join(allowed)})", "InvalidProbe")
    if len(given) > 1:
        raise PodRejected(f"{where} may not specify more than 1 handler type", "InvalidProbe")
    handler = given[0]
    if handler not in allowed:
        raise PodRejected(f"{where}: {handler} is not supported here (use {', '.join(allowed)})", "InvalidProbe")
    body = as_dict(spec[handler], f"{where}.{handler}")
    if handler == "exec":
        command = [as_str(c, f"{where}.exec.command[]") for c in as_list(body.get("command"), f"{where}.exec.command")]
        if not command or not command[0]:
            raise PodRejected(f"{where}.exec.command must not be empty", "InvalidProbe")
        # The kubelet expands $(VAR) in probe commands (from the container's env), not in hook commands.
        return "exec", exec_argv([expand(c, env) for c in command] if probe else command)
    if handler == "sleep":
        seconds = body.get("seconds")
        if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 0:
            raise PodRejected(f"{where}.sleep.seconds must be a non-negative integer", "InvalidProbe")
        return "sleep", ["sleep", str(seconds)]
    port = _port(body.get("port"), container, f"{where}.{handler}.port")
    if handler == "grpc":
        if not isinstance(body.get("port"), int):
            raise PodRejected(f"{where}.grpc.port must be a number", "InvalidProbe")
        service = as_str(body.get("service") or "", f"{where}.grpc.service")
        return "grpc", ["sl_grpc", port, service]
    host = _host(body.get("host"), f"{where}.{handler}.host")
    if handler == "tcpSocket":
        return "tcp", ["sl_tcp", host, port]
    scheme = str(body.get("scheme") or "HTTP").upper()
    if scheme not in ("HTTP", "HTTPS"):
        raise PodRejected(f"{where}.httpGet.scheme must be HTTP or HTTPS", "InvalidProbe")
    path = as_str(body.get("path") or "/", f"{where}.httpGet.path")
    path = urllib.parse.quote(path if path.startswith("/") else "/" + path, safe=PATH_SAFE)
    headers: list[str] = []
    for i, header in enumerate(as_list(body.get("httpHeaders"), f"{where}.httpGet.httpHeaders")):
        header = as_dict(header, f"{where}.httpGet.httpHeaders[{i}]")
        name = as_str(header.get("name"), f"{where}.httpGet.httpHeaders[{i}].name")
        value = as_str(header.get("value", ""), f"{where}.httpGet.httpHeaders[{i}].value")
        if not _HEADER_NAME.match(name):
            raise PodRejected(f"{where}.httpGet.httpHeaders[{i}].name {name!r} is not an HTTP header name",
                              "InvalidProbe")
        if any(c in value for c in "\r\n\x00"):
            raise PodRejected(f"{where}.httpGet.httpHeaders[{i}].value must not contain line breaks",
                              "InvalidProbe")
        headers += [name, value]
    return "http", ["sl_http", scheme, host, port, path, str(len(headers) // 2), *headers]


def _port(value: Any, container: Mapping[str, Any], where: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        if 1 <= value <= 65535:
            return str(value)
        raise PodRejected(f"{where} {value} must be between 1 and 65535", "InvalidProbe")
    if isinstance(value, str) and value.isdigit():
        return _port(int(value), container, where)
    if isinstance(value, str) and _PORT_NAME.match(value):
        for port in as_list(container.get("ports"), "ports"):
            port = as_dict(port, "ports[]")
            if port.get("name") == value:
                return _port(port.get("containerPort"), {}, f"{where} ({value})")
        raise PodRejected(f"{where}: the container has no port named {value!r}", "InvalidProbe")
    raise PodRejected(f"{where} must be a number or the name of a container port", "InvalidProbe")


def _host(value: Any, where: str) -> str:
    if value is None or value == "":
        return DEFAULT_HOST
    host = as_str(value, where)
    if not _HOST.match(host):
        raise PodRejected(f"{where} {host!r} is not a host name or IP address", "InvalidProbe")
    return host
