# -*- test-case-name: tests.test_relay -*-
"""
The relay: who is online, chat requests and chats, and routing end-to-end
bytes between the two users of a chat through each user's bounded queue.

L{RelayFactory} builds one L{SecureChatProtocol} per connection with a
L{UserSession} as its delegate; L{Relay} holds the shared state.

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

import functools
import struct
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from securechat.crypto import keys
from securechat.crypto.config import CLIENT_SERVER, MAX_KEEPALIVE_RUN, Config, Role
from securechat.errors import ProtocolError
from securechat.errors import Alert as AlertCode
from securechat.errors import RemoteProtocolError
from securechat.protocol import (
    EndOfTurn,
    KEEPALIVE_CHECKS,
    KeepaliveSweep,
    IRawMessageDelegate,
    OutboundQueue,
    PeerRejected,
    SecureChatProtocol,
)
from securechat.server.directory import IUserDirectory, UserEntry
from securechat.server.limits import ConnectionGate, Limits, TokenBucket
from securechat.server.metrics import RelayMetrics
from securechat.wire.messages import Alert, CertificateIdentity, Identity, Message, encode_frame_message
from securechat.wire.relay import (
    FROM_CLIENT,
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
    Relay as RelayMessage,
    Relayed,
    RequestPending,
    RequestWithdrawn,
    Welcome,
)

_U32 = struct.Struct(">I")
_RELAY = RelayMessage.TYPE
_RELAYED = Relayed.TYPE


@functools.lru_cache(maxsize=None)
def _relayed_layout(name_length: int) -> struct.Struct:
    return struct.Struct(f">BIB{name_length}sI")


def _relayed_header_packer(sender: str) -> Callable[[int], bytes]:
    """
    A function of the payload length giving everything of a RELAYED from
    C{sender} that comes before its payload: inner header (type, body
    length), the name (u8 length, bytes) and the payload's u32 length.
    """
    name = sender.encode("ascii")
    pack = _relayed_layout(len(name)).pack
    fixed = 1 + len(name) + 4

    def head(length: int) -> bytes:
        return pack(_RELAYED, fixed + length, len(name), name, length)
    return head


class _EmptyKeys(dict):
    """
    The one empty key set all sessions share until something goes in (most
    users are idle, with all of theirs empty): reads like an empty dict,
    refuses to be written (L{_with} puts a dict of its own in its place).
    """

    __slots__ = ()

    def __setitem__(self, key: object, value: object) -> None:
        raise TypeError("the shared empty key set is read-only")

    def setdefault(self, key: object, default: object = None) -> None:
        raise TypeError("the shared empty key set is read-only")

    def update(self, *args: object, **kw: object) -> None:
        raise TypeError("the shared empty key set is read-only")

    def __ior__(self, other: object) -> _EmptyKeys:  # type: ignore[misc]
        raise TypeError("the shared empty key set is read-only")


_EMPTY: dict[Any, None] = _EmptyKeys()

K = TypeVar("K")


def _with(keys: dict[K, None], key: K) -> dict[K, None]:
    """
    C{keys} with C{key} added: a dict of its own in place of L{_EMPTY}.
    """
    if keys is _EMPTY:
        keys = {}
    keys[key] = None
    return keys


@dataclass(frozen=True)
class ServerCredentials:
    """
    What the relay proves itself with: its private key and its certificate
    identity (chain and stapled CRL).
    """

    private_key: keys.PrivateKey
    identity: CertificateIdentity


@implementer(IRawMessageDelegate)
class UserSession:
    """
    One connection's view of the relay: the delegate of its
    L{SecureChatProtocol}.  Before the handshake completes it only answers
    L{verify_peer}; after, it is the user's presence, chats and queue.
    """

    __slots__ = ("relay", "host", "user", "entry", "queue", "_relayed_head", "bucket", "chats",
                 "outgoing", "incoming", "blocked_senders", "active", "_authenticating",
                 "_pause_reasons", "_rate_resume", "_stall", "protocol")

    protocol: SecureChatProtocol

    def __init__(self, relay: Relay, host: str) -> None:
        self.relay = relay
        self.host = host
        self.user: str | None = None
        self.entry: UserEntry | None = None
        self.queue: OutboundQueue | None = None
        #: Packs the start of a RELAYED from this user (inner header, name,
        #: payload length) around a payload; made when the user first relays.
        self._relayed_head: Callable[[int], bytes] | None = None
        self.bucket = TokenBucket(relay.clock, relay.limits.rate, relay.limits.burst)
        # Sets kept as dicts (keys only), all the shared _EMPTY until
        # something goes in (added to with _with): most users are idle, and
        # an empty dict would still cost 64 bytes each (an empty set 216).
        self.chats: dict[str, None] = _EMPTY
        self.outgoing: dict[str, None] = _EMPTY
        self.incoming: dict[str, None] = _EMPTY
        self.blocked_senders: dict[UserSession, None] = _EMPTY
        self.active = False
        self._authenticating = True
        self._pause_reasons: dict[str, None] = _EMPTY
        self._rate_resume: IDelayedCall | None = None
        self._stall: IDelayedCall | None = None

    # -- ISessionDelegate ---------------------------------------------------

    def verify_peer(self, identity: Identity) -> keys.PublicKey:
        name = getattr(identity, "name", None)
        entry = self.relay.directory.lookup(name) if name else None
        if entry is None:
            raise PeerRejected("unknown-user", f"no registered user {name!r}")
        if entry.revoked:
            raise PeerRejected("revoked-user", f"user {name!r} is revoked")
        self.entry = entry
        return entry.public_key

    def established(self, peer: Identity) -> None:
        self._leave_gate()
        assert self.entry is not None
        self.user = self.entry.name
        self.queue = self.protocol.outbound
        self.queue.on_drained = self._queue_drained
        self.protocol.register_producer(self.queue)
        self.relay.login(self)

    def message_received(self, message: Message) -> None:
        if self.active and self._charge():
            self.relay.handle(self, message)

    def raw_messages_received(self, items: list[tuple[int, memoryview]]) -> None:
        # Only RELAY is handed over undecoded (Relay.config): the hot path.
        if not self.active:
            return
        if self.bucket.refill() >= len(items):
            self.bucket.tokens -= len(items)  # the whole run is within the rate
            self.relay.relay_all(self, items)
            return
        for item in items:  # near the limit: message by message
            if not (self.active and self._charge()):
                return
            self.relay.relay_all(self, [item])

    def connection_ended(self, error: ProtocolError | None) -> None:
        self._leave_gate()
        if self._rate_resume is not None and self._rate_resume.active():
            self._rate_resume.cancel()
        self._cancel_stall()
        if self.queue is not None:
            self.queue.clear()
        self.relay.connection_ended(self, error)

    # -- for the relay ------------------------------------------------------

    def deliver(self, message: Message) -> None:
        """
        Queue C{message} for this user.
        """
        if self.queue is not None and self.active:
            self.queue.push(message)

    def deliver_relayed(self, sender: UserSession, payload: memoryview) -> None:
        """
        Queue a RELAYED of C{payload} from C{sender}, encoded directly
        (no message object), the payload uncopied until its record is sealed.
        """
        assert self.queue is not None
        self.queue.push_encoded(sender.relayed_head()(len(payload)), payload)

    def relayed_head(self) -> Callable[[int], bytes]:
        """
        The packer of this user's RELAYED headers (see
        L{_relayed_header_packer}), made the first time it is needed.
        """
        head = self._relayed_head
        if head is None:
            assert self.user is not None
            head = self._relayed_head = _relayed_header_packer(self.user)
        return head

    def pause_reading(self, reason: str) -> None:
        if not self._pause_reasons and self.protocol.transport is not None:
            self.protocol.tcp.pauseProducing()
        self._pause_reasons = _with(self._pause_reasons, reason)

    def resume_reading(self, reason: str) -> None:
        self._pause_reasons.pop(reason, None)
        if not self._pause_reasons and self.protocol.transport is not None and self.active:
            self.protocol.tcp.resumeProducing()

    @property
    def reading_paused(self) -> bool:
        return bool(self._pause_reasons)

    def start_stall_timer(self) -> None:
        if self._stall is None:
            self._stall = self.relay.clock.callLater(
                self.relay.limits.stall_timeout, self.relay.drop_slow_reader, self,
                "outbound queue stalled")

    def _cancel_stall(self) -> None:
        if self._stall is not None and self._stall.active():
            self._stall.cancel()
        self._stall = None

    # -- internals ----------------------------------------------------------

    def _charge(self) -> bool:
        """
        Take one message from the rate bucket: throttle in debt, disconnect
        (and return False) far in debt.
        """
        balance = self.bucket.take()
        if balance < 0:
            if balance < -self.relay.limits.burst:
                self.relay.log.warn("user {user} disconnected: message rate", user=self.user)
                self.relay.metrics.refusals.labels("rate").inc()
                self.protocol.terminate("limit-exceeded", "message rate limit")
                return False
            self._throttle()
        return True

    def _leave_gate(self) -> None:
        if self._authenticating:
            self._authenticating = False
            self.relay.gate.release(self.host)
            self.relay.metrics.unauthenticated -= 1

    def _throttle(self) -> None:
        self.relay.metrics.rate_limited.inc()
        self.pause_reading("rate")
        if self._rate_resume is None or not self._rate_resume.active():
            self._rate_resume = self.relay.clock.callLater(
                self.bucket.seconds_until_positive(), self.resume_reading, "rate")

    def _queue_drained(self) -> None:
        assert self.queue is not None
        if not self.blocked_senders and self._stall is None:
            return
        if self.queue.bytes <= self.relay.limits.queue_soft_limit // 2:
            self._cancel_stall()
            senders, self.blocked_senders = self.blocked_senders, _EMPTY
            for sender in senders:
                sender.resume_reading(f"peer:{self.user}")


class Relay:
    """
    The relay's shared state: online users, chat requests and chats.
    """

    log = Logger()

    def __init__(
        self,
        directory: IUserDirectory,
        credentials: ServerCredentials,
        clock: IReactorTime,
        limits: Limits = Limits(),
        metrics: RelayMetrics | None = None,
    ) -> None:
        self.directory = directory
        self.credentials = credentials
        self.clock = clock
        self.limits = limits
        self.metrics = metrics or RelayMetrics()
        self.gate = ConnectionGate(limits.max_unauthenticated, limits.max_unauthenticated_per_host)
        self.sessions: dict[str, UserSession] = {}
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
                registry=FROM_CLIENT, max_handshake_frame=self.limits.max_handshake_frame,
                max_frame=self.limits.max_frame, max_keepalive_run=MAX_KEEPALIVE_RUN,
                raw_types=frozenset({_RELAY}),
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
        old = self.sessions.get(user)
        if old is not None:
            self.log.info("user {user} logged in again; closing the older session", user=user)
            self._leave(old, Reason.REPLACED)
            old.protocol.terminate("session-replaced", "you logged in again elsewhere")
        self.sessions[user] = session
        session.active = True
        self.metrics.handshakes += 1
        self.log.info("user {user} logged in from {host}", user=user, host=session.host)
        session.deliver(Welcome(user, self.limits.max_payload))

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
        if self.sessions.get(user) is session:
            del self.sessions[user]
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

    def _fail(self, session: UserSession, message: Message, subject: str, reason: Reason) -> None:
        session.deliver(CommandFailed(message.TYPE, subject, reason))

    def _list_online(self, session: UserSession, message: ListOnline) -> None:
        # docs/protocol.rst 11.2: ascending byte order, as many as fit a
        # body of max_payload bytes (u16 count, a text8 each, u64 total).
        names = sorted(self.sessions)
        room = self._max_payload - 2 - 8
        shown = 0
        for name in names:
            room -= 1 + len(name)
            if room < 0:
                break
            shown += 1
        session.deliver(OnlineList(tuple(names[:shown]), len(names)))

    def _chat_request(self, session: UserSession, message: ChatRequest) -> None:
        """
        Answer a request at once with exactly one message (docs/protocol.rst
        11.4): COMMAND_FAILED when the requester cannot make it (oneself, an
        existing chat or request, its own limits), CHAT_DECLINED when the
        target cannot take it, else REQUEST_PENDING once the target is asked.
        """
        user, target = session.user, message.to
        assert user is not None
        if target == user:
            return self._fail(session, message, target, Reason.SELF)
        if target in session.chats or target in session.outgoing or target in session.incoming:
            return self._fail(session, message, target, Reason.ALREADY)
        if len(session.outgoing) >= self.limits.max_outgoing_requests:
            self.metrics.chat_requests.labels("too_many_pending").inc()
            return self._fail(session, message, target, Reason.TOO_MANY_PENDING)
        if len(session.chats) >= self.limits.max_chats:
            self.metrics.chat_requests.labels("busy").inc()
            return self._fail(session, message, target, Reason.BUSY)
        other = self.sessions.get(target)
        if other is None:
            entry = self.directory.lookup(target)
            reason = Reason.OFFLINE if entry is not None and not entry.revoked else Reason.UNKNOWN_USER
            self.metrics.chat_requests.labels(reason.name.lower()).inc()
            session.deliver(ChatDeclined(target, reason))
            return
        if len(other.incoming) >= self.limits.max_incoming_requests:
            self.metrics.chat_requests.labels("too_many_pending").inc()
            session.deliver(ChatDeclined(target, Reason.TOO_MANY_PENDING))
            return
        if len(other.chats) >= self.limits.max_chats:
            self.metrics.chat_requests.labels("busy").inc()
            session.deliver(ChatDeclined(target, Reason.BUSY))
            return
        self._requests[(user, target)] = self.clock.callLater(
            self.limits.request_timeout, self._request_expired, user, target)
        session.outgoing = _with(session.outgoing, target)
        other.incoming = _with(other.incoming, user)
        self.log.info("chat request {requester} -> {target}", requester=user, target=target)
        other.deliver(ChatRequested(user))
        session.deliver(RequestPending(target))

    def _request_expired(self, requester: str, target: str) -> None:
        self._requests.pop((requester, target), None)
        self._forget_request(requester, target)
        self.metrics.chat_requests.labels("timeout").inc()
        self._deliver(requester, ChatDeclined(target, Reason.TIMEOUT))
        self._deliver(target, RequestWithdrawn(requester, Reason.TIMEOUT))

    def _chat_accept(self, session: UserSession, message: ChatAccept) -> None:
        user, requester = session.user, message.requester
        assert user is not None
        if (requester, user) not in self._requests:
            return self._fail(session, message, requester, Reason.NO_REQUEST)
        self._drop_request(requester, user)
        other = self.sessions[requester]
        if len(other.chats) >= self.limits.max_chats or len(session.chats) >= self.limits.max_chats:
            other.deliver(ChatDeclined(user, Reason.BUSY))
            return self._fail(session, message, requester, Reason.BUSY)
        assert other.entry is not None and session.entry is not None
        session.chats = _with(session.chats, requester)
        other.chats = _with(other.chats, user)
        self.metrics.chat_requests.labels("accepted").inc()
        self.metrics.chats.inc()
        self.log.info("chat started: {a} and {b}", a=requester, b=user)
        other.deliver(ChatStarted(user, keys.public_key_der(session.entry.public_key), 1))
        session.deliver(ChatStarted(requester, keys.public_key_der(other.entry.public_key), 0))

    def _chat_refuse(self, session: UserSession, message: ChatRefuse) -> None:
        user, requester = session.user, message.requester
        assert user is not None
        if (requester, user) not in self._requests:
            return self._fail(session, message, requester, Reason.NO_REQUEST)
        self._drop_request(requester, user)
        self.metrics.chat_requests.labels("refused").inc()
        self._deliver(requester, ChatDeclined(user, Reason.REFUSED))

    def _chat_cancel(self, session: UserSession, message: ChatCancel) -> None:
        user, target = session.user, message.to
        assert user is not None
        if (user, target) not in self._requests:
            return self._fail(session, message, target, Reason.NO_REQUEST)
        self._drop_request(user, target)
        self.metrics.chat_requests.labels("cancelled").inc()
        self._deliver(target, RequestWithdrawn(user, Reason.CANCELLED))
        session.deliver(ChatDeclined(target, Reason.CANCELLED))

    def _chat_stop(self, session: UserSession, message: ChatStop) -> None:
        user, peer = session.user, message.peer
        assert user is not None
        if peer not in session.chats:
            return self._fail(session, message, peer, Reason.NO_CHAT)
        self._end_chat(user, peer)
        self.log.info("chat ended: {a} stopped the chat with {b}", a=user, b=peer)
        self._deliver(peer, ChatEnded(user, Reason.STOPPED))
        session.deliver(ChatEnded(peer, Reason.STOPPED))

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
                    queue = sessions[peer].queue
                    assert queue is not None
                    queue.push_encoded(head(length), body[n + 5:])
                    count += 1
                    total += length
                    if queue.bytes > threshold:
                        self._check_queue(session, sessions[peer])
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
        self._forward(session, self.sessions[peer], memoryview(message.payload))

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

    def _deliver(self, user: str, message: Message) -> None:
        session = self.sessions.get(user)
        if session is not None:
            session.deliver(message)

    def _drop_request(self, requester: str, target: str) -> None:
        call = self._requests.pop((requester, target), None)
        if call is not None and call.active():
            call.cancel()
        self._forget_request(requester, target)

    def _forget_request(self, requester: str, target: str) -> None:
        a, b = self.sessions.get(requester), self.sessions.get(target)
        if a is not None:
            a.outgoing.pop(target, None)
        if b is not None:
            b.incoming.pop(requester, None)

    def _end_chat(self, a: str, b: str) -> None:
        for x, y in ((a, b), (b, a)):
            session = self.sessions.get(x)
            if session is not None:
                session.chats.pop(y, None)
        self.metrics.chats.dec()


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


