"""The Check-in credentials the REST backend acts with: per local user, the freshest of their pods' tokens. The
store is an object of its own, made and kept by the service that owns the backend (api/backends.py); the backend
holds no per-user state of its own."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Protocol

from slurmlink.identity.refresh import Credentials, TokenSource, token_expiry

TOKEN_MARGIN_SECONDS = 30.0  # a token this close to its expiry is not sent any more


class Credential(Protocol):
    problem: str

    async def token(self) -> str: ...

    def expires_at(self) -> float | None: ...


class FixedToken:
    """A token without a refresh token: used until it expires."""

    def __init__(self, token: str) -> None:
        self.credentials = Credentials(token)
        self.problem = ""

    async def token(self) -> str:
        return self.credentials.access_token

    def expires_at(self) -> float | None:
        return token_expiry(self.credentials.access_token)


class FileToken:
    """The service identity's token, re-read whenever the site rotates the file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.problem = ""
        self._seen: tuple[tuple[int, int, int], str] | None = None

    async def token(self) -> str:
        try:
            info = os.stat(self.path)
            stamp = (info.st_ino, info.st_mtime_ns, info.st_size)  # a rewrite in place changes the size or time
            if self._seen is None or self._seen[0] != stamp:
                with open(self.path, encoding="utf-8") as fh:
                    self._seen = (stamp, fh.read().strip())
            self.problem = ""
        except OSError as exc:
            self.problem = f"cannot read the service token {self.path}: {exc.strerror}"
            if self._seen is None:
                return ""
        return self._seen[1] if self._seen else ""

    def expires_at(self) -> float | None:
        return token_expiry(self._seen[1]) if self._seen else None


def usable(credential: Credential, now: float | None = None) -> bool:
    expires = credential.expires_at()
    return expires is None or expires - (time.time() if now is None else now) > TOKEN_MARGIN_SECONDS


def better(new: Credential, held: Credential | None) -> bool:
    """Keep a refreshable credential over one that is not; otherwise the one that lasts longer."""
    if held is None or not usable(held):
        return True
    refreshable = isinstance(new, TokenSource), isinstance(held, TokenSource)
    if refreshable[0] != refreshable[1]:
        return refreshable[0]
    return (new.expires_at() or 0) >= (held.expires_at() or 0)


class CredentialStore:
    """local user -> the credential to act as them with, and when a pod's token last named them."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._held: dict[str, Credential] = {}
        self._signed_in: dict[str, float] = {}
        self._clock = clock

    def offer(self, user: str, credential: Credential) -> None:
        """A pod's token named `user`: keep its credential if it is better than the one held."""
        if better(credential, self._held.get(user)):
            self._held[user] = credential
        self._signed_in[user] = self._clock()

    def get(self, user: str) -> Credential | None:
        return self._held.get(user)

    def users(self) -> list[str]:
        return list(self._held)

    def __len__(self) -> int:
        return len(self._held)

    def forget_all_but(self, users: set[str], grace_seconds: float) -> list[str]:
        """Forget the users not in `users`, except those who signed in within `grace_seconds` (their pod may
        be on its way into the registry); the users forgotten."""
        settled = self._clock() - grace_seconds
        gone = [u for u in self._held if u not in users and self._signed_in.get(u, 0.0) < settled]
        for user in gone:
            del self._held[user]
            self._signed_in.pop(user, None)
        return gone
