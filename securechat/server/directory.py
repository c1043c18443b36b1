# -*- test-case-name: tests.test_relay -*-
"""
The relay's view of registered users: who exists, with which key, and who
is revoked.

L{IUserDirectory} is the seam; L{MemoryDirectory} serves tests, and
L{securechat.server.userfile} adapts the data directory's C{users.json}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from zope.interface import Interface, implementer

from securechat.crypto import keys
from securechat.crypto.keyhistory import PreviousKey


@dataclass(frozen=True)
class UserEntry:
    """
    One registered user; C{history} holds the keys it had before, oldest
    first (C{securechat-admin rekey}).
    """

    name: str
    public_key: keys.PublicKey
    revoked: bool = False
    history: tuple[PreviousKey, ...] = ()


class IUserDirectory(Interface):
    """
    Registered users, by name.
    """

    def lookup(name: str) -> UserEntry | None:
        """
        The entry for C{name}, or C{None} if no such user is registered.
        """

    def lookup_recent(name: str) -> UserEntry | None:
        """
        Like L{lookup}, but the directory may be as it was earlier in this
        reactor turn (never older than the reload interval): for checks
        made per letter.  Logins use L{lookup}.
        """

    def entries() -> list[UserEntry]:
        """
        Every registered user, revoked ones included (the mailbox's
        LIST_USERS leaves those out).
        """


@implementer(IUserDirectory)
class MemoryDirectory:
    """
    An in-memory directory (for tests, and for anything embedding the relay).
    """

    def __init__(self, entries: Iterable[UserEntry] = ()) -> None:
        self._entries = {e.name: e for e in entries}

    def lookup(self, name: str) -> UserEntry | None:
        return self._entries.get(name)

    def lookup_recent(self, name: str) -> UserEntry | None:
        return self._entries.get(name)

    def entries(self) -> list[UserEntry]:
        return list(self._entries.values())

    def add(self, entry: UserEntry) -> None:
        self._entries[entry.name] = entry

    def revoke(self, name: str) -> None:
        entry = self._entries[name]
        self._entries[name] = UserEntry(entry.name, entry.public_key, True, entry.history)

    def rekey(self, name: str, public_key: keys.PublicKey, added_at: int, replaced_at: int,
              compromised_at: int = 0) -> None:
        """Give C{name} a new key; the old one goes into its history."""
        entry = self._entries[name]
        previous = PreviousKey(entry.public_key, added_at, replaced_at, compromised_at)
        self._entries[name] = UserEntry(name, public_key, False, entry.history + (previous,))
