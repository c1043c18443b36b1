# -*- test-case-name: tests.test_protocol -*-
"""
The one Twisted protocol that drives the sans-IO core, for the relay and for
the client alike.

L{SecureChatProtocol} feeds received bytes to a
L{securechat.crypto.handshake.Connection}, writes what it produces, enforces
the handshake deadline, and hands the interesting events to a I{delegate}
(an L{ISessionDelegate}): the relay's per-user session, or the client's.
Deciding whether to trust the peer's identity is the delegate's job and may
be asynchronous (return a L{Deferred}).  A key held on a token signs off the
reactor thread (L{securechat.signing.sign_later}, with C{sign_timeout}): the
handshake waits in WAIT_SIGN meanwhile, and fails with C{signing-failed}
when the token cannot sign or does not answer.

On any protocol error the alert is written and the connection closed; if the
peer does not let it close within C{abort_after} seconds it is aborted.

Beside it: L{securechat.delegate} (the delegate interfaces and
L{PeerRejected}), L{securechat.outbound} (the outbound queue and the
end-of-turn drain) and L{securechat.keepalive} (the shared keepalive timer).
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

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
    SignatureNeeded,
)
from securechat.crypto.handshake import Connection, State
from securechat.delegate import IRawMessageDelegate, ISessionDelegate, PeerRejected
from securechat.errors import Alert, LocalProtocolError, ProtocolError, RemoteProtocolError
from securechat.keepalive import KEEPALIVE_CHECKS, KeepaliveSweep
from securechat.crypto.signer import SigningError, as_signer
from securechat.outbound import EndOfTurn, OutboundQueue
from securechat.signing import DEFAULT_SIGN_TIMEOUT, ThreadRunner, sign_later
from securechat.writethrough import writer_for
from securechat.wire.messages import Identity, Message, Ping, Pong

#: Room kept in a record for its header and tag (and some slack), when
#: batching queued messages up to the frame maximum.
RECORD_ROOM = 64


class _Ended:
    """
    The delegate of a protocol whose connection is lost (L{SecureChatProtocol}
    lets go of its own, which refers back to it): nothing is delegated any
    more.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "<connection ended>"


_ENDED = _Ended()


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
        sign_timeout: float = DEFAULT_SIGN_TIMEOUT,
        sign_runner: ThreadRunner | None = None,
    ) -> None:
        self.config = config
        self.delegate = delegate
        self.clock = clock
        self.handshake_timeout = handshake_timeout
        self.abort_after = abort_after
        self.sign_timeout = sign_timeout
        #: Runs the token's blocking sign call (None: a daemon thread,
        #: L{securechat.signing.in_daemon_thread}).
        self.sign_runner = sign_runner
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
        self._pending_signature: Deferred[bytes] | None = None
        self._producer: Any = None
        #: Writes to the transport (L{writer_for}: at once when it can), set
        #: when the connection is made.
        self._write: Callable[[bytes], None] | None = None
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
        self._write = writer_for(self.transport)
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
        if self._pending_signature is not None:
            self._pending_signature.cancel()
        if self.connection.state not in (State.CLOSED, State.FAILED):
            self._end(RemoteProtocolError("connection-closed", "connection lost"))
        else:
            self._end(self.error)
        # The delegate (the relay's session) refers back to us: let go of
        # it, so the pair is freed by reference counting, not left to the
        # garbage collector after every connection.  Nothing here calls the
        # delegate once the connection has ended.
        self.delegate = _ENDED

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

    def sign_later(self, message: bytes) -> Deferred[bytes]:
        """
        Our key's signature of C{message}, at once for a key in memory,
        else from the token in a thread, with C{sign_timeout}
        (L{securechat.signing.sign_later}).  For the delegate, which signs
        end-to-end handshakes, letters, receipts and prekeys with the same key.
        """
        return sign_later(as_signer(self.config.private_key), message, self.clock,
                          self.sign_timeout, self.sign_runner)

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
            elif isinstance(event, SignatureNeeded):
                self._sign(event.content)
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

    def _sign(self, content: bytes) -> None:
        # The token signs in a thread; the handshake waits in WAIT_SIGN.
        d = self._pending_signature = self.sign_later(content)

        def signed(signature: bytes) -> None:
            self._pending_signature = None
            if self.connection.state is State.WAIT_SIGN:
                self._handle(self.connection.signature_ready(signature))

        def failed(failure: Failure) -> None:
            self._pending_signature = None
            if self.connection.state is not State.WAIT_SIGN or failure.check(CancelledError):
                return  # the connection went away meanwhile
            detail = (str(failure.value) if failure.check(SigningError)
                      else "the token failed to sign")
            self._handle(self.connection.signing_failed(detail))

        d.addCallbacks(signed, failed)
        d.addErrback(lambda f: self._log.failure("handling a token signature failed", f))

    def _seal_posted(self, plaintext: bytes) -> None:
        connection = self.connection
        if connection.state is State.ESTABLISHED:
            data = connection.send_inner_now(plaintext)
            if self.transport is not None:
                (self._write or self.transport.write)(data)
        else:
            self.outbound.clear()  # the connection ended: nothing can be sent

    def _flush(self) -> None:
        data = self.connection.data_to_send()
        if data and self.transport is not None:
            (self._write or self.transport.write)(data)

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


#: The delegate interfaces, the queue and the keepalive timer, which lived
#: here before, stay importable from here.
__all__ = [
    "EndOfTurn", "IRawMessageDelegate", "ISessionDelegate", "KEEPALIVE_CHECKS", "KeepaliveSweep",
    "OutboundQueue", "PeerRejected", "ProtocolFactory", "RECORD_ROOM", "SecureChatProtocol",
]
