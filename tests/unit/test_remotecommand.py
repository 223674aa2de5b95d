"""The Kubernetes remote-command protocol's pure parts (slurmlink/streams/remotecommand.py)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from slurmlink.streams import remotecommand as rc


def test_negotiation_takes_the_clients_first_supported_offer() -> None:
    offered = [rc.V5, rc.V4, rc.V3, rc.V2, rc.V1]  # what a v1.36 apiserver offers a kubelet
    assert rc.negotiate(offered, rc.SPDY_PROTOCOLS) == rc.V4
    assert rc.negotiate([f"{rc.V3}, {rc.V2}"], rc.SPDY_PROTOCOLS) == rc.V3
    assert rc.negotiate(["v9.channel.k8s.io"], rc.SPDY_PROTOCOLS) is None
    assert rc.negotiate([rc.V5, rc.V4], rc.WEBSOCKET_PROTOCOLS) == rc.V5


@given(code=st.integers(0, 255), command=st.lists(st.text(max_size=10), min_size=1, max_size=3))
def test_exit_codes_round_trip_through_the_error_stream(code: int, command: list[str]) -> None:
    data = rc.error_stream_bytes(rc.exit_status(code, command), rc.V4)
    assert rc.exit_code_of(data) == code


def test_the_status_of_a_non_zero_exit_is_kubelets() -> None:
    status = json.loads(rc.error_stream_bytes(rc.exit_status(3, ["sh", "-c", "exit 3"]), rc.V4))
    assert status["status"] == "Failure" and status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert rc.error_stream_bytes(rc.exit_status(0, ["true"]), rc.V2) == b""  # before v4: only failures' text


def test_kubelet_query_round_trips_and_a_tty_merges_stderr() -> None:
    options = rc.ExecOptions(("sh", "-c", "echo a&b"), True, True, True, False)
    assert rc.ExecOptions.from_kubelet_query(options.kubelet_query()) == options
    with_tty = rc.ExecOptions.from_kubelet_query([("command", "sh"), ("output", "1"), ("error", "1"),
                                                   ("tty", "1")])
    assert not with_tty.stderr
    assert with_tty.expected_streams(rc.V4) == {"error", "stdout", "resize"}
    assert with_tty.expected_streams(rc.V2) == {"error", "stdout"}  # resize came with v3


def test_channel_frames() -> None:
    assert rc.frame(rc.STDOUT, b"hi") == b"\x01hi"
    assert rc.unframe(b"\x00data") == (rc.STDIN, b"data")
    assert rc.close_frame(rc.STDIN) == b"\xff\x00"
    assert rc.parse_resize(rc.resize_message(80, 24)) == (80, 24)
    assert rc.parse_resize(b'{"Width": -1, "Height": 2}') is None
    assert rc.parse_resize(b"junk") is None
