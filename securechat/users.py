# -*- test-case-name: tests.test_datadir -*-
"""
Registered users as C{users.json} stores them: one L{UserRecord} per name
(its current key, when it was added, whether it is revoked, the
certificates issued to it, and the keys it had before), and the
L{UserDirectory} of them all.

A user's earlier keys stay in its C{history}, newest last, each with when it
was added and replaced, and from when it is held to be compromised (if it
is): C{rekey} never forgets a key, and a key that was replaced is never
accepted again.  The relay serves the history so that letters and receipts
signed before the replacement still verify (docs/protocol.rst 14.9).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from securechat.crypto import keys
from securechat.wire.names import check_user_name


def utc_text(when: datetime.datetime) -> str:
    """
    C{when} as ISO-8601 UTC text to the second (C{2026-06-01T12:00:00Z}).
    """
    return when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(text: str) -> datetime.datetime:
    """
    The inverse of L{utc_text}.

    @raise ValueError: if C{text} is not in that form.
    """
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


@dataclass(frozen=True)
class PreviousKey:
    """
    A key a user had before C{rekey} replaced it.  C{compromised} is the
    time from which it is held to be compromised (letters and receipts the
    relay stored from then on do not verify with it), or C{None} when it
    was retired without being compromised.
    """

    public_key: keys.PublicKey
    added: str
    replaced: str
    revoked: str | None = None
    certificates: tuple[str, ...] = ()
    compromised: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "key": keys.public_key_pem(self.public_key).decode("ascii"),
            "fingerprint": keys.fingerprint(self.public_key),
            "added": self.added,
            "replaced": self.replaced,
            "revoked": self.revoked,
            "certificates": list(self.certificates),
            "compromised": self.compromised,
        }


def _serials(entry: dict[str, Any]) -> tuple[str, ...]:
    certificates = entry.get("certificates", [])
    if not isinstance(certificates, list) or not all(
            isinstance(c, str) and c and all(d in "0123456789abcdef" for d in c) for c in certificates):
        raise TypeError("\"certificates\" is not a list of hexadecimal serials")
    return tuple(certificates)


def _key(entry: dict[str, Any]) -> keys.PublicKey:
    key = entry["key"]
    if not isinstance(key, str):
        raise TypeError("\"key\" is not PEM text")
    return keys.load_public_key(key.encode("ascii"))


def _previous_from_json(entry: Any) -> PreviousKey:
    if not isinstance(entry, dict):
        raise TypeError("a \"history\" entry is not a table")
    added, replaced, revoked = entry["added"], entry["replaced"], entry.get("revoked")
    # An entry written before keys were marked compromised: held to be
    # compromised for its whole life (nothing signed with it verified then).
    compromised = entry.get("compromised", added)
    for when in (added, replaced) + tuple(t for t in (revoked, compromised) if t is not None):
        parse_utc(when)
    if compromised is not None and not parse_utc(added) <= parse_utc(compromised) <= parse_utc(replaced):
        raise ValueError(f"a \"history\" entry compromised at {compromised}, outside its life "
                         f"({added} to {replaced})")
    return PreviousKey(_key(entry), added, replaced, revoked, _serials(entry), compromised)


@dataclass(frozen=True)
class UserRecord:
    """
    One registered user.

    @ivar history: the keys it had before, oldest first, each a table with
        C{key} (PEM), C{fingerprint}, C{added} and C{replaced} (times),
        C{revoked} (when that key was revoked, or C{None}) and
        C{compromised} (from when it is held to be compromised, or C{None};
        an entry without it is held compromised since C{added}), as
        L{PreviousKey}.
    """

    name: str
    public_key: keys.PublicKey
    added: str
    revoked: str | None = None
    certificates: tuple[str, ...] = ()
    history: tuple[PreviousKey, ...] = ()

    @property
    def key_type(self) -> str:
        return keys.describe(self.public_key)

    @property
    def fingerprint(self) -> str:
        return keys.fingerprint(self.public_key)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": keys.public_key_pem(self.public_key).decode("ascii"),
            "type": self.key_type,
            "fingerprint": self.fingerprint,
            "added": self.added,
            "revoked": self.revoked,
            "certificates": list(self.certificates),
            "history": [p.to_json() for p in self.history],
        }

    def had_key(self, key: keys.PublicKey) -> PreviousKey | None:
        """
        The history entry of C{key} if this user had it before.
        """
        der = keys.public_key_der(key)
        for previous in self.history:
            if keys.public_key_der(previous.public_key) == der:
                return previous
        return None


@dataclass
class UserDirectory:
    """
    The registered users, as read from C{users.json}.

    @ivar stamp: the file's L{DataDir.stamp} when it was read (C{None} for a
        directory built in memory), so a reader can cheaply tell whether the
        file changed since.
    """

    users: dict[str, UserRecord] = field(default_factory=dict)
    stamp: tuple[int, int, int] | None = None

    def lookup(self, name: str) -> UserRecord | None:
        return self.users.get(name)

    def names(self) -> list[str]:
        return sorted(self.users)


def user_from_json(name: str, entry: Any) -> UserRecord:
    """
    One entry of C{users.json}, checked field by field.

    @raise ValueError: (or L{KeyError}, L{TypeError}) saying what is wrong.
    """
    check_user_name(name)
    if not isinstance(entry, dict):
        raise TypeError("not a table")
    added, revoked = entry["added"], entry.get("revoked")
    parse_utc(added)
    if revoked is not None:
        parse_utc(revoked)
    history = entry.get("history", [])
    if not isinstance(history, list):
        raise TypeError("\"history\" is not a list")
    return UserRecord(name=name, public_key=_key(entry), added=added, revoked=revoked,
                      certificates=_serials(entry),
                      history=tuple(_previous_from_json(h) for h in history))


