"""Validated identities by sha256(token), least recently used first out, never kept past the token's expiry."""

from __future__ import annotations

from collections import OrderedDict

from .identity import Identity


class IdentityCache:
    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        # token hash -> (identity, cached until, token expiry when known: opaque tokens via userinfo have none,
        # when it was validated)
        self._entries: OrderedDict[str, tuple[Identity, float, float | None, float]] = OrderedDict()

    def get(self, token_hash: str, now: float, max_age: float | None = None) -> tuple[Identity, float | None] | None:
        """The cached identity and its token's expiry; None when there is none, or when it was validated more
        than `max_age` seconds ago (the entry stays for callers that accept it)."""
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        identity, until, exp, validated_at = entry
        if now >= until:
            del self._entries[token_hash]
            return None
        if max_age is not None and now - validated_at > max_age:
            return None
        self._entries.move_to_end(token_hash)
        return identity, exp

    def put(self, identity: Identity, exp: float | None, ttl: float, now: float) -> None:
        until = min(identity.expires_at, now + ttl)  # never outlives the token
        if until <= now:
            return
        self._entries[identity.token_hash] = (identity, until, exp, now)
        self._entries.move_to_end(identity.token_hash)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
