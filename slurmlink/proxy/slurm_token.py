"""The SlurmUser token the proxy sends as X-SLURM-USER-TOKEN: minted (HS256, short-lived) or read from a file."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import jwt

from slurmlink.core.errors import SlurmlinkError


class SlurmTokenError(SlurmlinkError):
    """No SlurmUser token can be had (key or token file missing/unreadable/empty)."""


class SlurmTokenSource:
    def __init__(self, *, slurm_user: str, jwt_key_file: str | None = None, token_file: str | None = None,
                 lifespan: int = 300, clock: Callable[[], float] = time.time) -> None:
        if (jwt_key_file is None) == (token_file is None):
            raise ValueError("give exactly one of jwt_key_file and token_file")
        self.slurm_user = slurm_user
        self._key_file = Path(jwt_key_file) if jwt_key_file else None
        self._token_file = Path(token_file) if token_file else None
        self._lifespan = lifespan
        self._clock = clock
        self._key: bytes | None = None
        self._token = ""
        self._expires = 0.0
        self._file_stamp: tuple[int, int, int] | None = None

    def token(self) -> str:
        return self._minted() if self._key_file is not None else self._from_file()

    def token_as(self, user: str, lifespan: int = 60) -> str:
        """A short token of `user` for SLURM's commands (SLURM_JWT); needs the key (never the SlurmUser's)."""
        if self._key_file is None:
            raise SlurmTokenError("tokens of users need jwt_key_file")
        try:
            key = self._key_file.read_bytes()
        except OSError as exc:
            raise SlurmTokenError(f"cannot read the JWT key {self._key_file}: {exc.strerror}") from exc
        issued = int(self._clock())
        return jwt.encode({"sun": user, "iat": issued, "exp": issued + lifespan}, key, algorithm="HS256")

    def _minted(self) -> str:
        now = self._clock()
        if self._token and now < self._expires - self._lifespan / 3:  # renew with a third of its life left
            return self._token
        assert self._key_file is not None
        try:
            key = self._key_file.read_bytes()  # re-read: the site may rotate the key
        except OSError as exc:
            raise SlurmTokenError(f"cannot read the JWT key {self._key_file}: {exc.strerror}") from exc
        if not key:
            raise SlurmTokenError(f"the JWT key {self._key_file} is empty")
        issued = int(now)
        self._token = jwt.encode({"sun": self.slurm_user, "iat": issued, "exp": issued + self._lifespan},
                                 key, algorithm="HS256")
        self._expires = issued + self._lifespan
        return self._token

    def _from_file(self) -> str:
        assert self._token_file is not None
        try:
            st = os.stat(self._token_file)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            if stamp != self._file_stamp or not self._token:
                text = self._token_file.read_text().strip()
                if text.startswith("SLURM_JWT="):  # the output of `scontrol token`
                    text = text[len("SLURM_JWT="):]
                self._token, self._file_stamp = text, stamp
        except OSError as exc:
            raise SlurmTokenError(f"cannot read the token file {self._token_file}: {exc.strerror}") from exc
        if not self._token:
            raise SlurmTokenError(f"the token file {self._token_file} is empty")
        return self._token
