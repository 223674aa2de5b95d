"""The account safety check every mapping result passes: never root, the SlurmUser, a system or unknown account."""

from __future__ import annotations

import pwd
from collections.abc import Callable
from dataclasses import dataclass, field

from .base import USERNAME_RE, MappingError, show


@dataclass(frozen=True)
class AccountPolicy:
    """What a mapping result must satisfy. The account must exist in NSS (`lookup`, i.e. pwd.getpwnam)."""

    min_uid: int = 1000
    slurm_user: str = "slurm"
    deny_users: frozenset[str] = frozenset({"nobody", "nfsnobody"})
    deny_uids: frozenset[int] = frozenset({65534})  # the overflow uid is "nobody" under any name
    lookup: Callable[[str], pwd.struct_passwd] = field(default=pwd.getpwnam, compare=False)

    def check(self, username: str, subject: str = "?") -> pwd.struct_passwd:
        """The account's passwd entry, or MappingError saying which rule refused it."""
        who = f"mapping for {subject}"
        # The pattern comes first: a hostile string never reaches NSS (which may be LDAP).
        if not isinstance(username, str) or not USERNAME_RE.fullmatch(username):
            raise MappingError(f"{who} gave {show(username)}, which is not a valid user name "
                               f"(lower-case letters, digits, _ and -, at most 32)")
        if username == "root":
            raise MappingError(f"{who} gave root")
        if username in self.deny_users:
            raise MappingError(f"{who} gave {username}, which is on the deny list")
        entry = self._lookup(username)
        if entry is None:
            raise MappingError(f"user {username} does not exist on this system")
        if entry.pw_name != username:
            # e.g. a case-insensitive NSS backend: the job would run as a name the policy never checked.
            raise MappingError(f"{who} gave {username}, but the system resolves it to {show(entry.pw_name)}")
        if entry.pw_uid == 0:
            raise MappingError(f"{who} gave root ({username} has uid 0)")
        if username == self.slurm_user or entry.pw_uid == self._slurm_uid():
            raise MappingError(f"{who} gave the SlurmUser ({username})")
        if entry.pw_uid in self.deny_uids:
            raise MappingError(f"{who} gave {username} (uid {entry.pw_uid}), which is on the deny list")
        if entry.pw_uid < self.min_uid:
            raise MappingError(f"{who} gave {username} (uid {entry.pw_uid}), a system account "
                               f"below the minimum uid {self.min_uid}")
        return entry

    def allows(self, username: str) -> bool:
        try:
            self.check(username)
        except MappingError:
            return False
        return True

    def _lookup(self, username: str) -> pwd.struct_passwd | None:
        try:
            return self.lookup(username)
        except KeyError:
            return None

    def _slurm_uid(self) -> int | None:
        entry = self._lookup(self.slurm_user) if self.slurm_user else None
        return entry.pw_uid if entry is not None else None
