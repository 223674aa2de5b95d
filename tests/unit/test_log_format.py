"""`--log-format json`: one JSON object per line, with the record's extras (the audit entry) and its exception."""

from __future__ import annotations

import io
import json
import logging
import sys

from slurmlink.logs import JsonFormatter


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
