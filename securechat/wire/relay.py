# -*- test-case-name: tests.test_relay_messages -*-
"""
The relay's application messages: inner messages of the client-server
context (docs/protocol.rst, section 11), declared field by field (see
L{securechat.wire.declared}).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from securechat.wire.codec import text8, u64
from securechat.wire.declared import Declared
from securechat.wire.messages import Registry


class Reason(enum.IntEnum):
    """
    Why a chat request did not become a chat, or why a chat ended, or why a
    command failed (docs/protocol.rst, 11.3).
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
    REPLACED = 15        # the other user logged in again elsewhere
    # the mailbox (docs/protocol.rst, 14.6); a letter to an unknown user is
    # UNKNOWN_USER, to a revoked one REVOKED
    MAILBOX_FULL = 16    # the recipient's mailbox is at its quota (letters or bytes)
    TOO_LARGE = 17       # the letter is larger than the relay accepts
    RATE_LIMITED = 18    # the sender posted too many letters too fast
    NO_PREKEYS = 19      # the user has no signed prekey on the relay
    NO_LETTER = 20       # no such letter (never stored, deleted, or expired)
    BAD_PREKEY = 21      # an uploaded signed prekey is not signed by the uploader's key
    BAD_RECEIPT = 22     # a receipt that does not name the letter or its signer
    # groups (docs/protocol.rst, 15.4)
    NOT_MEMBER = 23      # the user is not a member of the group (or the actor of a change)
    NOT_ALLOWED = 24     # the actor's role does not allow the change
    STALE_CHANGE = 25    # the change does not extend the group's current head
    BAD_CHANGE = 26      # a change that does not parse, verify, or fit its action
    UNKNOWN_GROUP = 27   # no such group (never created, or deleted)
    GROUP_EXISTS = 28    # a creation for a group id already taken
    GROUP_FULL = 29      # the group has as many members as the relay allows
    TOO_MANY_GROUPS = 30  # the user is in as many groups as the relay allows
    GROUP_RATE = 31      # the member posted too many group messages too fast
    GROUP_MESSAGE_TOO_LARGE = 32  # a group message body larger than the relay accepts
    # the relay's store (docs/protocol.rst, 14.7)
    TRY_AGAIN = 33       # the relay cannot reach its store now: nothing was done; send it again later


# -- client to relay --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListOnline(Declared):
    """Ask who is online.  Answered by L{OnlineList}."""

    TYPE: ClassVar[int] = 0x30


@dataclass(frozen=True, slots=True)
class ChatRequest(Declared):
    """Ask C{to} to chat."""

    TYPE: ClassVar[int] = 0x31
    FIELDS: ClassVar[tuple[str, ...]] = ("name",)
    to: str


@dataclass(frozen=True, slots=True)
class ChatAccept(Declared):
    """Accept the pending request from C{requester}."""

    TYPE: ClassVar[int] = 0x32
    FIELDS: ClassVar[tuple[str, ...]] = ("name",)
    requester: str


@dataclass(frozen=True, slots=True)
class ChatRefuse(Declared):
    """Refuse the pending request from C{requester}."""

    TYPE: ClassVar[int] = 0x33
    FIELDS: ClassVar[tuple[str, ...]] = ("name",)
    requester: str


@dataclass(frozen=True, slots=True)
class ChatCancel(Declared):
    """Withdraw our pending request to C{to}."""

    TYPE: ClassVar[int] = 0x34
    FIELDS: ClassVar[tuple[str, ...]] = ("name",)
    to: str


@dataclass(frozen=True, slots=True)
class ChatStop(Declared):
    """End the chat with C{peer} (both return to the lobby)."""

    TYPE: ClassVar[int] = 0x35
    FIELDS: ClassVar[tuple[str, ...]] = ("name",)
    peer: str


@dataclass(frozen=True, slots=True)
class Relay(Declared):
    """
    Carry C{payload} (end-to-end bytes) to C{peer}, with whom a chat is open.
    """

    TYPE: ClassVar[int] = 0x36
    FIELDS: ClassVar[tuple[str, ...]] = ("name", "bytes32")
    peer: str
    payload: bytes


# -- relay to client --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Welcome(Declared):
    """
    First message after the handshake: the relay accepted C{user}.
    C{max_payload} is the largest L{Relay} payload it will carry.
    """

    TYPE: ClassVar[int] = 0x40
    FIELDS: ClassVar[tuple[str, ...]] = ("name", "u64")
    user: str
    max_payload: int

    def encode_body(self) -> bytes:
        # Once per login: written out, the same bytes as the declared
        # layout's (tests.test_hscodec.WelcomeTests).
        return text8(self.user) + u64(self.max_payload)


@dataclass(frozen=True, slots=True)
class OnlineList(Declared):
    """
    The users online now, sorted; C{total} counts them all when the list was
    cut to fit one record.
    """

    TYPE: ClassVar[int] = 0x41
    FIELDS: ClassVar[tuple[str, ...]] = ("names", "u64")
    users: tuple[str, ...]
    total: int


@dataclass(frozen=True, slots=True)
class ChatRequested(Declared):
    """C{requester} asks us to chat; answer with accept or refuse."""

    TYPE: ClassVar[int] = 0x42
    FIELDS: ClassVar[tuple[str, ...]] = ("name",)
    requester: str


@dataclass(frozen=True, slots=True)
class ChatStarted(Declared):
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


@dataclass(frozen=True, slots=True)
class ChatDeclined(Declared):
    """Our request to C{peer} did not become a chat, for C{reason}."""

    TYPE: ClassVar[int] = 0x44
    FIELDS: ClassVar[tuple[str, ...]] = ("name", "u8")
    peer: str
    reason: int


@dataclass(frozen=True, slots=True)
class RequestWithdrawn(Declared):
    """The request C{requester} made to us is gone, for C{reason}."""

    TYPE: ClassVar[int] = 0x45
    FIELDS: ClassVar[tuple[str, ...]] = ("name", "u8")
    requester: str
    reason: int


@dataclass(frozen=True, slots=True)
class ChatEnded(Declared):
    """The chat with C{peer} ended, for C{reason}."""

    TYPE: ClassVar[int] = 0x46
    FIELDS: ClassVar[tuple[str, ...]] = ("name", "u8")
    peer: str
    reason: int


@dataclass(frozen=True, slots=True)
class Relayed(Declared):
    """End-to-end bytes from C{peer}."""

    TYPE: ClassVar[int] = 0x47
    FIELDS: ClassVar[tuple[str, ...]] = ("name", "bytes32")
    peer: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class CommandFailed(Declared):
    """
    A command about C{subject} (a user name, or empty) failed for C{reason};
    C{command} is the failed message's type.
    """

    TYPE: ClassVar[int] = 0x48
    FIELDS: ClassVar[tuple[str, ...]] = ("u8", "text16", "u8")
    command: int
    subject: str
    reason: int


@dataclass(frozen=True, slots=True)
class RequestPending(Declared):
    """
    Our request to C{peer} was passed on: C{peer} was asked, and exactly
    one L{ChatStarted} or L{ChatDeclined} about C{peer} follows.
    """

    TYPE: ClassVar[int] = 0x49
    FIELDS: ClassVar[tuple[str, ...]] = ("name",)
    peer: str


CLIENT_MESSAGES = (ListOnline, ChatRequest, ChatAccept, ChatRefuse, ChatCancel, ChatStop, Relay)
SERVER_MESSAGES = (
    Welcome, OnlineList, ChatRequested, ChatStarted, ChatDeclined, RequestWithdrawn,
    ChatEnded, Relayed, CommandFailed, RequestPending,
)

#: What the relay parses (from clients) and what clients parse (from the relay).
FROM_CLIENT = Registry(CLIENT_MESSAGES)
FROM_SERVER = Registry(SERVER_MESSAGES)
