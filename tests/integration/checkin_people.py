"""Module-scoped Check-in fixtures shared by the identity tests: the stand-in, and the people in it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from standins.checkin import CheckinStandin


@pytest.fixture(scope="module", name="checkin")
def module_checkin() -> Iterator[CheckinStandin]:
    server = CheckinStandin().start()
    yield server
    server.stop()


@pytest.fixture(scope="module", name="people")
def module_people(checkin: CheckinStandin) -> dict[str, str]:
    """Check-in subjects: two members of the VO, one of another VO, one member nobody mapped."""
    subjects = {name: checkin.new_subject() for name in ("alice", "bob", "eve", "nomap")}
    checkin.set_user(subjects["eve"], eduperson_entitlement=[
        "urn:mace:egi.eu:group:vo.other.org:role=member#aai.egi.eu"])
    return subjects
