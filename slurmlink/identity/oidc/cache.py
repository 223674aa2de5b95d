"""Validated identities by sha256(token), least recently used first out, never kept past the token's expiry."""

from __future__ import annotations

from collections import OrderedDict

from .identity import Identity


class IdentityCache:
    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        # token hash -> (identity, cached until, token expiry when known: opaque tokens via userinfo have none)
        self._entries: OrderedDict[str, tuple[Identity, float, float | None]] = OrderedDict()

    def get(self, token_hash: str, now: float) -> tuple[Identity, float | None] | None:
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        identity, until, exp = entry
        if now >= until:
            del self._entries[token_hash]
            return None
        self._entries.move_to_end(token_hash)
        return identity, exp

    def put(self, identity: Identity, exp: float | None, ttl: float, now: float) -> None:
        until = min(identity.expires_at, now + ttl)  # never outlives the token
        if until <= now:
            return
        self._entries[identity.token_hash] = (identity, until, exp)
        self._entries.move_to_end(identity.token_hash)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
