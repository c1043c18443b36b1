# -*- test-case-name: tests.test_protocol -*-
"""
The one Twisted protocol that drives the sans-IO core, for the relay and for
the client alike.

L{SecureChatProtocol} feeds received bytes to a
L{securechat.crypto.handshake.Connection}, writes what it produces, enforces
the handshake deadline, and hands the interesting events to a I{delegate}
(an L{ISessionDelegate}): the relay's per-user session, or the client's.
Deciding whether to trust the peer's identity is the delegate's job and may
be asynchronous (return a L{Deferred}).

On any protocol error the alert is written and the connection closed; if the
peer does not let it close within C{abort_after} seconds it is aborted.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface

from securechat.crypto import keys
from securechat.crypto.config import Config
from securechat.crypto.events import (
    ConnectionClosed,
    ConnectionFailed,
    Event,
    HandshakeComplete,
    MessageReceived,
    PeerIdentityReceived,
    RawMessages,
)
from securechat.crypto.handshake import Connection, State
from securechat.errors import Alert, LocalProtocolError, ProtocolError, RemoteProtocolError
from securechat.wire.messages import INNER_HEADER, Identity, Message, Ping, Pong

#: Room kept in a record for its header and tag (and some slack), when
#: batching queued messages up to the frame maximum.
RECORD_ROOM = 64

#: How often per idle timeout the keepalive checks a connection: a quiet
#: one is PINGed, or given up on, at most a tenth of the timeout late.
KEEPALIVE_CHECKS = 10


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


class EndOfTurn:
    """
    Runs the drains of outbound queues once their messages are all in:
    at the end of the read that queued them (most messages are answers to
    a read), or else at the end of the reactor turn, with one delayed call
    per turn for all queues, not one per queue.  The relay shares one among
    all its connections.  Whichever way, the transport still writes once
    per turn.
    """

    __slots__ = ("_clock", "_pending", "_call", "reading")

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._pending: list[OutboundQueue] = []
        self._call: IDelayedCall | None = None
        #: Reads being handled: queues are drained when they end.
        self.reading = 0

    def schedule(self, queue: OutboundQueue) -> None:
        self._pending.append(queue)
        if self._call is None and not self.reading:
            self._call = self._clock.callLater(0, self._turn_ended)

    def read_ended(self) -> None:
        """
        A read was handled: drain what it queued (unless it was nested in
        another read, which drains when it ends).
        """
        self.reading -= 1
        if not self.reading and self._pending:
            self.run()

    def _turn_ended(self) -> None:
        self._call = None
        self.run()

    def run(self) -> None:
        """
        Drain every queue scheduled so far.
        """
        while self._pending:
            pending, self._pending = self._pending, []
            for queue in pending:
                queue.scheduled = False
                queue.drain()


class KeepaliveSweep:
    """
    The keepalive of many connections on one timer: every C{period} seconds
    it checks each member, instead of a delayed call per connection (about
    400 bytes each in Twisted, for every idle user).  A quiet connection is
    therefore PINGed, and given up on, up to one period later than its
    idle timeout says.  The relay shares one among all its connections.
    """

    __slots__ = ("_clock", "period", "_members", "_call")

    def __init__(self, clock: IReactorTime, period: float) -> None:
        if period <= 0:
            raise ValueError("the keepalive period must be positive")
        self._clock = clock
        self.period = period
        self._members: dict[SecureChatProtocol, None] = {}
        self._call: IDelayedCall | None = None

    def __len__(self) -> int:
        return len(self._members)

    def add(self, protocol: SecureChatProtocol) -> None:
        self._members[protocol] = None
        if self._call is None:
            self._call = self._clock.callLater(self.period, self._sweep)

    def discard(self, protocol: SecureChatProtocol) -> None:
        self._members.pop(protocol, None)
        if not self._members and self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None

    def _sweep(self) -> None:
        self._call = None
        now = self._clock.seconds()
        for protocol in list(self._members):
            protocol._idle_check(now)
        if self._members and self._call is None:
            self._call = self._clock.callLater(self.period, self._sweep)


class OutboundQueue:
    """
    Inner messages waiting to be sealed for one connection, kept encoded.

    Whatever is queued during one reactor turn is sealed at the end of it,
    into as few records as the frame maximum allows (C{batch_bytes} of
    plaintext each), so the AEAD, framing and write cost is paid per flush,
    not per message.  A queue is an C{IPushProducer}: registered with the
    transport, it holds messages while the transport's buffer is full.

    Each message is two chunks, its inner header and its body, so a body
    (a relayed payload, say) is copied once, into the record's plaintext.

    @ivar bytes: the size of what is queued.
    @ivar on_drained: called after each drain.
    """

    __slots__ = ("_turn", "_seal", "batch_bytes", "on_drained", "_chunks",
                 "_sizes", "scheduled", "bytes", "paused", "stopped")

    def __init__(self, turn: EndOfTurn, seal: Callable[[bytes], None], batch_bytes: int) -> None:
        self._turn = turn
        self._seal = seal
        self.batch_bytes = batch_bytes
        self.on_drained: Callable[[], None] | None = None
        self._chunks: list[bytes | memoryview] = []
        self._sizes: list[int] = []
        #: A drain is due at the end of this turn.
        self.scheduled = False
        self.bytes = 0
        self.paused = False
        self.stopped = False

    def __len__(self) -> int:
        return len(self._sizes)

    def push(self, message: Message) -> None:
        """
        Queue C{message}.
        """
        body = message.encode_body()
        self.push_encoded(INNER_HEADER.pack(message.TYPE, len(body)), body)

    def push_encoded(self, header: bytes, body: bytes | memoryview) -> None:
        """
        Queue one message already encoded: its 5-byte inner header (type,
        body length) and its body.
        """
        if self.stopped:
            return
        size = len(header) + len(body)
        chunks = self._chunks
        chunks.append(header)
        chunks.append(body)
        self._sizes.append(size)
        self.bytes += size
        if not self.scheduled and not self.paused:
            self.scheduled = True
            self._turn.schedule(self)

    def drain(self) -> None:
        """
        Seal what is queued, unless the transport paused us.
        """
        sizes, chunks = self._sizes, self._chunks
        while sizes and not self.paused and not self.stopped:
            if self.bytes <= self.batch_bytes:
                total = self.bytes
                data = b"".join(chunks)
                chunks.clear()
                sizes.clear()
            else:
                total = count = 0
                for size in sizes:
                    if count and total + size > self.batch_bytes:
                        break
                    total += size
                    count += 1
                data = b"".join(chunks[:2 * count])
                del chunks[:2 * count]
                del sizes[:count]
            self.bytes -= total
            self._seal(data)
        if self.on_drained is not None:
            self.on_drained()

    def flush(self) -> None:
        """
        Seal everything queued now, paused or not (a message sent directly
        must not overtake what was queued before it).
        """
        paused, self.paused = self.paused, False
        try:
            self.drain()
        finally:
            self.paused = paused

    def clear(self) -> None:
        """
        Drop everything and accept nothing more (the connection is over).
        """
        self.stopped = True
        self._chunks.clear()
        self._sizes.clear()
        self.bytes = 0

    # IPushProducer, for the transport
    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        if not self.scheduled and self._sizes and not self.stopped:
            self.scheduled = True
            self._turn.schedule(self)

    def stopProducing(self) -> None:
        self.clear()


class SecureChatProtocol(Protocol):
    """
    Drives one L{Connection} over a Twisted transport.

    @ivar connection: the sans-IO core.
    @ivar delegate: the application side.
    @ivar outbound: messages posted (L{post}) and not yet sealed.
    """

    _log = Logger()

    def __init__(
        self,
        config: Config,
        delegate: Any,
        clock: IReactorTime,
        handshake_timeout: float = 10.0,
        abort_after: float = 5.0,
        idle_timeout: float | None = None,
        end_of_turn: EndOfTurn | None = None,
        keepalive: KeepaliveSweep | None = None,
    ) -> None:
        self.config = config
        self.delegate = delegate
        self.clock = clock
        self.handshake_timeout = handshake_timeout
        self.abort_after = abort_after
        self.idle_timeout = idle_timeout
        if idle_timeout and keepalive is None:
            keepalive = KeepaliveSweep(clock, idle_timeout / KEEPALIVE_CHECKS)
        self._keepalive = keepalive if idle_timeout else None
        self._last_rx = 0.0
        #: The _last_rx of the quiet spell already PINGed.
        self._pinged_at = -1.0
        self.connection = Connection(config)
        self._deadline: IDelayedCall | None = None
        self._abort: IDelayedCall | None = None
        self._ended = False
        self._pending_verification: Deferred[Any] | None = None
        self._producer: Any = None
        self.error: ProtocolError | None = None
        self._turn = end_of_turn or EndOfTurn(clock)
        self.outbound = OutboundQueue(self._turn, self._seal_posted, config.max_frame - RECORD_ROOM)
        delegate.protocol = self

    # -- Twisted callbacks --------------------------------------------------

    def connectionMade(self) -> None:
        # Writes are already coalesced once per reactor turn (the relay's
        # queues); Nagle's algorithm would only add delayed-ACK latency.
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        self._last_rx = self.clock.seconds()
        self._deadline = self.clock.callLater(self.handshake_timeout, self._handshake_expired)
        if self.connection.is_initiator:
            self.connection.initiate()
            self._flush()

    def dataReceived(self, data: bytes) -> None:
        self._last_rx = self.clock.seconds()
        turn = self._turn
        turn.reading += 1
        try:
            self._handle(self.connection.receive_data(data))
        finally:
            turn.read_ended()

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        self._cancel_timers()
        self.outbound.clear()
        if self._pending_verification is not None:
            self._pending_verification.cancel()
        if self.connection.state not in (State.CLOSED, State.FAILED):
            self._end(RemoteProtocolError("connection-closed", "connection lost"))
        else:
            self._end(self.error)

    # -- for the delegate ---------------------------------------------------

    @property
    def tcp(self) -> Any:
        """
        The transport, with the producer and abort methods every stream
        transport has (C{ITransport} itself does not declare them).
        """
        return self.transport

    @property
    def established(self) -> bool:
        return self.connection.state is State.ESTABLISHED

    def send(self, *messages: Message) -> None:
        """
        Seal C{messages} into one record and write it now, after anything
        posted before (order is kept).
        """
        if self.outbound:
            self.outbound.flush()
        self.connection.send(*messages)
        self._flush()

    def post(self, message: Message) -> None:
        """
        Queue C{message} to be sealed at the end of this reactor turn,
        together with everything else posted meanwhile (one record per
        flush, not per message).
        """
        self.outbound.push(message)

    def register_producer(self, producer: Any) -> None:
        """
        Register C{producer} (an C{IPushProducer}) with the transport; it is
        unregistered when the connection closes.
        """
        assert self.transport is not None
        self._producer = producer
        self.tcp.registerProducer(producer, True)

    def close(self) -> None:
        """
        End the connection cleanly (CLOSE_NOTIFY), after sealing whatever was
        posted.
        """
        if self.connection.state in (State.CLOSED, State.FAILED):
            return
        if self.outbound:
            self.outbound.flush()  # a clean end delivers everything posted first
        self.connection.close()
        self._flush()
        self._disconnect()
        self._end(None)

    def terminate(self, code: str, detail: str | None = None) -> None:
        """
        End the connection for C{code} (an error code of
        L{securechat.errors.ERRORS}, such as C{timeout}, C{limit-exceeded},
        C{access-revoked}): the peer gets the matching alert with C{detail}
        as its reason.
        """
        if self.connection.state in (State.CLOSED, State.FAILED):
            return
        self.error = LocalProtocolError(code, detail)
        reason = "" if self.error.alert == Alert.HANDSHAKE_FAILED else self.error.detail
        self.connection.close(self.error.alert, reason)
        self._flush()
        self._disconnect()
        self._end(self.error)

    # -- internals ----------------------------------------------------------

    def _handle(self, events: list[Event]) -> None:
        # A handshake that completes and fails within one read (a duplicated
        # AUTH record, say) never becomes a session: the failure wins.  A
        # failure is always the last event.
        fails = bool(events) and type(events[-1]) is ConnectionFailed
        for event in events:
            if self._ended:
                break
            kind = type(event)
            if kind is RawMessages:
                try:
                    self.delegate.raw_messages_received(event.items)  # type: ignore[union-attr]
                except ProtocolError as e:
                    self._handle(self.connection.fail(e))
            elif kind is MessageReceived:
                if not isinstance(event.message, Pong):  # type: ignore[union-attr]  # liveness only
                    try:
                        self.delegate.message_received(event.message)  # type: ignore[union-attr]
                    except ProtocolError as e:
                        self._handle(self.connection.fail(e))
            elif isinstance(event, PeerIdentityReceived):
                self._verify(event.identity)
            elif isinstance(event, HandshakeComplete):
                if fails:
                    continue
                if self._deadline is not None and self._deadline.active():
                    self._deadline.cancel()
                self._deadline = None
                self._flush()
                if self._keepalive is not None:
                    self._keepalive.add(self)
                self.delegate.established(event.peer)
            elif isinstance(event, ConnectionClosed):
                self._flush()
                self._disconnect()
                self._end(None)
            elif isinstance(event, ConnectionFailed):
                self.error = event.error
                self._flush()
                self._disconnect()
                self._end(event.error)
        self._flush()

    def _verify(self, identity: Identity) -> None:
        # A synchronous answer (the relay's directory) is handled at once;
        # a Deferred (a client asking its user, say) when it fires.
        try:
            answer = self.delegate.verify_peer(identity)
        except PeerRejected as e:
            self._handle(self.connection.reject_peer(e.code, e.detail))
            return
        except Exception:
            answer = fail()
        if not isinstance(answer, Deferred):
            try:
                self._handle(self.connection.accept_peer(answer))
            except Exception:
                self._log.failure("handling a verified peer failed")
            return
        d = answer
        self._pending_verification = d

        def accepted(key: keys.PublicKey) -> None:
            self._pending_verification = None
            if self.connection.state is State.WAIT_VERIFY:
                self._handle(self.connection.accept_peer(key))

        def rejected(failure: Failure) -> None:
            self._pending_verification = None
            if self.connection.state is not State.WAIT_VERIFY:
                return None
            if failure.check(CancelledError):
                return None  # the connection went away meanwhile
            if failure.check(PeerRejected):
                error: PeerRejected = failure.value
                self._handle(self.connection.reject_peer(error.code, error.detail))
            else:
                self._log.failure("verifying peer identity failed", failure)
                self._handle(self.connection.reject_peer("peer-rejected", "verification error"))
            return None

        d.addCallbacks(accepted, rejected)
        d.addErrback(lambda f: self._log.failure("handling a verified peer failed", f))

    def _seal_posted(self, plaintext: bytes) -> None:
        if self.connection.state is State.ESTABLISHED:
            self.connection.send_inner(plaintext)
            self._flush()
        else:
            self.outbound.clear()  # the connection ended: nothing can be sent

    def _flush(self) -> None:
        data = self.connection.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    def _disconnect(self) -> None:
        if self.transport is None:
            return
        if self._producer is not None:
            # A transport with a registered producer does not close.
            self._producer = None
            self.tcp.unregisterProducer()
        self.transport.loseConnection()
        if self._abort is None and self.abort_after is not None:
            self._abort = self.clock.callLater(self.abort_after, self._abort_now)

    def _abort_now(self) -> None:
        self._abort = None
        if self.transport is not None:
            self.tcp.abortConnection()

    def _handshake_expired(self) -> None:
        self._deadline = None
        if self.connection.state is not State.ESTABLISHED:
            self.terminate("timeout", "handshake not completed in time")

    def _idle_check(self, now: float) -> None:
        """
        Keepalive (from the L{KeepaliveSweep}): once half the idle timeout
        passed without traffic, release the AEAD contexts and PING, once per
        quiet spell; once all of it passed, give up.
        """
        assert self.idle_timeout is not None
        if not self.established:
            return
        quiet = now - self._last_rx
        if quiet >= self.idle_timeout:
            self.terminate("timeout", f"no traffic for {quiet:.0f} seconds")
        elif quiet >= self.idle_timeout / 2 and self._pinged_at != self._last_rx:
            self._pinged_at = self._last_rx
            self.connection.release_contexts()  # an idle user holds no AEAD state
            self.send(Ping(b""))

    def _cancel_timers(self) -> None:
        for call in (self._deadline, self._abort):
            if call is not None and call.active():
                call.cancel()
        self._deadline = self._abort = None
        if self._keepalive is not None:
            self._keepalive.discard(self)

    def _end(self, error: ProtocolError | None) -> None:
        if self._ended:
            return
        self._ended = True
        if self._keepalive is not None:
            self._keepalive.discard(self)
        self.delegate.connection_ended(error)


ProtocolFactory = Callable[[], SecureChatProtocol]
