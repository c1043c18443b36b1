# -*- test-case-name: tests.test_client_core -*-
"""
Two end-to-end rules of docs/protocol.rst 12.3 that L{securechat.client.core}
applies to one chat: the order the peer's messages must come in, and what
the side that stopped a chat is told.  Pure functions of a chat's state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from securechat.wire.e2e import End, Ready, Text
from securechat.wire.messages import Message

if TYPE_CHECKING:
    from securechat.client.endtoend import PeerChat


def out_of_order(chat: PeerChat, message: Message) -> str | None:
    """
    Why C{message} from the peer breaks the order of 12.3, if it does:
    READY comes once, first, and only from the responder; nothing comes
    after END.
    """
    name = {Text.TYPE: "TEXT", End.TYPE: "END", Ready.TYPE: "READY"}.get(
        message.TYPE, f"0x{message.TYPE:02x}")
    if chat.peer_end is not None:
        return f"{name} after {chat.peer}'s END"
    if isinstance(message, Ready):
        if not chat.connection.is_initiator:
            return "READY from the initiator"
        if chat.secured:
            return "a second READY"
    elif chat.connection.is_initiator and not chat.secured:
        return f"{name} before READY"
    return None


def stopped_outcome(chat: PeerChat) -> str:
    """
    What the side that stopped a chat is told: that it ended the chat
    (never a truncation: what the peer sent after our END was refused to
    it by the relay, not lost), and whether the peer's END arrived too.
    """
    end = (f"{chat.peer}'s end arrived too" if chat.peer_end is not None
           else f"no end from {chat.peer}")
    return f"ended by you ({chat.sent} sent, {chat.received} received; {end})"
