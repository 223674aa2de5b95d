"""Fixtures of the unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from standins.checkin import CheckinStandin


@pytest.fixture(scope="session")
def checkin_server() -> Iterator[CheckinStandin]:
    """One Check-in stand-in for the whole session: its keys take time to make."""
    with CheckinStandin() as server:
        yield server


@pytest.fixture
def checkin(checkin_server: CheckinStandin) -> Iterator[CheckinStandin]:
    """The Check-in stand-in, reset before and after each test."""
    checkin_server.reset()
    yield checkin_server
    checkin_server.reset()
