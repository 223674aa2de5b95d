"""Logging of the commands (text, or one JSON object per line), and the filter that keeps secrets carried in URLs
out of the log.

httpx logs every request URL at INFO on its process-wide `httpx` logger; a client that must put a secret in a
query string (ALISE wants its apikey there) calls `redact_httpx_query` once, and from then on that parameter's
value is logged as `***` by every client of the process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import TextIO

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
BATCH_SECONDS = 0.2


class LogFormat(StrEnum):
    text = "text"
    json = "json"


def configure(level: str, log_format: LogFormat | str = LogFormat.text, *, batched: bool = False) -> None:
    """The root logger to stderr; `batched`: written every BATCH_SECONDS rather than line by line."""
    # Neither format shows the source line, thread or process: not collecting them makes each record cheaper
    # (the logging HOWTO's "Optimization"; the proxy logs a line or two per request).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = BatchingStreamHandler(interval=BATCH_SECONDS) if batched else logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == LogFormat.json else SecondCachingFormatter(FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])


class BatchingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that writes what was logged at most `interval` seconds later, all of it in one write,
    instead of one write (a system call) per record: for a service that logs a line or two per request.
    A daemon thread writes every `interval`; `flush()` writes what is pending, and logging's exit hook
    (`logging.shutdown`) calls it, so a normal exit or SIGTERM loses nothing (SIGKILL: the last `interval`)."""

    def __init__(self, stream: TextIO | None = None, interval: float = 0.2, max_pending: int = 1000) -> None:
        super().__init__(stream)
        self.interval = interval
        self.max_pending = max_pending  # written at once beyond this many lines: memory stays bounded
        self._pending: list[str] = []
        self._stopping = threading.Event()
        threading.Thread(target=self._write_periodically, name="log-writer", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:  # called with the handler's lock held
        try:
            self._pending.append(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)
            return
        if len(self._pending) >= self.max_pending or self._stopping.is_set():  # closed: no writer any more
            self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            text = "".join(self._pending)
            self._pending.clear()
            # a closed or broken stream: as logging does, never fail the caller (nor end the writer thread)
            with contextlib.suppress(OSError, ValueError):
                if text:
                    self.stream.write(text)
                super().flush()

    def close(self) -> None:
        self._stopping.set()
        self.flush()
        super().close()

    def _write_periodically(self) -> None:
        while not self._stopping.wait(self.interval):
            if self._pending:
                self.flush()


class SecondCachingFormatter(logging.Formatter):
    """logging.Formatter, the same text, formatting a record's date and time (strftime) once per second rather
    than once per record: the proxy logs a line or two per request."""

    def __init__(self, fmt: str | None = None) -> None:
        super().__init__(fmt)
        self._second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 (logging's)
        second = int(record.created)
        if datefmt is not None or self.default_msec_format is None:
            return super().formatTime(record, datefmt)
        cached, text = self._second  # one tuple: a thread never sees one second's text with another's
        if cached != second:
            text = time.strftime(self.default_time_format, self.converter(second))
            self._second = (second, text)
        return self.default_msec_format % (text, record.msecs)


# What every LogRecord carries; anything else on a record came from `extra=` and goes into the JSON object
# (but uvicorn's `color_message`, the message again with terminal colours).
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName", "color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, the record's extras, and the exception.

    json.dumps escapes newlines, so a message that carries one (a traceback, a hostile claim) stays one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
                    .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


class RedactQueryParameter(logging.Filter):
    """Masks the value of one query parameter in a log record's arguments."""

    def __init__(self, parameter: str) -> None:
        super().__init__()
        self.parameter = parameter
        self._pattern = re.compile(rf"({re.escape(parameter)}=)[^&\s\"']*")

    def filter(self, record: logging.LogRecord) -> bool:
        marker = f"{self.parameter}="
        if isinstance(record.args, tuple):
            record.args = tuple(self._pattern.sub(r"\1***", str(a)) if marker in str(a) else a for a in record.args)
        return True


def redact_httpx_query(parameter: str) -> None:
    """Install the filter for `parameter` on httpx's logger (once per parameter)."""
    httpx_log = logging.getLogger("httpx")
    if not any(isinstance(f, RedactQueryParameter) and f.parameter == parameter for f in httpx_log.filters):
        httpx_log.addFilter(RedactQueryParameter(parameter))
