"""The change feed behind GET /slurmlink/v1/changes (slurmlink/api/changes.py), as plain data and with waiting."""

from __future__ import annotations

import asyncio

import pytest

from slurmlink.api.changes import BadCursor, ChangeFeed, ChangeLog, parse_cursor
from slurmlink.translate.podspec import PodRef


def test_no_cursor_is_a_snapshot_of_every_pod() -> None:
    log = ChangeLog(epoch="e1")
    log.record("a", "1")
    log.record("b", "1")
    delta = log.since(None)
    assert delta is not None and delta.reset and sorted(delta.uids) == ["a", "b"] and delta.cursor == "e1:2"
    assert log.since("") == delta


def test_changes_after_a_cursor_are_each_pod_once_in_order_of_their_last_change() -> None:
    log = ChangeLog(epoch="e1")
    log.record("a", "1")
    log.record("b", "1")
    cursor = log.cursor
    log.record("a", "2")
    log.record("c", "1")
    log.record("a", "3")
    delta = log.since(cursor)
    assert delta is not None and not delta.reset
    assert delta.uids == ["c", "a"]  # a once, as it is now
    assert delta.cursor == "e1:5"
    assert log.since(delta.cursor) is None  # nothing newer: the caller waits


def test_the_same_status_again_is_no_change() -> None:
    log = ChangeLog(epoch="e1")
    assert log.record("a", "1")
    assert not log.record("a", "1")
    assert log.revision == 1


def test_a_cursor_of_another_epoch_gets_a_reset() -> None:
    log = ChangeLog(epoch="new")
    log.record("a", "1")
    delta = log.since("old:1")
    assert delta is not None and delta.reset and delta.uids == ["a"] and delta.cursor == "new:1"


def test_a_cursor_from_the_future_gets_a_reset() -> None:
    log = ChangeLog(epoch="e1")
    delta = log.since("e1:7")
    assert delta is not None and delta.reset and delta.cursor == "e1:0"


def test_removals_are_told_once_and_not_in_a_snapshot() -> None:
    log = ChangeLog(epoch="e1")
    log.record("a", "1")
    log.record("b", "1")
    cursor = log.cursor
    log.remove(PodRef("ns", "pa", "a"))
    delta = log.since(cursor)
    assert delta is not None and delta.uids == [] and delta.removed == [PodRef("ns", "pa", "a")]
    snapshot = log.since(None)
    assert snapshot is not None and snapshot.uids == ["b"] and snapshot.removed == []
    assert log.since(delta.cursor) is None


def test_a_pod_never_reported_is_removed_silently() -> None:
    log = ChangeLog(epoch="e1")
    log.remove(PodRef("ns", "x", "x"))
    assert log.revision == 0


def test_a_cursor_older_than_the_removals_kept_gets_a_reset() -> None:
    log = ChangeLog(epoch="e1", max_removals=2)
    for uid in "abc":
        log.record(uid, "1")
    old = log.cursor  # e1:3
    for uid in "ab":
        log.remove(PodRef("ns", uid, uid))
    after_first = "e1:4"
    log.remove(PodRef("ns", "c", "c"))  # the removal of a (revision 4) is dropped
    delta = log.since(old)
    assert delta is not None and delta.reset
    delta = log.since(after_first)
    assert delta is not None and not delta.reset
    assert [r.uid for r in delta.removed] == ["b", "c"]


def test_a_pod_back_after_its_removal_is_a_change_not_a_removal() -> None:
    log = ChangeLog(epoch="e1")
    log.record("a", "1")
    cursor = log.cursor
    log.remove(PodRef("ns", "a", "a"))
    log.record("a", "1")
    delta = log.since(cursor)
    assert delta is not None and delta.uids == ["a"] and delta.removed == []


@pytest.mark.parametrize("text", ["e1", "e1:", ":3", "e1:x", "e1:-1"])
def test_a_malformed_cursor_is_refused(text: str) -> None:
    with pytest.raises(BadCursor):
        parse_cursor(text)
    with pytest.raises(BadCursor):
        ChangeLog(epoch="e1").since(text)


def test_each_start_has_its_own_epoch() -> None:
    assert ChangeLog().epoch != ChangeLog().epoch


def test_a_long_poll_returns_at_the_next_change() -> None:
    async def scenario() -> tuple[list[str], str]:
        feed = ChangeFeed(epoch="e1")
        feed.record("a", "1")
        waiting = asyncio.create_task(feed.wait(feed.cursor, timeout=30))
        await asyncio.sleep(0)
        assert not waiting.done()
        feed.record("a", "2")
        delta = await asyncio.wait_for(waiting, 5)
        return delta.uids, delta.cursor

    assert asyncio.run(scenario()) == (["a"], "e1:2")


def test_a_long_poll_wakes_on_a_removal() -> None:
    async def scenario() -> list[str]:
        feed = ChangeFeed(epoch="e1")
        feed.record("a", "1")
        waiting = asyncio.create_task(feed.wait(feed.cursor, timeout=30))
        await asyncio.sleep(0)
        feed.remove(PodRef("ns", "a", "a"))
        delta = await asyncio.wait_for(waiting, 5)
        return [r.uid for r in delta.removed]

    assert asyncio.run(scenario()) == ["a"]


def test_a_long_poll_times_out_with_nothing_and_the_same_cursor() -> None:
    async def scenario() -> tuple[bool, list[str], str]:
        feed = ChangeFeed(epoch="e1")
        feed.record("a", "1")
        feed.record("a", "1")  # no change
        delta = await feed.wait("e1:1", timeout=0.05)
        return delta.reset, delta.uids, delta.cursor

    assert asyncio.run(scenario()) == (False, [], "e1:1")


def test_a_long_poll_with_a_stale_cursor_answers_at_once() -> None:
    async def scenario() -> bool:
        feed = ChangeFeed(epoch="e1")
        feed.record("a", "1")
        delta = await asyncio.wait_for(feed.wait("e0:5", timeout=30), 5)
        return delta.reset

    assert asyncio.run(scenario())


def test_closing_the_feed_answers_the_long_polls_at_once() -> None:
    async def scenario() -> tuple[bool, list[str], str]:
        feed = ChangeFeed(epoch="e1")
        feed.record("a", "1")
        waiting = asyncio.create_task(feed.wait("e1:1", timeout=60))
        await asyncio.sleep(0)
        feed.close()
        delta = await asyncio.wait_for(waiting, 5)
        return delta.reset, delta.uids, delta.cursor

    assert asyncio.run(scenario()) == (False, [], "e1:1")
