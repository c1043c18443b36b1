# -*- test-case-name: tests.test_mailbox_messages -*-
"""
The mailbox's relay messages: inner messages of the client-server context
(docs/protocol.rst, 14.6), declared field by field like
L{securechat.wire.relay}'s.  Client-to-relay types are 0x50-0x5f,
relay-to-client 0x60-0x6f.  (The end-to-end context's TEXT, END and READY
also use 0x50-0x52; the two contexts have separate registries.)

The relay never parses a sealed letter; it does parse prekey uploads and
receipts, whose layouts (L{securechat.crypto.prekeys},
L{securechat.crypto.receipts}) are public.

L{MAILBOX_FROM_CLIENT} and L{MAILBOX_FROM_SERVER} are the chat registries
of L{securechat.wire.relay} extended with these messages: the relay and
the client switch to them when they handle the mailbox.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar, Sequence

from securechat.crypto.prekeys import (
    ONE_TIME_PREKEY_LENGTH,
    LetterError,
    SignedPrekey,
    parse_one_time_prekeys,
)
from securechat.errors import RemoteProtocolError
from securechat.wire.codec import Reader
from securechat.wire.declared import ID_LENGTH, MAX_LIST, Declared, ListOf, encode_name_id_u64_u64
from securechat.wire.names import read_user_name
from securechat.wire.keyhistory import GetKeyHistory, KeyHistory
from securechat.wire.relay import FROM_CLIENT, FROM_SERVER
from securechat.wire.codec import u16, u64


class Which(enum.IntEnum):
    """Which letters LIST_LETTERS asks for."""

    NEW = 0
    ALL = 1


class LetterState(enum.IntEnum):
    """A stored letter's state, as the relay knows it."""

    NEW = 0        # never fetched
    FETCHED = 1    # fetched (a delivery receipt may have come)
    READ = 2       # a read receipt came


def _check_prekey_fields(signed_prekey: bytes, one_time: bytes, what: str) -> None:
    try:
        if signed_prekey:
            SignedPrekey.parse(signed_prekey)
        parse_one_time_prekeys(one_time)
    except LetterError as e:
        raise RemoteProtocolError("bad-value", f"{what}: {e}") from None


def _check_choice(value: int, allowed: range, what: str) -> None:
    if value not in allowed:
        raise RemoteProtocolError("bad-value", f"{what} is {value}")


# -- client to relay --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UploadPrekeys(Declared):
    """
    Publish prekeys: a new signed prekey (empty: keep the current one) and
    up to 100 one-time prekeys (36 bytes each, back to back).  Answered by
    L{PrekeysStored}, or COMMAND_FAILED(0x50, user, BAD_PREKEY).
    """

    TYPE: ClassVar[int] = 0x50
    FIELDS: ClassVar[tuple[str, ...]] = ("bytes16", "bytes16")
    signed_prekey: bytes
    one_time_prekeys: bytes

    def check_parsed(self) -> None:
        _check_prekey_fields(self.signed_prekey, self.one_time_prekeys, "UPLOAD_PREKEYS")


@dataclass(frozen=True, slots=True)
class FetchBundle(Declared):
    """Ask for C{user}'s prekey bundle.  Answered by L{Bundle}."""

    TYPE: ClassVar[int] = 0x51
    FIELDS: ClassVar[tuple[str, ...]] = ("name",)
    user: str


@dataclass(frozen=True, slots=True)
class GetUserKey(Declared):
    """Ask for C{user}'s registered key.  Answered by L{UserKey}."""

    TYPE: ClassVar[int] = 0x52
    FIELDS: ClassVar[tuple[str, ...]] = ("name",)
    user: str


@dataclass(frozen=True, slots=True)
class PostLetter(Declared):
    """
    Store a sealed letter for C{recipient}.  C{letter_id} is the id in the
    letter's header (the relay does not parse the letter).  Answered by
    L{LetterStored} or L{LetterRefused}.
    """

    TYPE: ClassVar[int] = 0x53
    FIELDS: ClassVar[tuple[str, ...]] = ("name", "id", "bytes32")
    recipient: str
    letter_id: bytes
    letter: bytes

    @classmethod
    def parse_body(cls, r: Reader) -> PostLetter:
        # The generic parser's steps, written out (one per letter posted).
        return cls(read_user_name(r, "recipient"), r.fixed(ID_LENGTH, "letter_id"),
                   r.bytes32("letter"))


@dataclass(frozen=True, slots=True)
class ListLetters(Declared):
    """
    List the letters in our mailbox (C{which}: 0 new, 1 all), newest
    first, skipping C{offset}.  Answered by L{LetterList}.
    """

    TYPE: ClassVar[int] = 0x54
    FIELDS: ClassVar[tuple[str, ...]] = ("u8", "u64")
    which: int
    offset: int

    def check_parsed(self) -> None:
        _check_choice(self.which, range(2), "LIST_LETTERS which")


@dataclass(frozen=True, slots=True)
class FetchLetter(Declared):
    """Fetch one letter.  Answered by L{Letter}."""

    TYPE: ClassVar[int] = 0x55
    FIELDS: ClassVar[tuple[str, ...]] = ("name", "id")
    sender: str
    letter_id: bytes


@dataclass(frozen=True, slots=True)
class DeleteLetter(Declared):
    """Delete one letter from our mailbox.  Answered by L{LetterDeleted}."""

    TYPE: ClassVar[int] = 0x56
    FIELDS: ClassVar[tuple[str, ...]] = ("name", "id")
    sender: str
    letter_id: bytes


@dataclass(frozen=True, slots=True)
class PostReceipt(Declared):
    """
    A signed receipt (14.5) for the letter C{letter_id} from C{sender}.
    Answered by L{ReceiptStored}; passed to the sender as L{ReceiptMessage}.
    """

    TYPE: ClassVar[int] = 0x57
    FIELDS: ClassVar[tuple[str, ...]] = ("name", "id", "bytes16")
    sender: str
    letter_id: bytes
    receipt: bytes


@dataclass(frozen=True, slots=True)
class SentStatus(Declared):
    """
    The status of the letters we sent, newest first, skipping C{offset}.
    Answered by L{StatusList}.
    """

    TYPE: ClassVar[int] = 0x58
    FIELDS: ClassVar[tuple[str, ...]] = ("u64",)
    offset: int


@dataclass(frozen=True, slots=True)
class ListUsers(Declared):
    """
    All registered users (revoked ones left out), by name, skipping
    C{offset}.  Answered by L{UserList}.
    """

    TYPE: ClassVar[int] = 0x59
    FIELDS: ClassVar[tuple[str, ...]] = ("u64",)
    offset: int


# -- relay to client --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PrekeysStored(Declared):
    """
    Our upload is stored: the current signed prekey's id and how many
    one-time prekeys the relay now holds for us.
    """

    TYPE: ClassVar[int] = 0x60
    FIELDS: ClassVar[tuple[str, ...]] = ("u32", "u64")
    signed_prekey_id: int
    one_time_count: int


@dataclass(frozen=True, slots=True)
class PrekeysLow(Declared):
    """
    Our prekey stock is low: C{one_time_count} one-time prekeys left;
    C{has_signed_prekey} 0 when the relay has no signed prekey for us.
    """

    TYPE: ClassVar[int] = 0x61
    FIELDS: ClassVar[tuple[str, ...]] = ("u64", "u8")
    one_time_count: int
    has_signed_prekey: int

    def check_parsed(self) -> None:
        _check_choice(self.has_signed_prekey, range(2), "PREKEYS_LOW has_signed_prekey")


@dataclass(frozen=True, slots=True)
class Bundle(Declared):
    """
    C{user}'s registered key (DER SubjectPublicKeyInfo), its signed prekey
    and one one-time prekey (empty when none is left), now taken from the
    relay's stock.
    """

    TYPE: ClassVar[int] = 0x62
    FIELDS: ClassVar[tuple[str, ...]] = ("name", "bytes16", "bytes16", "bytes16")
    user: str
    user_key: bytes
    signed_prekey: bytes
    one_time_prekey: bytes

    def check_parsed(self) -> None:
        if not self.signed_prekey:
            raise RemoteProtocolError("bad-value", "BUNDLE without a signed prekey")
        if len(self.one_time_prekey) not in (0, ONE_TIME_PREKEY_LENGTH):
            raise RemoteProtocolError("bad-value", f"BUNDLE one-time prekey of {len(self.one_time_prekey)} bytes")
        _check_prekey_fields(self.signed_prekey, self.one_time_prekey, "BUNDLE")


@dataclass(frozen=True, slots=True)
class UserKey(Declared):
    """
    C{user}'s registered key (DER SubjectPublicKeyInfo); C{revoked} 1 when
    the user has been revoked since (its old letters and receipts still
    verify with it).
    """

    TYPE: ClassVar[int] = 0x63
    FIELDS: ClassVar[tuple[str, ...]] = ("name", "bytes16", "u8")
    user: str
    user_key: bytes
    revoked: int

    def check_parsed(self) -> None:
        _check_choice(self.revoked, range(2), "USER_KEY revoked")


@dataclass(frozen=True, slots=True)
class LetterStored(Declared):
    """
    Our letter is committed: stored at C{stored_at} (the relay's clock,
    Unix seconds), kept until C{expires_at}.  A resend of the same id gets
    the first answer again.
    """

    TYPE: ClassVar[int] = 0x64
    FIELDS: ClassVar[tuple[str, ...]] = ("name", "id", "u64", "u64")
    recipient: str
    letter_id: bytes
    stored_at: int
    expires_at: int

    def encode_body(self) -> bytes:
        return encode_name_id_u64_u64(self.recipient, self.letter_id, self.stored_at,
                                      self.expires_at)


@dataclass(frozen=True, slots=True)
class LetterRefused(Declared):
    """Our letter was not stored, for C{reason} (11.3)."""

    TYPE: ClassVar[int] = 0x65
    FIELDS: ClassVar[tuple[str, ...]] = ("name", "id", "u8")
    recipient: str
    letter_id: bytes
    reason: int


@dataclass(frozen=True, slots=True)
class NewLetters(Declared):
    """At login: C{count} letters in our mailbox were never fetched."""

    TYPE: ClassVar[int] = 0x66
    FIELDS: ClassVar[tuple[str, ...]] = ("u64",)
    count: int


@dataclass(frozen=True, slots=True)
class LetterArrived(Declared):
    """A letter for us was stored while we are online."""

    TYPE: ClassVar[int] = 0x67
    FIELDS: ClassVar[tuple[str, ...]] = ("name", "id", "u64", "u64")
    sender: str
    letter_id: bytes
    stored_at: int
    size: int

    def encode_body(self) -> bytes:
        return encode_name_id_u64_u64(self.sender, self.letter_id, self.stored_at, self.size)


@dataclass(frozen=True, slots=True)
class LetterEntry(Declared):
    """One line of L{LetterList}."""

    FIELDS: ClassVar[tuple[str, ...]] = ("name", "id", "u64", "u64", "u8")
    sender: str
    letter_id: bytes
    stored_at: int
    size: int
    state: int

    def check_parsed(self) -> None:
        _check_choice(self.state, range(3), "letter state")


@dataclass(frozen=True, slots=True)
class LetterList(Declared):
    """Letters in our mailbox, newest first; C{total} counts all that match."""

    TYPE: ClassVar[int] = 0x68
    FIELDS: ClassVar[tuple[ListOf, str]] = (ListOf(LetterEntry), "u64")
    letters: tuple[LetterEntry, ...]
    total: int


@dataclass(frozen=True, slots=True)
class Letter(Declared):
    """A fetched letter, as the sender posted it."""

    TYPE: ClassVar[int] = 0x69
    FIELDS: ClassVar[tuple[str, ...]] = ("name", "id", "u64", "u64", "bytes32")
    sender: str
    letter_id: bytes
    stored_at: int
    expires_at: int
    letter: bytes


@dataclass(frozen=True, slots=True)
class LetterDeleted(Declared):
    """The letter is gone from our mailbox."""

    TYPE: ClassVar[int] = 0x6A
    FIELDS: ClassVar[tuple[str, ...]] = ("name", "id")
    sender: str
    letter_id: bytes


@dataclass(frozen=True, slots=True)
class ReceiptStored(Declared):
    """Our receipt of C{kind} for that letter is stored."""

    TYPE: ClassVar[int] = 0x6B
    FIELDS: ClassVar[tuple[str, ...]] = ("name", "id", "u8")
    sender: str
    letter_id: bytes
    kind: int

    def check_parsed(self) -> None:
        _check_choice(self.kind, range(1, 3), "RECEIPT_STORED kind")


@dataclass(frozen=True, slots=True)
class ReceiptMessage(Declared):
    """A receipt from C{recipient} for our letter C{letter_id}, as it came."""

    TYPE: ClassVar[int] = 0x6C
    FIELDS: ClassVar[tuple[str, ...]] = ("name", "id", "bytes16")
    recipient: str
    letter_id: bytes
    receipt: bytes


@dataclass(frozen=True, slots=True)
class StatusEntry(Declared):
    """
    One line of L{StatusList}; C{delivered_at} and C{read_at} are 0 until
    that receipt came, and the receipts are empty until then.
    """

    FIELDS: ClassVar[tuple[str, ...]] = ("name", "id", "u64", "u64", "u64", "u64", "bytes16", "bytes16")
    recipient: str
    letter_id: bytes
    stored_at: int
    expires_at: int
    delivered_at: int
    read_at: int
    delivery_receipt: bytes
    read_receipt: bytes


@dataclass(frozen=True, slots=True)
class StatusList(Declared):
    """The letters we sent, newest first; C{total} counts them all."""

    TYPE: ClassVar[int] = 0x6D
    FIELDS: ClassVar[tuple[ListOf, str]] = (ListOf(StatusEntry), "u64")
    letters: tuple[StatusEntry, ...]
    total: int


@dataclass(frozen=True, slots=True)
class UserEntry(Declared):
    """One line of L{UserList}."""

    FIELDS: ClassVar[tuple[str, ...]] = ("name", "u8")
    user: str
    online: int

    def check_parsed(self) -> None:
        _check_choice(self.online, range(2), "online")


@dataclass(frozen=True, slots=True)
class UserList(Declared):
    """Registered users, not revoked, by name; C{total} counts them all."""

    TYPE: ClassVar[int] = 0x6E
    FIELDS: ClassVar[tuple[ListOf, str]] = (ListOf(UserEntry), "u64")
    users: tuple[UserEntry, ...]
    total: int


MAILBOX_CLIENT_MESSAGES = (
    UploadPrekeys, FetchBundle, GetUserKey, PostLetter, ListLetters, FetchLetter, DeleteLetter,
    PostReceipt, SentStatus, ListUsers, GetKeyHistory,
)
MAILBOX_SERVER_MESSAGES = (
    PrekeysStored, PrekeysLow, Bundle, UserKey, LetterStored, LetterRefused, NewLetters,
    LetterArrived, LetterList, Letter, LetterDeleted, ReceiptStored, ReceiptMessage, StatusList,
    UserList, KeyHistory,
)

#: The chat registries with the mailbox added.
MAILBOX_FROM_CLIENT = FROM_CLIENT.extend(MAILBOX_CLIENT_MESSAGES)
MAILBOX_FROM_SERVER = FROM_SERVER.extend(MAILBOX_SERVER_MESSAGES)


def fit_list(entries: Sequence[Declared], total: int, max_payload: int) -> tuple[Declared, ...]:
    """
    The longest prefix of C{entries} whose list message (C{u16} count, the
    entries, C{u64} total) is at most C{max_payload} bytes
    (docs/protocol.rst, 14.7).  C{entries} are already in the list's order
    and past its offset.
    """
    size = len(u16(0)) + len(u64(total))
    out: list[Declared] = []
    for entry in entries:
        size += len(entry.encode_body())
        if size > max_payload or len(out) == MAX_LIST:
            break
        out.append(entry)
    return tuple(out)
