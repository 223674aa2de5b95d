"""The Kubernetes remote-command protocol (exec/attach), as the kubelet and kubectl speak it.

Over SPDY each stream is one channel, named by its `streamtype` header; over WebSocket (kubectl to the
apiserver) every message starts with one channel byte, and v5 adds a "close channel" message (255, channel)
because a WebSocket cannot half-close. From v4 on, the error channel carries a JSON metav1.Status whose
details give a non-zero exit code (reason NonZeroExitCode, cause ExitCode); earlier versions carry text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

V5, V4, V3, V2, V1 = ("v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io",
                      "channel.k8s.io")
# What the kubelet answers over SPDY, newest first (its SupportedStreamingProtocols): v5 exists for
# WebSocket only, so an apiserver offering v5..v1 gets v4.
SPDY_PROTOCOLS = (V4, V3, V2, V1)
WEBSOCKET_PROTOCOLS = (V5, V4)
PROTOCOL_HEADER = "X-Stream-Protocol-Version"

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255  # v5: the next byte names a channel the sender will write no more to
STREAM_TYPES = {"stdin": STDIN, "stdout": STDOUT, "stderr": STDERR, "error": ERROR, "resize": RESIZE}
STREAM_TYPE_HEADER = "streamtype"


def negotiate(offered: Sequence[str], supported: Sequence[str]) -> str | None:
    """The client's first offer that we support (httpstream.Handshake's rule); None: nothing in common."""
    for protocol in offered:
        for each in protocol.split(","):
            if each.strip() in supported:
                return each.strip()
    return None


@dataclass(frozen=True)
class ExecOptions:
    """What the caller asked for: argv, and which channels it wants."""

    command: tuple[str, ...]
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    @classmethod
    def from_kubelet_query(cls, query: list[tuple[str, str]]) -> ExecOptions:
        """The kubelet's query (`command=..&input=1&output=1&error=1&tty=1`)."""
        def flag(name: str) -> bool:
            return any(key == name and value.lower() in ("1", "true") for key, value in query)
        options = cls(tuple(value for key, value in query if key == "command"), flag("input"), flag("output"),
                      flag("error"), flag("tty"))
        return options.checked()

    def checked(self) -> ExecOptions:
        if self.tty and self.stderr:
            # The kubelet's rule: with a TTY, stderr is merged into stdout.
            return ExecOptions(self.command, self.stdin, self.stdout, False, True)
        return self

    def kubelet_query(self) -> list[tuple[str, str]]:
        query = [("command", part) for part in self.command]
        for name, on in (("input", self.stdin), ("output", self.stdout), ("error", self.stderr),
                         ("tty", self.tty)):
            if on:
                query.append((name, "1"))
        return query

    def expected_streams(self, protocol: str) -> set[str]:
        expected = {"error"}
        for name, on in (("stdin", self.stdin), ("stdout", self.stdout), ("stderr", self.stderr)):
            if on:
                expected.add(name)
        if self.tty and protocol in (V5, V4, V3):
            expected.add("resize")
        return expected


def success_status() -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}


def exit_status(code: int, command: Sequence[str]) -> dict[str, Any]:
    """The Status a v4 kubelet writes for a command that exited with `code` (0: Success)."""
    if code == 0:
        return success_status()
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing command {list(command)}, "
                       f"exit code {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def failure_status(message: str, reason: str = "InternalError", code: int = 500) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


def error_stream_bytes(status: dict[str, Any], protocol: str) -> bytes:
    """What goes on the error stream: JSON from v4 on; before that only a failure's text (nothing for 0)."""
    if protocol in (V5, V4):
        return json.dumps(status).encode()
    return b"" if status.get("status") == "Success" else str(status.get("message", "")).encode()


def exit_code_of(error_stream: bytes) -> int | None:
    """The exit code a v4 error stream reports (0 for Success); None when it is no exit-code Status."""
    try:
        status = json.loads(error_stream or b"{}")
    except ValueError:
        return None
    if status.get("status") == "Success":
        return 0
    if status.get("reason") == "NonZeroExitCode":
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                try:
                    return int(cause.get("message"))
                except (TypeError, ValueError):
                    return None
    return None


def parse_resize(data: bytes) -> tuple[int, int] | None:
    """(columns, rows) from one resize message `{"Width": w, "Height": h}`; None if unreadable."""
    try:
        size = json.loads(data)
        width, height = int(size["Width"]), int(size["Height"])
    except (ValueError, KeyError, TypeError):
        return None
    return (width, height) if 0 <= width < 65536 and 0 <= height < 65536 else None


def resize_message(width: int, height: int) -> bytes:
    return json.dumps({"Width": width, "Height": height}).encode()


def frame(channel: int, data: bytes) -> bytes:
    """One WebSocket message of the channel protocol."""
    return bytes([channel]) + data


def close_frame(channel: int) -> bytes:
    return bytes([CLOSE, channel])


def unframe(message: bytes) -> tuple[int, bytes]:
    if not message:
        raise ValueError("an empty channel message")
    return message[0], message[1:]
