# -*- test-case-name: tests.test_relay -*-
"""
The relay: who is online, chat requests and chats, and routing end-to-end
bytes between the two users of a chat through each user's bounded queue.

L{RelayFactory} builds one L{SecureChatProtocol} per connection with a
L{UserSession} (L{securechat.server.session}) as its delegate; L{Relay}
holds the shared state, with the chat commands in L{Chats}
(L{securechat.server.chats}).

Policies (README.rst, "Relay policies"):

  - I{Second login}: a new login of a user already online replaces the old
    session, which is closed with SESSION_REPLACED (a user whose network
    dropped is not locked out until the idle timeout).
  - I{Chats}: a user may have up to C{max_chats} chats at once; a request to a
    user who has that many is declined with BUSY.
  - I{Backpressure}: frames for a user wait in its queue, drained through
    Twisted's producer API.  When a queue holds more than
    C{queue_soft_limit} bytes, every user relaying into it has its reading
    paused until the queue drains to half of that; if it stays above the
    soft limit for C{stall_timeout} seconds, or ever exceeds
    C{queue_hard_limit}, its user is disconnected as not reading and the
    senders resume.  Nothing accepted is dropped silently: a disconnected
    user's peers are told its chats ended.
  - I{Rate}: each user has a token bucket (C{rate} per second, C{burst});
    in debt, its reading is paused until the bucket refills; more than
    C{burst} in debt after one read, it is disconnected with LIMIT_EXCEEDED.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from securechat.crypto import keys
from securechat.crypto.config import CLIENT_SERVER, MAX_KEEPALIVE_RUN, Config, Role
from securechat.errors import ProtocolError
from securechat.errors import Alert as AlertCode
from securechat.errors import RemoteProtocolError
from securechat.keepalive import KEEPALIVE_CHECKS, KeepaliveSweep
from securechat.outbound import EndOfTurn
from securechat.protocol import SecureChatProtocol
from securechat.server.chats import Chats
from securechat.server.directory import IUserDirectory
from securechat.server.limits import ConnectionGate, Limits
from securechat.server.logtext import EventLogger
from securechat.server.groups import Groups
from securechat.server.mailbox import Mailbox, mailbox_limits
from securechat.server.metrics import RelayMetrics
from securechat.server.session import _EMPTY, _with, UserSession
from securechat.server.store.groupinterface import IGroupStore
from securechat.server.store.groupmemory import MemoryGroupStore
from securechat.server.store.interface import IMailboxStore
from securechat.server.store.memory import MemoryMailboxStore
from securechat.wire.groups import GROUP_FROM_CLIENT
from securechat.wire.mailbox import PostLetter
from securechat.wire.messages import Alert, CertificateIdentity, Message, encode_frame_message
from securechat.wire.relay import (
    FROM_CLIENT,
    ChatAccept,
    ChatCancel,
    ChatDeclined,
    ChatEnded,
    ChatRefuse,
    ChatRequest,
    ChatStop,
    ListOnline,
    OnlineList,
    Reason,
    Relay as RelayMessage,
    RequestWithdrawn,
    Welcome,
)

if TYPE_CHECKING:
    from securechat.server.router import Router

_U32 = struct.Struct(">I")
_RELAY = RelayMessage.TYPE


@dataclass(frozen=True)
class ServerCredentials:
    """
    What the relay proves itself with: its private key and its certificate
    identity (chain and stapled CRL).
    """

    private_key: keys.PrivateKey
    identity: CertificateIdentity


class Relay(Chats):
    """
    The relay's shared state: online users, chat requests and chats (the
    commands for those are L{Chats}'), and the hot path that forwards RELAY
    bodies into the peers' queues.
    """

    log = EventLogger()

    def __init__(
        self,
        directory: IUserDirectory,
        credentials: ServerCredentials,
        clock: IReactorTime,
        limits: Limits = Limits(),
        metrics: RelayMetrics | None = None,
        store: IMailboxStore | None = None,
        group_store: IGroupStore | None = None,
    ) -> None:
        self.directory = directory
        self.credentials = credentials
        self.clock = clock
        self.limits = limits
        self.metrics = metrics or RelayMetrics()
        self.gate = ConnectionGate(limits.max_unauthenticated, limits.max_unauthenticated_per_host)
        self.sessions: dict[str, UserSession] = {}
        #: The other relay processes (C{--cluster}; set by the router), or None.
        self.router: Router | None = None
        self._max_payload = limits.max_payload
        self._config: tuple[ServerCredentials, Config] | None = None
        #: False once the CA has revoked the current certificate.
        self._credentials_valid = True
        #: Queue size above which a relayed message triggers the checks.
        self._queue_check_above = min(limits.queue_soft_limit, limits.queue_hard_limit)
        #: Drains every user's queue at the end of the reactor turn.
        self.end_of_turn = EndOfTurn(clock)
        #: One keepalive timer for all sessions (not a delayed call each).
        self.keepalive = (KeepaliveSweep(clock, limits.idle_timeout / KEEPALIVE_CHECKS)
                          if limits.idle_timeout else None)
        self.metrics.queued_source = self._queued_bytes
        self.metrics.sessions_source = self.sessions.__len__
        self._requests: dict[tuple[str, str], IDelayedCall] = {}
        self._handlers: dict[type, Callable[[UserSession, Any], None]] = {
            ListOnline: self._list_online,
            ChatRequest: self._chat_request,
            ChatAccept: self._chat_accept,
            ChatRefuse: self._chat_refuse,
            ChatCancel: self._chat_cancel,
            ChatStop: self._chat_stop,
            RelayMessage: self._relay,
        }
        #: The mailbox's commands (off the hot path), on C{store}; without
        #: one, letters are kept in memory only.
        self.mailbox = Mailbox(self, store if store is not None else
                               MemoryMailboxStore(clock, mailbox_limits(limits)))
        self._handlers.update(self.mailbox.handlers())
        #: The group commands and fan-out (off the hot path), on
        #: C{group_store}; without one, groups are kept in memory only.
        self.groups = Groups(self, group_store if group_store is not None else
                             MemoryGroupStore(clock, mailbox_limits(limits).expiry_seconds))
        self._handlers.update(self.groups.handlers())

    def config(self) -> Config:
        """
        The handshake configuration for a new connection (made once for
        each set of credentials: they change when the certificate or CRL
        is reloaded).
        """
        credentials = self.credentials
        cached = self._config
        if cached is None or cached[0] is not credentials:
            cached = self._config = (credentials, Config(
                CLIENT_SERVER, Role.RESPONDER, credentials.private_key, credentials.identity,
                registry=GROUP_FROM_CLIENT, max_handshake_frame=self.limits.max_handshake_frame,
                max_frame=self.limits.max_frame, max_keepalive_run=MAX_KEEPALIVE_RUN,
                raw_types=frozenset({_RELAY, PostLetter.TYPE}),
            ))
        return cached[1]

    def replace_credentials(self, credentials: ServerCredentials, valid: bool = True) -> int:
        """
        Serve C{credentials} from now on, and end every session established
        under a certificate that is no longer the current valid one (all of
        them if C{valid} is false: the CA revoked the current certificate)
        with SERVER_REKEYED, so their clients reconnect and check the new
        one.  Returns how many sessions were ended.
        """
        self.credentials = credentials
        self._credentials_valid = valid
        ended = 0
        for session in list(self.sessions.values()):
            if not self._current(session):
                self._rekeyed(session)
                ended += 1
        return ended

    def _current(self, session: UserSession) -> bool:
        """
        Whether C{session}'s handshake used the current, valid certificate.
        """
        identity = session.protocol.config.identity
        return self._credentials_valid and isinstance(identity, CertificateIdentity) and (
            identity.chain[0] == self.credentials.identity.chain[0])

    def _rekeyed(self, session: UserSession) -> None:
        self.log.info("user {user} disconnected: the relay's certificate changed", user=session.user)
        if session.active:
            self._leave(session, Reason.GONE)
        session.protocol.terminate("server-rekeyed", "the relay's certificate changed")

    # -- sessions -----------------------------------------------------------

    def login(self, session: UserSession) -> None:
        user = session.user
        assert user is not None
        if not self._current(session):
            # Its handshake began under the previous certificate.
            self._rekeyed(session)
            return
        if self.router is not None and not self.router.available:
            self.metrics.refusals.labels("unavailable").inc()
            self.log.info("user {user} refused: no link to the other relay processes", user=user)
            session.protocol.terminate("unavailable", "the relay lost its link to the other "
                                       "relay processes")
            return
        old = self.sessions.get(user)
        if old is not None:
            self.log.info("user {user} logged in again; closing the older session", user=user)
            self._leave(old, Reason.REPLACED)
            old.protocol.terminate("session-replaced", "you logged in again elsewhere")
        self.sessions[user] = session
        session.active = True
        self.metrics.handshakes += 1
        self.log.info("user {user} logged in from {host}", user=user, host=session.host)
        session.deliver(Welcome(user, self._max_payload))
        if self.router is not None:
            self.router.logged_in(session)
        self.mailbox.logged_in(session)
        self.groups.logged_in(session)

    def connection_ended(self, session: UserSession, error: ProtocolError | None) -> None:
        self.metrics.connections_open -= 1
        if session.user is None:
            reason = error.code if error is not None else "closed"
            self.metrics.refusals.labels(reason).inc()
            self.log.info(
                "connection from {host} ended before login: {reason}",
                host=session.host, reason=error.detail if error else "closed")
            return
        if session.active:
            self._leave(session, Reason.GONE)
        why = "logged out" if error is None else error.detail
        self.log.info("user {user} disconnected: {why}", user=session.user, why=why)

    def _leave(self, session: UserSession, reason: Reason) -> None:
        """
        Take C{session} off the relay and tell everyone it dealt with.
        """
        user = session.user
        assert user is not None
        session.active = False
        self.mailbox.session_ended(session)
        self.groups.session_ended(session)
        if self.router is not None:
            self.router.paused_by.pop(session, None)
        if self.sessions.get(user) is session:
            del self.sessions[user]
            if self.router is not None:
                self.router.logged_out(user)
        for target in list(session.outgoing):
            self._drop_request(user, target)
            self._deliver(target, RequestWithdrawn(user, reason))
        for requester in list(session.incoming):
            self._drop_request(requester, user)
            self._deliver(requester, ChatDeclined(user, reason))
        for peer in list(session.chats):
            self._end_chat(user, peer)
            self._deliver(peer, ChatEnded(user, reason))
        for sender in session.blocked_senders:
            sender.resume_reading(f"peer:{user}")
        session.blocked_senders = _EMPTY
        if session.queue is not None:
            session.queue.clear()

    def drop_slow_reader(self, session: UserSession, why: str) -> None:
        """
        Disconnect a user who does not read, releasing its senders now.
        """
        if not session.active:
            return
        self.log.warn("user {user} disconnected: {why}", user=session.user, why=why)
        self.metrics.queue_drops.inc()
        self._leave(session, Reason.GONE)
        session.protocol.terminate("limit-exceeded", f"not reading: {why}")

    def revalidate(self) -> None:
        """
        Re-check every online user against the directory (after it changed):
        revoked, removed or re-keyed users are disconnected.
        """
        for user, session in list(self.sessions.items()):
            entry = self.directory.lookup(user)
            if entry is None or entry.revoked or session.entry is None or (
                keys.public_key_der(entry.public_key) != keys.public_key_der(session.entry.public_key)
            ):
                self.log.info("user {user} revoked: disconnecting", user=user)
                self.metrics.refusals.labels("revoked-online").inc()
                self._leave(session, Reason.REVOKED)
                session.protocol.terminate("access-revoked", "your access was revoked")

    # -- commands -----------------------------------------------------------

    def handle(self, session: UserSession, message: Message) -> None:
        handler = self._handlers.get(type(message))
        if handler is None:  # a server-only message type sent by a client
            session.protocol.terminate("unexpected-message", f"{type(message).__name__} from a client")
            return
        handler(session, message)

    def _list_online(self, session: UserSession, message: ListOnline) -> None:
        # docs/protocol.rst 11.2: ascending byte order, as many as fit a
        # body of max_payload bytes (u16 count, a text8 each, u64 total).
        if self.router is not None:
            self.router.online().addCallback(self._online_list, session)
        else:
            self._online_list(sorted(self.sessions), session)

    def _online_list(self, names: list[str], session: UserSession) -> None:
        if not session.active:
            return
        room = self._max_payload - 2 - 8
        shown = 0
        for name in names:
            room -= 1 + len(name)
            if room < 0:
                break
            shown += 1
        session.deliver(OnlineList(tuple(names[:shown]), len(names)))

    def relay_all(self, session: UserSession, items: list[tuple[int, memoryview]]) -> None:
        """
        The hot path: RELAY bodies, undecoded, in order.  A well-formed RELAY
        to a peer of an open chat is forwarded straight from its bytes: a
        RELAYED header is packed for it and queued with the payload, no
        message object and no copy of the payload until its record is
        sealed.  Anything else goes through the full parser (which raises
        L{ProtocolError} for a malformed body) and L{_relay}.
        """
        chats, sessions, max_payload = session.chats, self.sessions, self._max_payload
        head = session.relayed_head()
        threshold = self._queue_check_above
        count = total = 0
        for _, body in items:
            size = len(body)
            n = body[0] if size else 0
            length = size - n - 5
            if length >= 0:
                try:
                    peer = str(body[1:1 + n], "ascii")
                except UnicodeDecodeError:
                    peer = ""
                if (peer in chats and _U32.unpack_from(body, 1 + n)[0] == length
                        and length <= max_payload):
                    target = sessions.get(peer)
                    if target is None:  # on another process (--cluster)
                        self.router.forward(session, peer, body[n + 5:])  # type: ignore[union-attr]
                        count += 1
                        total += length
                        continue
                    queue = target.queue
                    assert queue is not None
                    queue.push_encoded(head(length), body[n + 5:])
                    count += 1
                    total += length
                    if queue.bytes > threshold:
                        self._check_queue(session, target)
                    continue
            message = FROM_CLIENT.parse(_RELAY, bytes(body))
            assert isinstance(message, RelayMessage)
            self._relay(session, message)
            if not session.active:
                break
        self.metrics.relayed_messages += count
        self.metrics.relayed_bytes += total

    def _relay(self, session: UserSession, message: RelayMessage) -> None:
        peer = message.peer
        if len(message.payload) > self._max_payload:
            raise RemoteProtocolError(
                "limit-exceeded",
                f"RELAY payload of {len(message.payload)} bytes, the maximum is {self._max_payload}")
        if peer not in session.chats:
            return self._fail(session, message, peer, Reason.NO_CHAT)
        target = self.sessions.get(peer)
        if target is None:  # on another process (--cluster)
            assert self.router is not None
            self.router.forward(session, peer, memoryview(message.payload))
            self.metrics.relayed_messages += 1
            self.metrics.relayed_bytes += len(message.payload)
            return
        self._forward(session, target, memoryview(message.payload))

    def _forward(self, session: UserSession, target: UserSession, payload: memoryview) -> None:
        target.deliver_relayed(session, payload)
        self.metrics.relayed_messages += 1
        self.metrics.relayed_bytes += len(payload)
        self._check_queue(session, target)

    def _check_queue(self, session: UserSession, target: UserSession) -> None:
        """
        Backpressure after C{session} queued for C{target}: pause the sender
        above the soft limit, drop the recipient above the hard one.
        """
        assert target.queue is not None
        queued = target.queue.bytes
        peer = target.user
        if queued > self.limits.queue_hard_limit:
            self.drop_slow_reader(target, f"outbound queue over {self.limits.queue_hard_limit} bytes")
        elif queued > self.limits.queue_soft_limit and session not in target.blocked_senders:
            target.blocked_senders = _with(target.blocked_senders, session)
            session.pause_reading(f"peer:{peer}")
            self.metrics.senders_paused.inc()
            target.start_stall_timer()

    # -- bookkeeping --------------------------------------------------------

    def _queued_bytes(self) -> int:
        return sum(s.queue.bytes for s in self.sessions.values() if s.queue is not None)



class _Refusal(Protocol):
    """
    Answers a connection the gate did not admit: a plaintext LIMIT_EXCEEDED
    alert, then close.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(encode_frame_message(Alert(AlertCode.LIMIT_EXCEEDED, self.reason)))
        self.transport.loseConnection()


class RelayFactory(Factory):
    """
    Makes a L{SecureChatProtocol} with a L{UserSession} per connection, after
    the gate on unauthenticated connections admits it.
    """

    log = Logger()

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        relay = self.relay
        host = str(getattr(addr, "host", "local"))
        relay.metrics.connections += 1
        refusal = relay.gate.admit(host)
        if refusal is not None:
            relay.metrics.refusals.labels("too-many-unauthenticated").inc()
            self.log.warn("refused a connection from {host}: {reason}", host=host, reason=refusal)
            return _Refusal(refusal)
        relay.metrics.unauthenticated += 1
        relay.metrics.connections_open += 1
        session = UserSession(relay, host)
        limits = relay.limits
        proto = SecureChatProtocol(
            relay.config(), session, relay.clock,
            handshake_timeout=limits.handshake_timeout, idle_timeout=limits.idle_timeout,
            end_of_turn=relay.end_of_turn, keepalive=relay.keepalive,
        )
        proto.factory = self
        return proto


