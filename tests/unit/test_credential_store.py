"""The REST backend's credential store: the better credential is kept, and users without pods are forgotten
once their grace period is over."""

from __future__ import annotations

from slurmlink.slurm.credentials import CredentialStore
from tests.harness.clock import FakeClock


class Token:
    def __init__(self, expires: float | None) -> None:
        self.problem = ""
        self.expires = expires

    async def token(self) -> str:
        return "t"

    def expires_at(self) -> float | None:
        return self.expires


def test_the_longer_lasting_credential_is_kept() -> None:
    store = CredentialStore()
    short, long = Token(10_000_000_000.0), Token(20_000_000_000.0)
    store.offer("alice", long)
    store.offer("alice", short)
    assert store.get("alice") is long and store.users() == ["alice"] and len(store) == 1


def test_an_expired_credential_gives_way() -> None:
    store = CredentialStore()
    expired, fresh = Token(1.0), Token(10_000_000_000.0)
    store.offer("alice", expired)
    store.offer("alice", fresh)
    assert store.get("alice") is fresh


def test_users_without_pods_are_forgotten_after_their_grace() -> None:
    clock = FakeClock()
    store = CredentialStore(clock)
    store.offer("alice", Token(None))
    store.offer("bob", Token(None))
    assert store.forget_all_but({"alice"}, grace_seconds=60) == []  # bob just signed in
    clock.now += 61
    assert store.forget_all_but({"alice"}, grace_seconds=60) == ["bob"]
    assert store.users() == ["alice"] and store.get("bob") is None
