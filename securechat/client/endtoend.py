# -*- test-case-name: tests.test_client_core -*-
"""
The end-to-end layer of the client's chats: L{PeerChat}, one chat's
end-to-end L{Connection} and counters, and L{EndToEndChats}, the part of
L{securechat.client.core.ChatClient} that handles what that connection
reports (the peer's identity, READY, TEXT, END, failures) and sends its
bytes to the relay inside RELAY messages.  The rules it keeps are listed in
L{securechat.client.core} (docs/protocol.rst, section 12).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from securechat.client.rules import out_of_order
from securechat.client.view import ChatView
from securechat.crypto import keys
from securechat.crypto.events import (
    ConnectionClosed,
    ConnectionFailed,
    Event,
    HandshakeComplete,
    MessageReceived,
    PeerIdentityReceived,
    SignatureNeeded,
)
from securechat.crypto.handshake import Connection, State
from securechat.errors import PeerAlert, ProtocolError, RemoteProtocolError, UnauthenticatedAlert
from securechat.wire.e2e import End, Ready, Text
from securechat.wire.messages import Message, UserIdentity
from securechat.wire.relay import ChatStop, Relay

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from twisted.python.failure import Failure

#: The largest end-to-end frame accepted before the peer is authenticated
#: (docs/protocol.rst 12.1): the default pre-handshake maximum of section 3,
#: fixed here because end-to-end handshake frames never carry a CRL.
PRE_AUTH_MAX_FRAME = 16 * 1024


class PeerChat:
    """
    One end-to-end chat with one peer.
    """

    def __init__(self, peer: str, peer_key: keys.PublicKey, connection: Connection) -> None:
        self.peer = peer
        self.peer_key = peer_key
        self.connection = connection
        self.sent = 0
        self.received = 0
        self.peer_end: int | None = None
        self.waiting: list[Text] = []
        self.failed = False
        self.stopping = False
        #: Both sides verified each other: for the responder, its handshake
        #: completed; for the initiator, the responder's READY arrived.
        self.secured = False


class EndToEndChats:
    """
    The end-to-end side of a client's chats.  A base of
    L{securechat.client.core.ChatClient}, which provides C{view} and
    C{_send} (posting a message to the relay).
    """

    view: ChatView
    _send: Callable[[Message], bool]
    #: Our key's signature of some bytes, later (a key on a token signs in
    #: a thread: L{securechat.protocol.SecureChatProtocol.sign_later}).
    _sign_later: Callable[[bytes], "Deferred[bytes]"]

    def _handle_e2e(self, chat: PeerChat, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, PeerIdentityReceived):
                identity = event.identity
                if not isinstance(identity, UserIdentity) or identity.name != chat.peer:
                    self._handle_e2e(chat, chat.connection.reject_peer(
                        "peer-rejected", f"end-to-end peer claimed to be {identity!r}"))
                    return
                self._handle_e2e(chat, chat.connection.accept_peer(chat.peer_key))
                return
            if isinstance(event, SignatureNeeded):
                self._sign_e2e(chat, event.content)
                continue
            if isinstance(event, HandshakeComplete):
                if not chat.connection.is_initiator:
                    chat.connection.send(Ready())
                    self._secured(chat)
            elif isinstance(event, MessageReceived):
                message = event.message
                wrong = out_of_order(chat, message)
                if wrong is not None:
                    self._handle_e2e(chat, chat.connection.fail(
                        RemoteProtocolError("unexpected-message", wrong)))
                    return
                if isinstance(message, Ready):
                    self._secured(chat)
                elif isinstance(message, Text):
                    chat.received += 1
                    self.view.message(chat.peer, message.sent_at / 1000, message.text)
                elif isinstance(message, End):
                    chat.peer_end = message.sent
            elif isinstance(event, ConnectionFailed):
                self._e2e_failed(chat, event.error)
            elif isinstance(event, ConnectionClosed):
                pass
        self._flush_e2e(chat)

    def _sign_e2e(self, chat: PeerChat, content: bytes) -> None:
        # Our key is on a token: the end-to-end handshake waits (WAIT_SIGN)
        # for its signature, made off the reactor thread.
        def signed(signature: bytes) -> None:
            if chat.connection.state is State.WAIT_SIGN:
                self._handle_e2e(chat, chat.connection.signature_ready(signature))

        def failed(failure: Failure) -> None:
            if chat.connection.state is State.WAIT_SIGN:
                detail = str(failure.value) or "the token failed to sign"
                self._handle_e2e(chat, chat.connection.signing_failed(detail))

        self._sign_later(content).addCallbacks(signed, failed)

    def _secured(self, chat: PeerChat) -> None:
        chat.secured = True
        self.view.chat_secured(chat.peer)
        waiting, chat.waiting = chat.waiting, []
        for line in waiting:
            self._send_e2e(chat, line)

    def _e2e_failed(self, chat: PeerChat, error: ProtocolError) -> None:
        chat.failed = True
        if isinstance(error, UnauthenticatedAlert):
            # Anyone on the path (the relay included) could have written it:
            # never reported as the peer rejecting anything (protocol 8.3).
            detail = (f"the end-to-end session with {chat.peer} was interrupted: an "
                      "unauthenticated alert arrived (not believed; the relay or the "
                      "network may have sent it)")
        elif isinstance(error, PeerAlert):
            detail = f"{chat.peer}'s client rejected the end-to-end session ({error.detail})"
        else:
            detail = f"end-to-end check failed: {error.detail} [{error.code}]"
        self.view.security_error(chat.peer, detail)
        self._flush_e2e(chat)  # the alert, so the peer knows
        self._send(ChatStop(chat.peer))

    def _send_e2e(self, chat: PeerChat, line: Text) -> None:
        chat.connection.send(line)
        chat.sent += 1
        self._flush_e2e(chat)

    def _flush_e2e(self, chat: PeerChat) -> None:
        data = chat.connection.data_to_send()
        if data:
            self._send(Relay(chat.peer, data))
