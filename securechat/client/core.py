# -*- test-case-name: tests.test_client_core -*-
"""
The chat client's core: what a user can do, and the end-to-end sessions
that keep the relay from reading or forging anything.

L{ChatClient} is the delegate of the client's L{SecureChatProtocol} (the
same protocol class the relay uses).  It speaks the relay messages, and for
each accepted chat runs a second L{Connection} in the end-to-end context
whose bytes travel inside RELAY messages.  What the user should see goes to
a L{ChatView}; nothing here touches a terminal.

End-to-end rules (docs/protocol.rst, section 12):

  - the peer's key comes from the relay's CHAT_STARTED, and is pinned on
    first use; a different key later is refused (the chat is stopped) until
    the user runs C{trust};
  - the handshake checks that the peer proves exactly the name we chat with;
  - the responder sends READY once it has verified the initiator; lines
    typed before the chat is secured (both verified) wait for it;
  - stopping a chat sends an authenticated END carrying how many lines we
    sent; a chat that ends without the peer's END, or with a count that does
    not match, is reported as truncated.
"""

from __future__ import annotations

import time
from typing import Callable, Protocol

from twisted.logger import Logger
from zope.interface import implementer

from securechat.crypto import keys
from securechat.crypto.handshake import (
    END_TO_END,
    Config,
    Connection,
    ConnectionClosed,
    ConnectionFailed,
    Event,
    HandshakeComplete,
    MessageReceived,
    PeerIdentityReceived,
    Role,
)
from securechat.client.pins import PinStatus, PinStore
from securechat.errors import PeerAlert, ProtocolError, UnauthenticatedAlert
from securechat.protocol import ISessionDelegate, PeerRejected, SecureChatProtocol
from securechat.wire.e2e import E2E_MESSAGES, MAX_TEXT, End, Ready, Text
from securechat.wire.messages import CertificateIdentity, Identity, Message, UserIdentity
from securechat.wire.relay import (
    ChatAccept,
    ChatCancel,
    ChatDeclined,
    ChatEnded,
    ChatRefuse,
    ChatRequest,
    ChatRequested,
    ChatStarted,
    ChatStop,
    CommandFailed,
    ListOnline,
    OnlineList,
    Reason,
    Relay,
    Relayed,
    RequestWithdrawn,
    Welcome,
)

#: Checks the relay's certificate identity; returns its public key or raises
#: L{PeerRejected} with code C{bad-certificate}.
ServerVerifier = Callable[[CertificateIdentity], keys.PublicKey]

#: How many end-to-end bytes one RELAY may carry (updated from WELCOME).
DEFAULT_MAX_PAYLOAD = 64 * 1024 - 128


class ChatView(Protocol):
    """
    What the user sees.  Every method is one thing that happened.
    """

    def logged_in(self, user: str) -> None: ...
    def online(self, users: tuple[str, ...], total: int) -> None: ...
    def chat_requested(self, requester: str) -> None: ...
    def request_sent(self, peer: str) -> None: ...
    def chat_declined(self, peer: str, reason: Reason) -> None: ...
    def request_withdrawn(self, requester: str, reason: Reason) -> None: ...
    def chat_opened(self, peer: str, fingerprint: str, first_use: bool) -> None: ...
    def chat_secured(self, peer: str) -> None: ...
    def key_changed(self, peer: str, pinned: str, offered: str) -> None: ...
    def message(self, peer: str, sent_at: float, text: str) -> None: ...
    def chat_ended(self, peer: str, outcome: str) -> None: ...
    def security_error(self, peer: str, detail: str) -> None: ...
    def command_failed(self, command: str, subject: str, reason: Reason) -> None: ...
    def notice(self, text: str) -> None: ...
    def disconnected(self, reason: str | None) -> None: ...


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


_COMMAND_NAMES = {
    ChatRequest.TYPE: "chat", ChatAccept.TYPE: "accept", ChatRefuse.TYPE: "refuse",
    ChatCancel.TYPE: "cancel", ChatStop.TYPE: "stop", Relay.TYPE: "message",
    ListOnline.TYPE: "online",
}


@implementer(ISessionDelegate)
class ChatClient:
    """
    One user's client: the delegate of its connection to the relay.
    """

    protocol: SecureChatProtocol
    log = Logger()

    def __init__(
        self,
        user: str,
        private_key: keys.PrivateKey,
        view: ChatView,
        verify_server: ServerVerifier,
        pins: PinStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.user = user
        self.private_key = private_key
        self.view = view
        self.verify_server = verify_server
        self.pins = pins
        self.clock = clock
        self.chats: dict[str, PeerChat] = {}
        self.incoming: set[str] = set()
        self.outgoing: set[str] = set()
        self.changed_keys: dict[str, keys.PublicKey] = {}
        self.logged_in = False
        self.max_payload = DEFAULT_MAX_PAYLOAD
        self._handlers = {
            Welcome: self._welcome,
            OnlineList: self._online_list,
            ChatRequested: self._chat_requested,
            ChatStarted: self._chat_started,
            ChatDeclined: self._chat_declined,
            RequestWithdrawn: self._request_withdrawn,
            ChatEnded: self._chat_ended,
            Relayed: self._relayed,
            CommandFailed: self._command_failed,
        }

    # -- ISessionDelegate (the relay connection) -----------------------------

    def verify_peer(self, identity: Identity) -> keys.PublicKey:
        if not isinstance(identity, CertificateIdentity):
            raise PeerRejected("wrong-identity-kind", "the relay did not send a certificate")
        return self.verify_server(identity)

    def established(self, peer: Identity) -> None:
        pass  # logged in only when WELCOME arrives

    def message_received(self, message: Message) -> None:
        handler = self._handlers.get(type(message))
        if handler is not None:
            handler(message)  # type: ignore[operator]

    def connection_ended(self, reason: ProtocolError | None) -> None:
        for peer in list(self.chats):
            self._finish(peer, "disconnected from the relay")
        self.incoming.clear()
        self.outgoing.clear()
        was_logged_in, self.logged_in = self.logged_in, False
        self.view.disconnected(describe_error(reason, was_logged_in))

    # -- what the user can do -------------------------------------------------

    def list_online(self) -> None:
        self._send(ListOnline())

    def request_chat(self, peer: str) -> None:
        self.outgoing.add(peer)
        self._send(ChatRequest(peer))
        self.view.request_sent(peer)

    def accept(self, requester: str) -> None:
        self.incoming.discard(requester)
        self._send(ChatAccept(requester))

    def refuse(self, requester: str) -> None:
        self.incoming.discard(requester)
        self._send(ChatRefuse(requester))

    def cancel(self, peer: str) -> None:
        self.outgoing.discard(peer)
        self._send(ChatCancel(peer))

    def say(self, peer: str, text: str) -> None:
        """
        Send one line to C{peer}, now or as soon as the chat is secured.
        """
        chat = self.chats.get(peer)
        if chat is None:
            self.view.notice(f"no chat with {peer}")
            return
        if len(text.encode("utf-8")) > MAX_TEXT:
            self.view.notice(f"message too long (at most {MAX_TEXT} bytes)")
            return
        line = Text(int(self.clock() * 1000), text)
        if not chat.secured:
            chat.waiting.append(line)
            return
        self._send_e2e(chat, line)

    def stop(self, peer: str) -> None:
        """
        End the chat with C{peer}: an authenticated END, then CHAT_STOP.
        """
        chat = self.chats.get(peer)
        if chat is None:
            self.view.notice(f"no chat with {peer}")
            return
        chat.stopping = True
        if chat.secured:
            chat.connection.send(End(chat.sent))
            self._flush_e2e(chat)
        self._send(ChatStop(peer))

    def trust(self, peer: str) -> None:
        """
        Re-pin C{peer} to the changed key the relay last offered (after the
        users compared fingerprints out of band).
        """
        key = self.changed_keys.pop(peer, None)
        if key is None:
            self.view.notice(f"no changed key to trust for {peer}")
            return
        self.pins.pin(peer, key)
        self.view.notice(f"{peer} is now pinned to {keys.fingerprint(key)}; ask for a chat again")

    def fingerprint(self, peer: str | None) -> str | None:
        """
        Our own fingerprint (C{peer} None), or the one pinned for C{peer}.
        """
        if peer is None or peer == self.user:
            return keys.fingerprint(self.private_key.public_key())
        return self.pins.fingerprint(peer)

    def logout(self) -> None:
        for peer in list(self.chats):
            self.stop(peer)
        self.protocol.close()

    # -- relay messages ---------------------------------------------------------

    def _welcome(self, message: Welcome) -> None:
        self.logged_in = True
        self.max_payload = message.max_payload
        # Records we batch must fit the relay's frame maximum, whatever ours.
        outbound = self.protocol.outbound
        outbound.batch_bytes = min(outbound.batch_bytes, message.max_payload)
        self.view.logged_in(message.user)

    def _online_list(self, message: OnlineList) -> None:
        self.view.online(message.users, message.total)

    def _chat_requested(self, message: ChatRequested) -> None:
        self.incoming.add(message.requester)
        self.view.chat_requested(message.requester)

    def _chat_declined(self, message: ChatDeclined) -> None:
        self.outgoing.discard(message.peer)
        self.view.chat_declined(message.peer, Reason(message.reason))

    def _request_withdrawn(self, message: RequestWithdrawn) -> None:
        self.incoming.discard(message.requester)
        self.view.request_withdrawn(message.requester, Reason(message.reason))

    def _command_failed(self, message: CommandFailed) -> None:
        if message.command == ChatStop.TYPE and message.subject not in self.chats:
            return  # the chat is already over, which is what stop wanted
        name = _COMMAND_NAMES.get(message.command, f"0x{message.command:02x}")
        self.view.command_failed(name, message.subject, Reason(message.reason))

    def _chat_started(self, message: ChatStarted) -> None:
        peer = message.peer
        self.outgoing.discard(peer)
        self.incoming.discard(peer)
        try:
            key = keys.load_public_key_der(message.peer_key)
        except keys.KeyFormatError as e:
            self.view.security_error(peer, f"the relay sent an unusable key for {peer}: {e}")
            self._send(ChatStop(peer))
            return
        status = self.pins.check(peer, key)
        if status is PinStatus.CHANGED:
            self.changed_keys[peer] = key
            self.view.key_changed(peer, self.pins.fingerprint(peer) or "", keys.fingerprint(key))
            self._send(ChatStop(peer))
            return
        if status is PinStatus.NEW:
            self.pins.pin(peer, key)
        role = Role.INITIATOR if message.initiator else Role.RESPONDER
        connection = Connection(Config(
            END_TO_END, role, self.private_key, UserIdentity(self.user), registry=E2E_MESSAGES,
            max_handshake_frame=self.max_payload, max_frame=self.max_payload,
        ))
        chat = self.chats[peer] = PeerChat(peer, key, connection)
        self.view.chat_opened(peer, keys.fingerprint(key), status is PinStatus.NEW)
        if role is Role.INITIATOR:
            connection.initiate()
            self._flush_e2e(chat)

    def _relayed(self, message: Relayed) -> None:
        chat = self.chats.get(message.peer)
        if chat is None or chat.failed:
            return  # a chat we already ended; the relay will drop it too
        self._handle_e2e(chat, chat.connection.receive_data(message.payload))

    def _chat_ended(self, message: ChatEnded) -> None:
        peer = message.peer
        chat = self.chats.get(peer)
        if chat is None:
            if Reason(message.reason) is not Reason.STOPPED:
                self.view.chat_ended(peer, _reason_text(Reason(message.reason)))
            return
        reason = Reason(message.reason)
        if chat.failed:
            outcome = "ended after a security error"
        elif chat.stopping and reason is Reason.STOPPED:
            outcome = "ended"
        elif chat.peer_end is None:
            outcome = (f"TRUNCATED: {_reason_text(reason)}, without {peer}'s authenticated "
                       "end; messages may be missing")
        elif chat.peer_end != chat.received:
            outcome = f"TRUNCATED: {peer} sent {chat.peer_end} messages, {chat.received} arrived"
        else:
            outcome = f"ended by {peer} ({chat.received} messages received)"
        self._finish(peer, outcome)

    # -- the end-to-end layer -----------------------------------------------------

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
            if isinstance(event, HandshakeComplete):
                if not chat.connection.is_initiator:
                    chat.connection.send(Ready())
                    self._secured(chat)
            elif isinstance(event, MessageReceived):
                message = event.message
                if isinstance(message, Ready) and chat.connection.is_initiator and not chat.secured:
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

    def _finish(self, peer: str, outcome: str) -> None:
        self.chats.pop(peer, None)
        self.view.chat_ended(peer, outcome)

    def _send(self, message: Message) -> None:
        if self.protocol.established:
            self.protocol.post(message)
        else:
            self.view.notice("not connected to the relay")


def _reason_text(reason: Reason) -> str:
    return {
        Reason.GONE: "the other side disconnected",
        Reason.STOPPED: "stopped",
        Reason.REVOKED: "the other side's access was revoked",
    }.get(reason, reason.name.lower().replace("_", " "))


def describe_error(error: ProtocolError | None, was_logged_in: bool) -> str | None:
    """
    One line for the user about why the relay connection ended.
    """
    if error is None:
        return None
    if isinstance(error, UnauthenticatedAlert):
        # Not believed (protocol 8.3): never reported as a refused login.
        return ("the connection to the relay was interrupted (an unauthenticated alert "
                "arrived, which is not believed)")
    if isinstance(error, PeerAlert):
        from securechat.errors import Alert
        if error.peer_alert == Alert.HANDSHAKE_FAILED and not was_logged_in:
            return ("the relay refused the login: the user name is unknown or revoked, "
                    "or the key does not match the registered one")
        return error.detail.replace("peer closed the connection", "the relay closed the connection")
    if error.code == "bad-certificate":
        return f"the relay's certificate was rejected: {error.detail}"
    return error.detail
