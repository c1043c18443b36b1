# -*- test-case-name: tests.test_service -*-
"""
The relay's user directory read from the data directory's C{users.json}
(an L{IUserDirectory}), re-read whenever the file changes.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from securechat.crypto.keyhistory import PreviousKey
from securechat.datadir import DataDir, UserDirectory
from securechat.datafiles import CorruptDataDir
from securechat.server.directory import IUserDirectory, UserEntry
from securechat.users import UserRecord, parse_utc


def _seconds(text: str) -> int:
    return int(parse_utc(text).timestamp())


def user_entry(record: UserRecord) -> UserEntry:
    """
    The relay's entry for C{record}: its previous keys with their times as
    Unix seconds (the relay's clock: C{securechat-admin} writes them on the
    relay's host).
    """
    if not record.history:  # the common case, on the letters' path: nothing to convert
        return UserEntry(record.name, record.public_key, record.revoked is not None)
    history = tuple(PreviousKey(p.public_key, _seconds(p.added), _seconds(p.replaced),
                                _seconds(p.compromised) if p.compromised else 0)
                    for p in record.history)
    return UserEntry(record.name, record.public_key, record.revoked is not None, history)


@implementer(IUserDirectory)
class FileUserDirectory:
    """
    The data directory's C{users.json}, re-read when it changes: every
    lookup first checks the file's stamp (one C{stat}), so a change made a
    moment ago is seen by the next login.  L{lookup_recent} (per letter)
    checks it at most once per reactor turn of C{clock}.
    """

    log = Logger()

    def __init__(self, data: DataDir, clock: IReactorTime | None = None) -> None:
        self._data = data
        self._clock = clock
        self._checked_this_turn = False
        self._stamp: Any = None
        self._bad_stamp: Any = None
        self._unrevalidated = False
        self._users = UserDirectory()
        #: L{lookup_recent}'s answers (immutable), kept until the file is
        #: read again: a letter costs no new L{UserEntry}.
        self._entries: dict[str, UserEntry] = {}
        self._read(self._data.stamp(self._data.users_path))
        self._unrevalidated = False

    def _read(self, stamp: Any) -> None:
        self._users = self._data.load_users()
        self._entries = {}
        self._stamp = stamp
        self._unrevalidated = True

    def reload(self) -> bool:
        """
        Re-read the file if it changed; return whether it changed since the
        last call (also if a lookup re-read it meanwhile), so the caller
        re-checks online users once per change.

        @raise CorruptDataDir: if the changed file cannot be used (the
            previous directory is kept).
        """
        stamp = self._data.stamp(self._data.users_path)
        if stamp != self._stamp:
            self._read(stamp)
        changed, self._unrevalidated = self._unrevalidated, False
        return changed

    def _fresh(self) -> None:
        """
        Re-read the file if it changed since it was last read; a broken
        version is logged once and the previous directory kept.
        """
        stamp = self._data.stamp(self._data.users_path)
        if stamp == self._stamp or stamp == self._bad_stamp:
            return
        try:
            self._read(stamp)
        except CorruptDataDir as e:
            self._bad_stamp = stamp
            self.log.error("keeping the previous user directory: {error}", error=str(e))

    def lookup(self, name: str) -> UserEntry | None:
        self._fresh()
        record = self._users.lookup(name)
        return None if record is None else user_entry(record)

    def lookup_recent(self, name: str) -> UserEntry | None:
        if self._clock is None:
            return self.lookup(name)
        if not self._checked_this_turn:
            self._fresh()
            self._checked_this_turn = True
            self._clock.callLater(0, self._turn_over)
        entry = self._entries.get(name)
        if entry is None:
            record = self._users.lookup(name)
            if record is None:
                return None
            entry = self._entries[name] = user_entry(record)
        return entry

    def _turn_over(self) -> None:
        self._checked_this_turn = False

    def entries(self) -> list[UserEntry]:
        self._fresh()
        return [user_entry(r) for r in self._users.users.values()]

    def __len__(self) -> int:
        return len(self._users.users)
