# -*- test-case-name: tests.test_key_history -*-
"""
The keys a user had before its registered key was replaced
(C{securechat-admin rekey}), as the relay serves them (docs/protocol.rst,
14.6 and 14.9): GET_KEY_HISTORY asks for a user's, KEY_HISTORY answers
with one L{PreviousKeyEntry} per replaced key, newest first.

A client uses them only to verify a letter or receipt signed before the
key was replaced, and only a key it had pinned for that user itself
(L{securechat.crypto.keyhistory}).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from securechat.errors import RemoteProtocolError
from securechat.wire.declared import Declared, ListOf


@dataclass(frozen=True, slots=True)
class GetKeyHistory(Declared):
    """Ask for the keys C{user} had before.  Answered by L{KeyHistory}."""

    TYPE: ClassVar[int] = 0x5A
    FIELDS: ClassVar[tuple[str, ...]] = ("name",)
    user: str


@dataclass(frozen=True, slots=True)
class PreviousKeyEntry(Declared):
    """
    One replaced key: its DER SubjectPublicKeyInfo, when it was registered,
    when it was replaced (the relay's clock), and from when it is held to
    be compromised (0: it is not).
    """

    FIELDS: ClassVar[tuple[str, ...]] = ("bytes16", "u64", "u64", "u64")
    user_key: bytes
    added_at: int
    replaced_at: int
    compromised_at: int

    def check_parsed(self) -> None:
        if not self.user_key:
            raise RemoteProtocolError("bad-value", "a previous key that is empty")
        if self.added_at > self.replaced_at:
            raise RemoteProtocolError("bad-value", "a previous key replaced before it was added")
        if self.compromised_at and not self.added_at <= self.compromised_at <= self.replaced_at:
            raise RemoteProtocolError("bad-value", "a previous key compromised outside its lifetime")


@dataclass(frozen=True, slots=True)
class KeyHistory(Declared):
    """C{user}'s replaced keys, newest first (perhaps none)."""

    TYPE: ClassVar[int] = 0x6F
    FIELDS: ClassVar[tuple[str, ListOf]] = ("name", ListOf(PreviousKeyEntry))
    user: str
    keys: tuple[PreviousKeyEntry, ...]
