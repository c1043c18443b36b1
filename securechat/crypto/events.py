# -*- test-case-name: tests.test_handshake -*-
"""
The events a L{securechat.crypto.handshake.Connection} reports (bytes go
in, these come out) and the states it is in (L{State}; which frames each
accepts is the one transition table, in L{securechat.crypto.handshake}).
Plain values; no IO, no Twisted.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Union

from securechat.crypto.suites import Suite
from securechat.errors import ProtocolError
from securechat.wire.messages import Identity, Message


class State(enum.Enum):
    """
    Where a connection is, and what each state accepts (the one transition
    table is C{_ACCEPTS} in L{securechat.crypto.handshake}; its docstring
    says what anything else in a state is):

        START        initiator, before initiate()       nothing
        WAIT_HELLO   responder                          HELLO, ALERT
        WAIT_REPLY   initiator                          HELLO_REPLY, ALERT
        WAIT_AUTH    both                               RECORD(AUTH)
        WAIT_VERIFY  both, peer identity being checked  (input held back)
        WAIT_SIGN    both, our key on a token signing   (input held back)
        ESTABLISHED  both                               RECORD(any registered message)
        CLOSED       peer or we closed cleanly          nothing
        FAILED       terminal error                     nothing

    WAIT_SIGN is entered only when our key is held elsewhere
    (L{securechat.crypto.signer.ExternalKey}): where we would sign our AUTH,
    we emit L{SignatureNeeded} and wait for
    L{securechat.crypto.handshake.Connection.signature_ready} (then go on as
    if we had signed at once) or
    L{securechat.crypto.handshake.Connection.signing_failed}.  A key in
    memory signs synchronously and never enters it.
    """

    START = "START"
    WAIT_HELLO = "WAIT_HELLO"
    WAIT_REPLY = "WAIT_REPLY"
    WAIT_AUTH = "WAIT_AUTH"
    WAIT_VERIFY = "WAIT_VERIFY"
    WAIT_SIGN = "WAIT_SIGN"
    ESTABLISHED = "ESTABLISHED"
    CLOSED = "CLOSED"
    FAILED = "FAILED"


@dataclass(frozen=True)
class PeerIdentityReceived:
    """
    The peer claimed C{identity}, and its Finished MAC is good.  Decide
    whether to trust it, then call L{Connection.accept_peer} with its public
    key or L{Connection.reject_peer}.  Input is held back meanwhile.
    """

    identity: Identity


@dataclass(frozen=True)
class SignatureNeeded:
    """
    Our key is held elsewhere (L{securechat.crypto.signer.ExternalKey}):
    sign C{content} with it, exactly these bytes, under C{scheme}, then call
    L{Connection.signature_ready} with the signature, or
    L{Connection.signing_failed}.  Input is held back meanwhile.
    """

    scheme: int
    content: bytes


@dataclass(frozen=True)
class HandshakeComplete:
    """
    Both sides are authenticated; application messages may flow.
    """

    peer: Identity
    suite: Suite


@dataclass(frozen=True)
class MessageReceived:
    """
    An application message arrived, authenticated and in order.
    """

    message: Message


class RawMessages:
    """
    Consecutive application messages of one of the types in
    L{Config.raw_types}, authenticated and in order, undecoded: C{items}
    holds C{(type, body)} pairs, each body a C{memoryview} into the
    record's plaintext (no copy).  Messages of other types in the same
    record (another raw type included) come before or after as their own
    events, in record order.
    """

    __slots__ = ("items",)

    def __init__(self, items: list[tuple[int, memoryview]]) -> None:
        self.items = items

    def __repr__(self) -> str:
        return f"RawMessages({[(t, bytes(b)) for t, b in self.items]!r})"


@dataclass(frozen=True)
class ConnectionClosed:
    """
    The peer closed the connection cleanly (CLOSE_NOTIFY).
    """


@dataclass(frozen=True)
class ConnectionFailed:
    """
    The connection failed; C{error} says why.  Always the last event; the
    alert for the peer is already in L{Connection.data_to_send}.
    """

    error: ProtocolError


Event = Union[PeerIdentityReceived, SignatureNeeded, HandshakeComplete, MessageReceived,
              RawMessages, ConnectionClosed, ConnectionFailed]


__all__ = [
    "ConnectionClosed", "ConnectionFailed", "Event", "HandshakeComplete", "MessageReceived",
    "PeerIdentityReceived", "RawMessages", "SignatureNeeded", "State",
]
