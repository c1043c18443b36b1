# -*- test-case-name: tests.test_relay_messages -*-
"""
The relay's application messages: inner messages of the client-server
context (docs/protocol.rst, section 12).

Each message is a frozen dataclass whose C{FIELDS} say how each field is
encoded; one generic encoder and parser serve them all, so a layout is
declared exactly once.

Field kinds:

  - C{name}: C{text8}, a user name (section 2), checked when parsed;
  - C{names}: C{u16} count, then that many C{name};
  - C{u8}, C{u64}: integers;
  - C{bytes16}, C{bytes32}: length-prefixed bytes;
  - C{text16}: C{u16}-length UTF-8.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields
from typing import Any, Callable, ClassVar

from securechat.errors import RemoteProtocolError
from securechat.wire.codec import Reader, bytes16, bytes32, text8, text16, u8, u16, u64
from securechat.wire.messages import Registry
from securechat.wire.names import BadUserName, check_user_name

MAX_ONLINE_LIST = 10_000


def _parse_name(r: Reader, what: str) -> str:
    name = r.text8(what)
    try:
        return check_user_name(name)
    except BadUserName as e:
        raise RemoteProtocolError("bad-value", f"{what}: {e}") from None


def _parse_names(r: Reader, what: str) -> tuple[str, ...]:
    count = r.u16(what + " count")
    if count > MAX_ONLINE_LIST:
        raise RemoteProtocolError("bad-value", f"{what}: {count} names")
    return tuple(_parse_name(r, what) for _ in range(count))


_ENCODE: dict[str, Callable[[Any], bytes]] = {
    "name": text8,
    "names": lambda names: u16(len(names)) + b"".join(text8(n) for n in names),
    "u8": u8,
    "u64": u64,
    "bytes16": bytes16,
    "bytes32": bytes32,
    "text16": text16,
}
_PARSE: dict[str, Callable[[Reader, str], Any]] = {
    "name": _parse_name,
    "names": _parse_names,
    "u8": Reader.u8,
    "u64": Reader.u64,
    "bytes16": Reader.bytes16,
    "bytes32": Reader.bytes32,
    "text16": Reader.text16,
}


class _Declared:
    """
    Base for messages declared by C{TYPE} and C{FIELDS}.
    """

    TYPE: ClassVar[int]
    FIELDS: ClassVar[tuple[str, ...]] = ()

    def encode_body(self) -> bytes:
        return b"".join(
            _ENCODE[kind](getattr(self, f.name))
            for f, kind in zip(fields(self), self.FIELDS)  # type: ignore[arg-type]
        )

    @classmethod
    def parse_body(cls, r: Reader) -> Any:
        values = [
            _PARSE[kind](r, f.name)
            for f, kind in zip(fields(cls), cls.FIELDS)  # type: ignore[arg-type]
        ]
        return cls(*values)


class Reason(enum.IntEnum):
    """
    Why a chat request did not become a chat, or why a chat ended, or why a
    command failed (docs/protocol.rst, 12.3).
    """

    REFUSED = 1          # the user said no
    OFFLINE = 2          # the user is not logged in
    UNKNOWN_USER = 3     # no such user
    BUSY = 4             # the user has as many chats as allowed
    TIMEOUT = 5          # nobody answered in time
    CANCELLED = 6        # the requester withdrew the request
    GONE = 7             # the other user logged out or lost the connection
    STOPPED = 8          # the other user ended the chat
    SELF = 9             # a request to oneself
    TOO_MANY_PENDING = 10  # too many open requests, from the requester or to the target
    ALREADY = 11         # a request or chat with that user already exists
    NO_REQUEST = 12      # accept/refuse/cancel of a request that does not exist
    NO_CHAT = 13         # relay/stop for a chat that does not exist
    REVOKED = 14         # the other user was revoked


# -- client to relay --------------------------------------------------------


@dataclass(frozen=True)
class ListOnline(_Declared):
    """Ask who is online.  Answered by L{OnlineList}."""

    TYPE: ClassVar[int] = 0x30


@dataclass(frozen=True)
class ChatRequest(_Declared):
    """Ask C{to} to chat."""

    TYPE: ClassVar[int] = 0x31
    FIELDS: ClassVar[tuple[str, ...]] = ("name",)
    to: str


@dataclass(frozen=True)
class ChatAccept(_Declared):
    """Accept the pending request from C{requester}."""

    TYPE: ClassVar[int] = 0x32
    FIELDS: ClassVar[tuple[str, ...]] = ("name",)
    requester: str


@dataclass(frozen=True)
class ChatRefuse(_Declared):
    """Refuse the pending request from C{requester}."""

    TYPE: ClassVar[int] = 0x33
    FIELDS: ClassVar[tuple[str, ...]] = ("name",)
    requester: str


@dataclass(frozen=True)
class ChatCancel(_Declared):
    """Withdraw our pending request to C{to}."""

    TYPE: ClassVar[int] = 0x34
    FIELDS: ClassVar[tuple[str, ...]] = ("name",)
    to: str


@dataclass(frozen=True)
class ChatStop(_Declared):
    """End the chat with C{peer} (both return to the lobby)."""

    TYPE: ClassVar[int] = 0x35
    FIELDS: ClassVar[tuple[str, ...]] = ("name",)
    peer: str


@dataclass(frozen=True)
class Relay(_Declared):
    """
    Carry C{payload} (end-to-end bytes) to C{peer}, with whom a chat is open.
    """

    TYPE: ClassVar[int] = 0x36
    FIELDS: ClassVar[tuple[str, ...]] = ("name", "bytes32")
    peer: str
    payload: bytes


# -- relay to client --------------------------------------------------------


@dataclass(frozen=True)
class Welcome(_Declared):
    """
    First message after the handshake: the relay accepted C{user}.
    C{max_payload} is the largest L{Relay} payload it will carry.
    """

    TYPE: ClassVar[int] = 0x40
    FIELDS: ClassVar[tuple[str, ...]] = ("name", "u64")
    user: str
    max_payload: int


@dataclass(frozen=True)
class OnlineList(_Declared):
    """
    The users online now, sorted; C{total} counts them all when the list was
    cut to fit one record.
    """

    TYPE: ClassVar[int] = 0x41
    FIELDS: ClassVar[tuple[str, ...]] = ("names", "u64")
    users: tuple[str, ...]
    total: int


@dataclass(frozen=True)
class ChatRequested(_Declared):
    """C{requester} asks us to chat; answer with accept or refuse."""

    TYPE: ClassVar[int] = 0x42
    FIELDS: ClassVar[tuple[str, ...]] = ("name",)
    requester: str


@dataclass(frozen=True)
class ChatStarted(_Declared):
    """
    A chat with C{peer} is open.  C{peer_key} is its registered public key
    (DER SubjectPublicKeyInfo).  C{initiator} is 1 when we start the
    end-to-end handshake (we asked), 0 when we answer it.
    """

    TYPE: ClassVar[int] = 0x43
    FIELDS: ClassVar[tuple[str, ...]] = ("name", "bytes16", "u8")
    peer: str
    peer_key: bytes
    initiator: int


@dataclass(frozen=True)
class ChatDeclined(_Declared):
    """Our request to C{peer} did not become a chat, for C{reason}."""

    TYPE: ClassVar[int] = 0x44
    FIELDS: ClassVar[tuple[str, ...]] = ("name", "u8")
    peer: str
    reason: int


@dataclass(frozen=True)
class RequestWithdrawn(_Declared):
    """The request C{requester} made to us is gone, for C{reason}."""

    TYPE: ClassVar[int] = 0x45
    FIELDS: ClassVar[tuple[str, ...]] = ("name", "u8")
    requester: str
    reason: int


@dataclass(frozen=True)
class ChatEnded(_Declared):
    """The chat with C{peer} ended, for C{reason}."""

    TYPE: ClassVar[int] = 0x46
    FIELDS: ClassVar[tuple[str, ...]] = ("name", "u8")
    peer: str
    reason: int


@dataclass(frozen=True)
class Relayed(_Declared):
    """End-to-end bytes from C{peer}."""

    TYPE: ClassVar[int] = 0x47
    FIELDS: ClassVar[tuple[str, ...]] = ("name", "bytes32")
    peer: str
    payload: bytes


@dataclass(frozen=True)
class CommandFailed(_Declared):
    """
    A command about C{subject} (a user name, or empty) failed for C{reason};
    C{command} is the failed message's type.
    """

    TYPE: ClassVar[int] = 0x48
    FIELDS: ClassVar[tuple[str, ...]] = ("u8", "text16", "u8")
    command: int
    subject: str
    reason: int


CLIENT_MESSAGES = (ListOnline, ChatRequest, ChatAccept, ChatRefuse, ChatCancel, ChatStop, Relay)
SERVER_MESSAGES = (
    Welcome, OnlineList, ChatRequested, ChatStarted, ChatDeclined, RequestWithdrawn,
    ChatEnded, Relayed, CommandFailed,
)

#: What the relay parses (from clients) and what clients parse (from the relay).
FROM_CLIENT = Registry(CLIENT_MESSAGES)
FROM_SERVER = Registry(SERVER_MESSAGES)
