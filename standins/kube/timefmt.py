"""metav1.Time and metav1.MicroTime on the wire, as the real apiserver decodes and re-encodes them (kubernetes.md:
the MicroTime trap).

- Time (creationTimestamp, condition times, ...) parses any RFC 3339 and is stored and served in whole seconds, UTC.
- MicroTime (Lease renewTime/acquireTime, Event eventTime) must be `YYYY-MM-DDTHH:MM:SS.ffffffZ`-shaped: Go parses it
  with the layout `2006-01-02T15:04:05.000000Z07:00`, so exactly six fraction digits; anything else is a 400.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from .errors import bad_request

TIME_FIELDS = frozenset({
    "creationTimestamp", "deletionTimestamp", "lastProbeTime", "lastTransitionTime", "startTime", "startedAt",
    "finishedAt", "lastHeartbeatTime", "firstTimestamp", "lastTimestamp", "lastUpdateTime", "expirationTimestamp",
    "deprecatedFirstTimestamp", "deprecatedLastTimestamp"})
MICRO_TIME_FIELDS = frozenset({"renewTime", "acquireTime", "eventTime", "lastObservedTime"})
# User data: never reinterpreted, whatever the keys are called.
_OPAQUE = frozenset({"data", "binaryData", "stringData", "labels", "annotations", "nodeSelector", "capacity",
                     "allocatable", "extra"})

_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_MICRO = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d{6})(Z|[+-]\d{2}:\d{2})$")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def format_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(match: re.Match[str]) -> dt.datetime:
    base, fraction, zone = match.groups()
    text = base + (fraction or "")[:7] + ("+00:00" if zone == "Z" else zone)
    return dt.datetime.fromisoformat(text)


def parse_time(value: str) -> dt.datetime:
    match = _RFC3339.match(value)
    if not match:
        raise ValueError(value)
    return _parse(match)


def _decode_error(kind: str, value: str, layout: str) -> Exception:
    return bad_request(f'{kind} in version "v1" cannot be handled as a {kind}: parsing time "{value}" as '
                       f'"{layout}": cannot parse "{value}" as "{layout}"')


def normalise_times(obj: Any, kind: str) -> Any:
    """Re-encode every Time in whole seconds and check every MicroTime, in place; 400 on what Go cannot parse."""
    if isinstance(obj, list):
        for item in obj:
            normalise_times(item, kind)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            if key in _OPAQUE:
                continue
            if key in TIME_FIELDS and isinstance(value, str) and value:
                match = _RFC3339.match(value)
                if not match:
                    raise _decode_error(kind, value, "2006-01-02T15:04:05Z07:00")
                obj[key] = format_time(_parse(match))  # the real one keeps whole seconds only
            elif key in MICRO_TIME_FIELDS and isinstance(value, str) and value:
                match = _MICRO.match(value)
                if not match:  # the MicroTime trap: a fraction that is absent or not six digits is refused
                    raise _decode_error(kind, value, "2006-01-02T15:04:05.000000Z07:00")
                obj[key] = format_micro(_parse(match))
            elif key in TIME_FIELDS | MICRO_TIME_FIELDS and value is not None and not isinstance(value, str):
                raise bad_request(f'{kind} in version "v1" cannot be handled as a {kind}: '
                                  f'{key}: expected a string, got {type(value).__name__}')
            else:
                normalise_times(value, kind)
    return obj
