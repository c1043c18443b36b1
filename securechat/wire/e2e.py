# -*- test-case-name: tests.test_client_core -*-
"""
The end-to-end layer's messages: inner messages of the end-to-end context,
exchanged by two clients through the relay (docs/protocol.rst, section 12).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from securechat.errors import RemoteProtocolError
from securechat.wire.messages import Registry
from securechat.wire.declared import Declared

#: The longest chat line, in UTF-8 bytes.
MAX_TEXT = 16 * 1024


@dataclass(frozen=True, slots=True)
class Text(Declared):
    """
    One chat line.  C{sent_at} is the sender's clock in milliseconds since
    the Unix epoch (for display; never trusted for ordering).
    """

    TYPE: ClassVar[int] = 0x50
    FIELDS: ClassVar[tuple[str, ...]] = ("u64", "text16")
    sent_at: int
    text: str

    def check_parsed(self) -> None:
        # The receiver enforces the limit itself: text16 alone allows 65535
        # bytes, and a peer's client is not trusted to have checked.
        size = len(self.text.encode("utf-8"))
        if size > MAX_TEXT:
            raise RemoteProtocolError(
                "limit-exceeded", f"TEXT of {size} bytes, the most is {MAX_TEXT}")


@dataclass(frozen=True, slots=True)
class End(Declared):
    """
    The authenticated end of a chat: C{sent} is how many L{Text} messages
    the sender sent.  A chat that ends without it, or with a count other
    than what arrived, was cut short.
    """

    TYPE: ClassVar[int] = 0x51
    FIELDS: ClassVar[tuple[str, ...]] = ("u64",)
    sent: int


@dataclass(frozen=True, slots=True)
class Ready(Declared):
    """
    Sent by the responder as its first record, once it has verified the
    initiator: the initiator's own handshake completes before the responder
    has checked it, so the initiator treats the chat as secured (and sends
    its first lines) only when READY arrives.
    """

    TYPE: ClassVar[int] = 0x52


E2E_MESSAGES = Registry([Text, End, Ready])
