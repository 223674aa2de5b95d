"""`--log-format json`: one JSON object per line, with the record's extras (the audit entry) and its exception."""

from __future__ import annotations

import io
import json
import logging
import signal
import subprocess
import sys
import time

from slurmlink.logs import FORMAT, BatchingStreamHandler, JsonFormatter, SecondCachingFormatter


def formatted(record: logging.LogRecord) -> dict[str, object]:
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert isinstance(parsed, dict)
    return parsed


def record(message: str, *args: object, level: int = logging.INFO, **extra: object) -> logging.LogRecord:
    made = logging.getLogger("slurmlink.test").makeRecord("slurmlink.test", level, __file__, 1, message, args, None,
                                                          extra=extra)
    made.created = 1_780_000_000.25
    return made


def test_the_fields_of_a_line() -> None:
    assert formatted(record("node %s ready", "n1", level=logging.WARNING)) == {
        "time": "2026-05-28T20:26:40.250Z", "level": "WARNING", "logger": "slurmlink.test", "message": "node n1 ready"}


def test_extras_become_fields_and_never_replace_the_base_ones() -> None:
    entry = {"decision": "allow", "mapped_user": "egi001"}
    line = formatted(record("%s", json.dumps(entry), audit=entry, key="state_dir", level_name="x"))
    assert line["audit"] == entry and line["key"] == "state_dir" and line["level"] == "INFO"
    assert formatted(record("x", when=object()))["when"].startswith("<object")  # type: ignore[union-attr]
    assert "color_message" not in formatted(record("up", color_message="\x1b[36mup\x1b[0m"))  # uvicorn's


def test_a_multi_line_message_and_an_exception_stay_on_one_line() -> None:
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        failed = logging.getLogger("t").makeRecord("t", logging.ERROR, __file__, 1, "failed:\n%s", ("why",),
                                                    sys.exc_info())
    line = formatted(failed)
    assert line["message"] == "failed:\nwhy"
    assert "RuntimeError: boom\nsecond line" in str(line["exception"])


def test_a_handler_with_it_writes_one_line_per_record() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("slurmlink.test.handler")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("one")
        logger.warning("two\nlines")
    finally:
        logger.removeHandler(handler)
    assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == ["one", "two\nlines"]


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_a_batching_handler_writes_its_lines_together_and_all_of_them_when_flushed() -> None:
    stream = CountingStream()
    handler = BatchingStreamHandler(stream, interval=3600.0)  # only flush() writes here
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("slurmlink.test.batching")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for n in range(3):
            logger.warning("line %d", n)
        assert stream.getvalue() == "" and stream.writes == 0
        handler.flush()
        assert stream.getvalue() == "line 0\nline 1\nline 2\n" and stream.writes == 1
        logger.warning("last")
        handler.close()  # what logging.shutdown does at exit: nothing pending is lost
        assert stream.getvalue().endswith("line 2\nlast\n")
        logger.warning("after")  # a thread that logs after the exit hook: no writer is left, written at once
        assert stream.getvalue().endswith("last\nafter\n")
    finally:
        logger.removeHandler(handler)


def test_a_batching_handler_writes_within_its_interval_and_bounds_what_it_holds() -> None:
    stream = CountingStream()
    handler = BatchingStreamHandler(stream, interval=0.05, max_pending=2)
    handler.setFormatter(logging.Formatter("%(message)s"))
    try:
        handler.handle(record("soon"))
        deadline = time.monotonic() + 10
        while "soon" not in stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stream.getvalue() == "soon\n"
    finally:
        handler.close()
    bounded = BatchingStreamHandler(CountingStream(), interval=3600.0, max_pending=2)
    bounded.setFormatter(logging.Formatter("%(message)s"))
    try:
        bounded.handle(record("a"))
        assert bounded.stream.getvalue() == ""
        bounded.handle(record("b"))  # the second pending line: both written at once
        assert bounded.stream.getvalue() == "a\nb\n" and bounded.stream.writes == 1
    finally:
        bounded.close()


def test_a_batched_process_loses_no_line_at_exit() -> None:
    code = ("import logging; from slurmlink.logs import configure; configure('info', batched=True); "
            "[logging.getLogger('t').info('line %d', n) for n in range(50)]")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert [line.rsplit(" ", 1)[-1] for line in done.stderr.splitlines()] == [str(n) for n in range(50)]


def test_a_service_stopped_before_its_servers_run_loses_no_line() -> None:
    """SIGTERM while `slurmlink api` or `proxy` still starts (cli._batched_logging): an exit, with its hooks."""
    code = ("import logging, os, signal, time; from slurmlink.cli import _batched_logging; "
            "_batched_logging('info', 'text'); logging.getLogger('t').warning('starting'); "
            "os.kill(os.getpid(), signal.SIGTERM); time.sleep(30)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 128 + signal.SIGTERM and done.stderr.rstrip().endswith("t: starting"), done


def test_the_text_format_writes_what_logging_formatter_writes() -> None:
    cached, plain = SecondCachingFormatter(FORMAT), logging.Formatter(FORMAT)
    for created in (1_700_000_000.0, 1_700_000_000.999, 1_700_000_001.25, 1_700_000_000.5, 1_700_003_600.125):
        record = logging.LogRecord("slurmlink.proxy", logging.INFO, "", 0, "a %s", ("line",), None)
        record.created, record.msecs = created, (created - int(created)) * 1000
        assert cached.format(record) == plain.format(record)
