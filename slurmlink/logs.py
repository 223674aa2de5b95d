"""Logging of the commands, and the filter that keeps secrets carried in URLs out of the log.

httpx logs every request URL at INFO on its process-wide `httpx` logger; a client that must put a secret in a
query string (ALISE wants its apikey there) calls `redact_httpx_query` once, and from then on that parameter's
value is logged as `***` by every client of the process.
"""

from __future__ import annotations

import logging
import re

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=FORMAT)


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
