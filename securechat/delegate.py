# -*- test-case-name: tests.test_protocol -*-
"""
What a L{securechat.protocol.SecureChatProtocol} asks of the application
driving it: the delegate interfaces (L{ISessionDelegate}, and
L{IRawMessageDelegate} for connections that hand some message types over
undecoded), and L{PeerRejected}, with which a delegate refuses an identity.
"""

from __future__ import annotations

from typing import Any

from zope.interface import Attribute, Interface

from securechat.errors import ProtocolError
from securechat.wire.messages import Identity, Message


class PeerRejected(Exception):
    """
    Raised (or failed with) by L{ISessionDelegate.verify_peer} to refuse an
    identity; C{code} is one of the handshake error codes (C{unknown-user},
    C{revoked-user}, C{bad-certificate}, C{peer-rejected}).
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class ISessionDelegate(Interface):
    """
    What a L{SecureChatProtocol} tells the application, and asks it.
    """

    protocol = Attribute("The L{SecureChatProtocol}, set before any call.")

    def verify_peer(identity: Identity) -> Any:
        """
        Return the public key C{identity} must prove, or a L{Deferred}
        firing with it; raise or fail with L{PeerRejected} to refuse.
        """

    def established(peer: Identity) -> None:
        """
        The handshake completed; C{peer} is authenticated.
        """

    def message_received(message: Message) -> None:
        """
        An authenticated application message arrived.  Raise
        L{ProtocolError} if it breaks the protocol: the connection fails
        with it.
        """



class IRawMessageDelegate(ISessionDelegate):
    """
    A delegate whose connection hands some message types over undecoded
    (L{Config.raw_types}).
    """

    def raw_messages_received(items: list[tuple[int, memoryview]]) -> None:
        """
        Authenticated application messages of the raw types, in order, as
        C{(type, body)} pairs.  Raise L{ProtocolError} for a malformed one:
        the connection fails with it.
        """

    def connection_ended(reason: ProtocolError | None) -> None:
        """
        The session is over: C{None} after a clean close by either side,
        else the error (ours or the peer's alert).  Called exactly once, as
        soon as the session ends (the transport may take a little longer to
        close).
        """


__all__ = ["IRawMessageDelegate", "ISessionDelegate", "PeerRejected"]
