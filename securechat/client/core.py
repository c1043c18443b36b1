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
  - until the end-to-end handshake has authenticated the peer, its frames
    may be at most 16384 bytes (L{PRE_AUTH_MAX_FRAME}), as on the way to the
    relay; after it, C{max_payload} from WELCOME;
  - the responder sends READY once it has verified the initiator, as its
    first message; lines typed before the chat is secured (both verified)
    wait for it; a READY out of place, or TEXT or END before READY, is
    C{unexpected-message};
  - stopping a chat sends an authenticated END carrying how many lines we
    sent, once; nothing more is sent in that chat, and anything the peer
    sends after its own END is C{unexpected-message} (the chat fails);
  - a chat the peer stops without its END arriving, or with a count that
    does not match, is reported as truncated; one the relay says the peer
    left (GONE, REPLACED, REVOKED) without END is reported as that, with the
    count received and unconfirmed; the side that stopped the chat is told
    it ended it, and whether the peer's END arrived too;
  - a TEXT longer than MAX_TEXT is an end-to-end error (C{limit-exceeded},
    checked when parsed), whatever the sender's client allowed;
  - the relay must keep to its own rules: a WELCOME for another user than
    ours is C{bad-value}, a second WELCOME or a RELAYED from a user we have
    no chat with (before CHAT_STARTED or after CHAT_ENDED) is
    C{unexpected-message}, and each ends the relay connection.

Letters (section 14) are L{securechat.client.letters.Mailbox}'s, when the
client has a letters file: the relay's mailbox messages and the
COMMAND_FAILED for mailbox commands go to it.

Chat requests (section 11.4): the relay answers each at once, and the view
is told only that answer (REQUEST_PENDING, CHAT_DECLINED or COMMAND_FAILED)
and then the request's one outcome.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Callable

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from securechat.crypto import keys
from securechat.crypto.signer import ExternalKey
from securechat.crypto.config import END_TO_END, Config, Role
from securechat.crypto.handshake import Connection
from securechat.client.endtoend import PRE_AUTH_MAX_FRAME, EndToEndChats, PeerChat
from securechat.client.groupsession import GroupSession
from securechat.client.groupstore import GroupKeyStore
from securechat.client.letters import Mailbox
from securechat.client.letterstore import LetterStore
from securechat.client.pins import PinStatus, PinStore
from securechat.client.reasons import DEPARTURES, describe_error, reason_of, reason_text
from securechat.client.rules import stopped_outcome
from securechat.client.view import ChatView
from securechat.errors import ProtocolError, RemoteProtocolError
from securechat.delegate import ISessionDelegate, PeerRejected
from securechat.protocol import SecureChatProtocol
from securechat.wire.e2e import E2E_MESSAGES, MAX_TEXT, End, Text
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
    RequestPending,
    RequestWithdrawn,
    Welcome,
)

#: Checks the relay's certificate identity; returns its public key or raises
#: L{PeerRejected} with code C{bad-certificate}.
ServerVerifier = Callable[[CertificateIdentity], keys.PublicKey]

#: How many end-to-end bytes one RELAY may carry (updated from WELCOME).
DEFAULT_MAX_PAYLOAD = 64 * 1024 - 128

_COMMAND_NAMES = {
    ChatRequest.TYPE: "chat", ChatAccept.TYPE: "accept", ChatRefuse.TYPE: "refuse",
    ChatCancel.TYPE: "cancel", ChatStop.TYPE: "stop", Relay.TYPE: "message",
    ListOnline.TYPE: "online",
}


@implementer(ISessionDelegate)
class ChatClient(EndToEndChats):
    """
    One user's client: the delegate of its connection to the relay (the
    end-to-end layer of its chats is L{EndToEndChats}').
    """

    protocol: SecureChatProtocol
    log = Logger()

    def __init__(
        self,
        user: str,
        private_key: keys.PrivateKey | ExternalKey,
        view: ChatView,
        verify_server: ServerVerifier,
        pins: PinStore,
        clock: Callable[[], float] = time.time,
        letters: LetterStore | None = None,
        groups: GroupKeyStore | None = None,
    ) -> None:
        self.user = user
        self.private_key = private_key
        self.view = view
        self.verify_server = verify_server
        self.pins = pins
        self.clock = clock
        self.chats: dict[str, PeerChat] = {}
        self.incoming: set[str] = set()
        #: Requests sent, not yet answered by the relay.
        self.asking: set[str] = set()
        #: Requests the relay passed on (REQUEST_PENDING), not yet ended.
        self.outgoing: set[str] = set()
        #: Peers whose CHAT_STARTED we answered with CHAT_STOP without
        #: opening a chat (changed or unusable key): their RELAYED and
        #: CHAT_ENDED may still arrive, and are dropped quietly.
        self.refused: set[str] = set()
        self.changed_keys: dict[str, keys.PublicKey] = {}
        self.logged_in = False
        self.max_payload = DEFAULT_MAX_PAYLOAD
        #: One entry per LIST_ONLINE sent, in order: None for the user's,
        #: a callback for L{when_answered}.
        self._online_asked: deque[Callable[[], None] | None] = deque()
        #: Letters (securechat.client.letters), when the client has a store
        #: (a key on a token signs letters, receipts and prekeys too).
        self.mailbox = Mailbox(self, letters) if letters is not None else None
        #: Groups (securechat.client.groupsession), when the client has a
        #: letters file (group keys travel in letters) and a group file.
        self.groups = (GroupSession(self, self.mailbox, groups)
                       if self.mailbox is not None and groups is not None else None)
        self._handlers = {
            Welcome: self._welcome,
            OnlineList: self._online_list,
            ChatRequested: self._chat_requested,
            ChatStarted: self._chat_started,
            ChatDeclined: self._chat_declined,
            RequestWithdrawn: self._request_withdrawn,
            RequestPending: self._request_pending,
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
        elif self.groups is not None and self.groups.handle(message):
            pass
        elif self.mailbox is not None:
            self.mailbox.handle(message)

    def connection_ended(self, reason: ProtocolError | None) -> None:
        for peer, chat in list(self.chats.items()):
            if chat.stopping and not chat.failed:
                self._finish(peer, stopped_outcome(chat))
            else:
                self._finish(peer, "disconnected from the relay")
        self.incoming.clear()
        self.asking.clear()
        self.outgoing.clear()
        self.refused.clear()
        self._online_asked.clear()
        if self.mailbox is not None:
            self.mailbox.connection_ended()
        if self.groups is not None:
            self.groups.connection_ended()
        was_logged_in, self.logged_in = self.logged_in, False
        self.view.disconnected(describe_error(reason, was_logged_in))

    def _sign_later(self, content: bytes) -> Deferred[bytes]:
        return self.protocol.sign_later(content)

    # -- what the user can do -------------------------------------------------

    def list_online(self) -> None:
        if self._send(ListOnline()):
            self._online_asked.append(None)

    def when_answered(self, callback: Callable[[], None]) -> None:
        """
        Call C{callback} once the relay has answered every command sent so
        far (so that a script's last answers are shown before it exits).
        The relay answers in order, so the answer to a LIST_ONLINE sent now
        comes after them; it is not shown.
        """
        if self._send(ListOnline(), quiet=True):
            self._online_asked.append(callback)
        else:
            callback()

    def request_chat(self, peer: str) -> None:
        """
        Ask C{peer} to chat.  Nothing is shown now: the relay answers at
        once with exactly one of REQUEST_PENDING, CHAT_DECLINED or
        COMMAND_FAILED (docs/protocol.rst 11.4), and the view shows that.
        """
        self.asking.add(peer)
        self._send(ChatRequest(peer))

    def accept(self, requester: str) -> bool:
        """
        Accept the pending request from C{requester}; False (and one
        notice) if there is none.
        """
        if requester not in self.incoming:
            self.view.notice(f"there is no chat request from {requester}")
            return False
        self.incoming.discard(requester)
        self._send(ChatAccept(requester))
        return True

    def refuse(self, requester: str) -> bool:
        """
        Refuse the pending request from C{requester}; False (and one notice)
        if there is none.
        """
        if requester not in self.incoming:
            self.view.notice(f"there is no chat request from {requester}")
            return False
        self.incoming.discard(requester)
        self._send(ChatRefuse(requester))
        return True

    def cancel(self, peer: str) -> None:
        """
        Withdraw our request to C{peer}.  The relay's CHAT_DECLINED with
        CANCELLED (or the request's other outcome, if it came first) is the
        one line the user sees; without a request, one notice and nothing
        sent.
        """
        if peer in self.chats:
            self.view.notice(f"you are chatting with {peer}, there is no request to withdraw "
                             f"(!stop {peer} ends the chat)")
        elif peer not in self.outgoing and peer not in self.asking:
            self.view.notice(f"you have no chat request to {peer}")
        else:
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
        if chat.stopping or chat.failed:
            self.view.notice(f"the chat with {peer} is ending; line not sent")
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
        if chat.stopping:
            return  # END goes once: a second one would break the peer's rule
        chat.stopping = True
        if chat.secured and not chat.failed:
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
        self.view.notice(f"{peer} is now pinned to {keys.fingerprint(key)}; ask for a chat (or "
                         "send the letter) again")

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
        if self.logged_in:
            raise RemoteProtocolError("unexpected-message", "the relay sent a second WELCOME")
        if message.user != self.user:
            raise RemoteProtocolError(
                "bad-value", f"the relay welcomed {message.user}, but this client logged in "
                f"as {self.user}")
        self.logged_in = True
        self.max_payload = message.max_payload
        # Records we batch must fit the relay's frame maximum, whatever ours.
        outbound = self.protocol.outbound
        outbound.batch_bytes = min(outbound.batch_bytes, message.max_payload)
        if self.mailbox is not None:
            # Prekeys and unanswered letters go first, before any line a
            # script queued for the login.
            self.mailbox.logged_in()
        if self.groups is not None:
            self.groups.logged_in()
        self.view.logged_in(message.user)

    def _online_list(self, message: OnlineList) -> None:
        waiter = self._online_asked.popleft() if self._online_asked else None
        if waiter is not None:
            waiter()
        else:
            self.view.online(message.users, message.total)

    def _chat_requested(self, message: ChatRequested) -> None:
        self.incoming.add(message.requester)
        self.view.chat_requested(message.requester)

    def _request_pending(self, message: RequestPending) -> None:
        self.asking.discard(message.peer)
        self.outgoing.add(message.peer)
        self.view.request_pending(message.peer)

    def _chat_declined(self, message: ChatDeclined) -> None:
        self.asking.discard(message.peer)
        self.outgoing.discard(message.peer)
        self.view.chat_declined(message.peer, reason_of(message.reason))

    def _request_withdrawn(self, message: RequestWithdrawn) -> None:
        self.incoming.discard(message.requester)
        self.view.request_withdrawn(message.requester, reason_of(message.reason))

    def _command_failed(self, message: CommandFailed) -> None:
        if self.mailbox is not None and self.mailbox.command_failed(message):
            return
        command, subject, reason = message.command, message.subject, reason_of(message.reason)
        if command == ChatStop.TYPE and subject not in self.chats:
            return  # the chat is already over, which is what stop wanted
        if reason is Reason.NO_REQUEST and command in _ENDED_REQUEST_COMMANDS:
            # Checked before sending: the request ended on its way, and its
            # end (CHAT_DECLINED, CHAT_STARTED or REQUEST_WITHDRAWN, which
            # the relay sent first) is what the user has seen.
            return
        if command == ChatRequest.TYPE:
            self.asking.discard(subject)
        name = _COMMAND_NAMES.get(command, f"0x{command:02x}")
        self.view.command_failed(name, subject, reason)

    def _chat_started(self, message: ChatStarted) -> None:
        peer = message.peer
        self.asking.discard(peer)
        self.outgoing.discard(peer)
        self.incoming.discard(peer)
        try:
            key = keys.load_public_key_der(message.peer_key)
        except keys.KeyFormatError as e:
            self.view.security_error(peer, f"the relay sent an unusable key for {peer}: {e}")
            self.refused.add(peer)
            self._send(ChatStop(peer))
            return
        status = self.pins.check(peer, key)
        if status is PinStatus.CHANGED:
            self.changed_keys[peer] = key
            self.view.key_changed(peer, self.pins.fingerprint(peer) or "", keys.fingerprint(key))
            self.refused.add(peer)
            self._send(ChatStop(peer))
            return
        if status is PinStatus.NEW:
            self.pins.pin(peer, key)
        role = Role.INITIATOR if message.initiator else Role.RESPONDER
        connection = Connection(Config(
            END_TO_END, role, self.private_key, UserIdentity(self.user), registry=E2E_MESSAGES,
            max_handshake_frame=min(PRE_AUTH_MAX_FRAME, self.max_payload),
            max_frame=self.max_payload,
        ))
        chat = self.chats[peer] = PeerChat(peer, key, connection)
        self.view.chat_opened(peer, keys.fingerprint(key), status is PinStatus.NEW)
        if role is Role.INITIATOR:
            connection.initiate()
            self._flush_e2e(chat)

    def _relayed(self, message: Relayed) -> None:
        chat = self.chats.get(message.peer)
        if chat is None:
            if message.peer in self.refused:
                return  # sent before the relay saw our CHAT_STOP
            raise RemoteProtocolError(
                "unexpected-message",
                f"the relay sent end-to-end data from {message.peer} outside a chat")
        if chat.failed:
            return  # a chat we already ended; the relay will drop it too
        self._handle_e2e(chat, chat.connection.receive_data(message.payload))

    def _chat_ended(self, message: ChatEnded) -> None:
        peer = message.peer
        chat = self.chats.get(peer)
        reason = reason_of(message.reason)
        if chat is None:
            if peer in self.refused:
                self.refused.discard(peer)
                return
            if reason is not Reason.STOPPED:
                self.view.chat_ended(peer, reason_text(reason))
            return
        if chat.failed:
            outcome = "ended after a security error"
        elif chat.stopping and (chat.peer_end is None or chat.peer_end == chat.received):
            outcome = stopped_outcome(chat)
        elif chat.peer_end is None and reason in DEPARTURES:
            # The relay says the peer left (not that it stopped the chat):
            # an ordinary end, though without the peer's authenticated count
            # nobody can confirm that nothing was lost on the way.
            outcome = (f"ended: {DEPARTURES[reason].format(peer=peer)} ({chat.received} "
                       f"messages received; {peer}'s client sent no authenticated end, "
                       "so any later messages are unconfirmed)")
        elif chat.peer_end is None:
            outcome = (f"TRUNCATED: {reason_text(reason)}, without {peer}'s authenticated "
                       "end; messages may be missing")
        elif chat.peer_end != chat.received:
            outcome = f"TRUNCATED: {peer} sent {chat.peer_end} messages, {chat.received} arrived"
        else:
            outcome = f"ended by {peer} ({chat.received} messages received)"
        self._finish(peer, outcome)

    def _finish(self, peer: str, outcome: str) -> None:
        self.chats.pop(peer, None)
        self.view.chat_ended(peer, outcome)

    def _send(self, message: Message, quiet: bool = False) -> bool:
        if self.protocol.established:
            self.protocol.post(message)
            return True
        if not quiet:
            self.view.notice("not connected to the relay")
        return False


_ENDED_REQUEST_COMMANDS = frozenset({ChatAccept.TYPE, ChatRefuse.TYPE, ChatCancel.TYPE})
