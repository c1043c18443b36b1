# -*- test-case-name: tests.test_handshake -*-
"""
The signed ephemeral Diffie-Hellman handshake and the connection it opens,
as a sans-IO state machine: bytes in, events out; L{Connection.data_to_send}
gives the bytes to write.  No sockets, no clocks, no Twisted.

Its parts live beside it: L{securechat.crypto.config} (contexts, roles,
L{Config}), L{securechat.crypto.events} (what it reports, its states),
L{securechat.crypto.keyshare} (the ephemeral X25519 share),
L{securechat.crypto.hellostep} (the HELLO step and the handshake keys),
L{securechat.crypto.authstep} (the AUTH step and the key-schedule steps
around it), L{securechat.crypto.signstep} (the signing step, WAIT_SIGN),
L{securechat.crypto.alerts} (alerts received and sent),
L{securechat.crypto.peerauth} (the peer's AUTH received and its signature
checked), L{securechat.crypto.peerproof} (what that AUTH must prove) and
L{securechat.crypto.schedule} (the key schedule).  The names of the
handshake's public API stay importable from here.

The same machine serves both contexts of docs/protocol.rst:

  - C{CLIENT_SERVER}: a client (initiator) and the relay (responder); the
    relay proves itself with a certificate chain and stapled CRL, the client
    with its registered user key.
  - C{END_TO_END}: two clients through the relay; both prove themselves with
    their user keys.

Flow (SIGMA-I; the initiator's identity travels encrypted)::

    initiator                                   responder
    HELLO(nonce, key share, suite offer)  -->
                                          <--   HELLO_REPLY(nonce, key share, suite)
                                          <--   {AUTH(identity, signature, finished)}hs_r
    {AUTH(identity, signature, finished)}hs_i -->
    {application records}ap_i             <->   {application records}ap_r

States, what each accepts and WAIT_SIGN: L{securechat.crypto.events.State}
(the one transition table is L{_ACCEPTS}).

Anything else in a state is C{unexpected-message}, except that a plaintext
ALERT where we hold keys (WAIT_AUTH, WAIT_VERIFY, WAIT_SIGN, ESTABLISHED) is
C{unauthenticated-alert}: anyone on the path could have written it, so it
is reported as the connection being interrupted, never believed.  Our own
alerts go sealed whenever the peer can open them
(L{securechat.crypto.alerts.alert_sealer}).
Once FAILED, the connection stays failed.
"""

from __future__ import annotations

import functools
import hashlib

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from securechat.crypto import alerts, hellostep, keys, peerauth, signstep
from securechat.crypto.authstep import application_secret
from securechat.crypto.config import CLIENT_SERVER, END_TO_END, REKEY_INTERVAL, Config, Role
from securechat.crypto.events import (
    ConnectionClosed,
    ConnectionFailed,
    Event,
    HandshakeComplete,
    MessageReceived,
    PeerIdentityReceived,
    RawMessages,
    SignatureNeeded,
    State,
)
from securechat.crypto.records import RecordOpener, RecordSealer
from securechat.crypto.suites import Suite
from securechat.errors import (
    Alert as AlertCode,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    UnauthenticatedAlert,
)
from securechat.wire.framing import FrameDecoder
from securechat.wire.messages import (
    ALERT,
    AUTH,
    HELLO,
    HELLO_REPLY,
    PING,
    PONG,
    RECORD,
    CORE_MESSAGES,
    Alert,
    Auth,
    Identity,
    Message,
    Pong,
    Registry,
    encode_inner,
    parse_frame,
    split_inner,
)


#: The transition table: which frame types each state accepts.
_ACCEPTS: dict[State, frozenset[int]] = {
    State.START: frozenset(),
    State.WAIT_HELLO: frozenset({HELLO, ALERT}),
    State.WAIT_REPLY: frozenset({HELLO_REPLY, ALERT}),
    State.WAIT_AUTH: frozenset({RECORD}),
    State.WAIT_VERIFY: frozenset(),
    State.WAIT_SIGN: frozenset(),
    State.ESTABLISHED: frozenset({RECORD}),
    State.CLOSED: frozenset(),
    State.FAILED: frozenset(),
}

_FRAME_TYPES = frozenset({HELLO, HELLO_REPLY, ALERT, RECORD})
#: States in which we hold keys for the peer's records: a plaintext ALERT
#: frame there is C{unauthenticated-alert}, never believed.
#: (These state groups are tuples, not sets: a set lookup hashes the State
#: with Enum.__hash__, a Python-level call, on every record.)
_KEYED = (State.WAIT_AUTH, State.WAIT_VERIFY, State.WAIT_SIGN, State.ESTABLISHED)
#: States in which input is held back until the application answers.
_HOLDING = (State.WAIT_VERIFY, State.WAIT_SIGN)
_STOPPED = _HOLDING + (State.CLOSED, State.FAILED)
_KEEPALIVE = frozenset({PING, PONG})


@functools.lru_cache(maxsize=64)
def _with_core(registry: Registry) -> Registry:
    """
    C{registry} with the core messages added (once per registry, not per
    connection).
    """
    return CORE_MESSAGES.extend(registry.classes())


class Connection:
    """
    One side of one connection, in either role and either context.
    """

    __slots__ = ("config", "state", "suite", "peer_identity", "peer_key", "error", "_decoder",
                 "_registry", "_interval", "_out", "_transcript", "_ephemeral", "_key_share",
                 "_hs_secret", "_hs_send", "_hs_recv", "_pending_auth", "_sealer", "_opener",
                 "_keepalive_run", "_raw_types", "_pending_sign", "_pending_peer", "_pending_raw",
                 "is_initiator")

    def __init__(self, config: Config) -> None:
        self.config = config
        #: Whether we are the initiator (the config's role).
        self.is_initiator = initiator = config.role is Role.INITIATOR
        self.state = State.START if initiator else State.WAIT_HELLO
        self.suite: Suite | None = None
        self.peer_identity: Identity | None = None
        self.peer_key: keys.PublicKey | None = None
        self.error: ProtocolError | None = None
        self._decoder = FrameDecoder(config.max_handshake_frame)
        self._registry = _with_core(config.registry)
        self._interval = config.rekey_interval or REKEY_INTERVAL[config.context]
        self._out: list[bytes] = []
        #: SHA-256 over the transcript so far (docs/protocol.rst, "Transcript");
        #: None once established.
        self._transcript: hashlib._Hash | None = hashlib.sha256()
        self._ephemeral: X25519PrivateKey | None = None
        self._key_share = b""
        self._hs_secret: bytes | None = None
        self._hs_send: bytes | None = None
        self._hs_recv: bytes | None = None
        self._pending_auth: Auth | None = None
        #: With L{_pending_auth}: its identity, signature field and body as received.
        self._pending_raw: tuple[bytes, bytes, bytes] | None = None
        self._sealer: RecordSealer | None = None
        self._opener: RecordOpener | None = None
        self._keepalive_run = 0
        self._raw_types = config.raw_types
        #: In WAIT_SIGN: the scheme and the bytes the external key signs.
        self._pending_sign: tuple[int, bytes] | None = None
        #: In WAIT_SIGN, initiator: the verified peer's key and identity.
        self._pending_peer: tuple[keys.PublicKey, Identity] | None = None

    # -- public API ---------------------------------------------------------

    def initiate(self) -> None:
        """
        Initiator only: queue the HELLO.
        """
        if self.state is not State.START:
            raise LocalProtocolError("unexpected-message", "initiate() called twice or by a responder")
        hellostep.send_hello(self)

    def receive_data(self, data: bytes) -> list[Event]:
        """
        Feed received bytes; return what happened.  Data arriving after the
        connection closed or failed is ignored.
        """
        state = self.state
        if state is State.ESTABLISHED:
            if self._decoder.sole_frame(data) and data[4] == RECORD:
                # The usual read of an established connection: one whole
                # record, nothing held.  Straight to the record layer, as
                # _process would take it (the same checks, in the same
                # order; tests.test_fastpath runs both on the same records).
                events: list[Event] = []
                try:
                    self._handle_application_record(data, events)
                except ProtocolError as e:
                    events.append(self._fail(e))
                return events
            self._decoder.feed(data)
            return self._process()
        if state in (State.FAILED, State.CLOSED):
            return []
        if (state is State.WAIT_HELLO or state is State.WAIT_AUTH) and self._decoder.sole_frame(data):
            # The handshake's usual read, one whole frame, nothing held: as
            # _process would take it (tests.test_handshake_fastpath).
            events = []
            try:
                self._handle_frame(data, events)
            except ProtocolError as e:
                events.append(self._fail(e))
            return events
        self._decoder.feed(data)
        if state in _HOLDING:
            if self._decoder.buffered > self.config.max_held:
                doing = ("our signature is made" if self.state is State.WAIT_SIGN
                         else "the peer identity is checked")
                return [self._fail(RemoteProtocolError(
                    "limit-exceeded", f"too much data while {doing}"))]
            return []
        return self._process()

    def accept_peer(self, public_key: keys.PublicKey) -> list[Event]:
        """
        The identity from L{PeerIdentityReceived} belongs to C{public_key}:
        check the peer's signature, finish the handshake, and process any
        input held back meanwhile.
        """
        auth, raw = self._pending_auth, self._pending_raw
        if self.state is not State.WAIT_VERIFY or auth is None or raw is None:
            raise LocalProtocolError("unexpected-message", "no peer identity awaits a decision")
        events: list[Event] = []
        try:
            peerauth.check_peer_signature(self, public_key)
            self._pending_auth = self._pending_raw = None
            self._absorb(raw[2])
            if self.is_initiator and not signstep.send_auth(self, events):
                self._pending_peer = (public_key, auth.identity)
                return events  # WAIT_SIGN: signature_ready() goes on
            self._enter_established(public_key, auth.identity, events)
        except ProtocolError as e:
            events.append(self._fail(e))
            return events
        if self._decoder.buffered:  # input held back meanwhile
            events.extend(self._process())
        return events

    def reject_peer(self, code: str, detail: str | None = None) -> list[Event]:
        """
        The identity from L{PeerIdentityReceived} is not trusted: fail with
        C{code} (for example C{unknown-user}, C{revoked-user},
        C{bad-certificate}).
        """
        if self.state is not State.WAIT_VERIFY or self._pending_auth is None:
            raise LocalProtocolError("unexpected-message", "no peer identity awaits a decision")
        # The refusal does the work a failed signature check does: the
        # signature is verified, against a stand-in key of its own shape, so
        # an unknown or revoked name is not refused any sooner than a
        # registered one with a bad signature (docs/protocol.rst, 5.1).
        peerauth.check_peer_signature(self, None)
        return [self._fail(RemoteProtocolError(code, detail))]

    def signature_ready(self, signature: bytes) -> list[Event]:
        """
        The external key signed what L{SignatureNeeded} asked for: check the
        signature against the key's public half, send our AUTH, and go on
        where the handshake stopped (the initiator is then established; the
        responder waits for the initiator's AUTH), processing input held
        back meanwhile.  A signature that does not verify is
        C{signing-failed}.
        """
        return signstep.signature_ready(self, signature)

    def signing_failed(self, detail: str) -> list[Event]:
        """
        The external key could not sign (C{detail} says why, in one line):
        fail with C{signing-failed}.
        """
        return signstep.signing_failed(self, detail)

    def send(self, *messages: Message) -> None:
        """
        Seal C{messages} into one record (several messages share its AEAD
        and framing cost).
        """
        if self.state is not State.ESTABLISHED or self._sealer is None:
            raise LocalProtocolError("unexpected-message", f"cannot send in state {self.state.value}")
        if not messages:
            raise LocalProtocolError("empty-record", "send() needs at least one message")
        if any(m.TYPE == PING for m in messages):
            self._keepalive_run = 0  # the PONGs that answer our own PING never add up
        self._sealer.seal_into(encode_inner(messages), self._out)

    def send_inner(self, plaintext: bytes) -> None:
        """
        Seal C{plaintext}, one or more inner messages already encoded (type,
        length, body each), into one record.  The caller vouches for the
        encoding; a PING must go through L{send}.
        """
        if self.state is not State.ESTABLISHED or self._sealer is None:
            raise LocalProtocolError("unexpected-message", f"cannot send in state {self.state.value}")
        if not plaintext:
            raise LocalProtocolError("empty-record", "send_inner() needs at least one message")
        self._sealer.seal_into(plaintext, self._out)

    def send_inner_now(self, plaintext: bytes) -> bytes:
        """
        L{send_inner}, then L{data_to_send}, in one call: the bytes to write
        now, this record last (the relay's outbound queues seal a record per
        reactor turn this way).
        """
        self.send_inner(plaintext)
        out = self._out
        data = b"".join(out)
        out.clear()
        return data

    def release_contexts(self) -> None:
        """
        The connection went quiet: drop both directions' AEAD contexts (see
        L{securechat.crypto.records}); they come back when it is busy again.
        """
        for direction in (self._sealer, self._opener):
            if direction is not None:
                direction.release()

    def fail(self, error: ProtocolError) -> list[Event]:
        """
        The application found C{error} in a message it was handed undecoded
        (L{RawMessages}): fail exactly as if the connection had found it.
        """
        if self.state in (State.FAILED, State.CLOSED):
            return []
        return [self._fail(error)]

    def close(self, code: int = AlertCode.CLOSE_NOTIFY, reason: str = "") -> None:
        """
        Queue an alert and stop: CLOSE_NOTIFY for a clean end, or another
        code (for example TIMEOUT) when the application gives up.
        """
        if self.state in (State.FAILED, State.CLOSED):
            return
        alerts.queue_alert(self, code, reason)
        self.state = State.CLOSED if code == AlertCode.CLOSE_NOTIFY else State.FAILED

    def data_to_send(self) -> bytes:
        """
        Everything queued for the peer since the last call.
        """
        if not self._out:
            return b""
        out = b"".join(self._out)
        self._out.clear()
        return out

    # -- input processing ---------------------------------------------------

    def _process(self) -> list[Event]:
        events: list[Event] = []
        try:
            while self.state not in _STOPPED:
                frame = self._decoder.next_frame()
                if frame is None:
                    break
                self._handle_frame(frame, events)
        except ProtocolError as e:
            events.append(self._fail(e))
        return events

    def _handle_frame(self, frame: bytes, events: list[Event]) -> None:
        ftype = frame[4]
        state = self.state
        # The frame each state expects first, straight to its step, as below.
        if ftype == RECORD:
            if state is State.ESTABLISHED:
                self._handle_application_record(frame, events)
                return
            if state is State.WAIT_AUTH:
                peerauth.receive_auth(self, frame, events)
                return
        elif ftype == HELLO and state is State.WAIT_HELLO:
            hellostep.handle_hello(self, frame, events)
            return
        if ftype not in _FRAME_TYPES:
            raise RemoteProtocolError("unknown-type", f"unknown frame type 0x{ftype:02x}")
        if ftype == ALERT and self.state in _KEYED:
            # Anyone on the path can write a plaintext alert: once we have
            # keys, one is not believed (docs/protocol.rst, 8.3).
            raise UnauthenticatedAlert(parse_frame(frame, Alert).code)
        if ftype not in _ACCEPTS[self.state]:
            raise RemoteProtocolError(
                "unexpected-message", f"frame type 0x{ftype:02x} in state {self.state.value}"
            )
        if ftype == RECORD:  # in WAIT_AUTH: application records took the fast path above
            peerauth.receive_auth(self, frame, events)
        elif ftype == ALERT:
            alerts.handle_alert(self, parse_frame(frame, Alert), events)
        elif ftype == HELLO:
            hellostep.handle_hello(self, frame, events)
        else:
            hellostep.handle_reply(self, frame)

    def _handle_application_record(self, frame: bytes, events: list[Event]) -> None:
        assert self._opener is not None
        plaintext = self._opener.open(frame)
        items = split_inner(memoryview(plaintext))
        limit = self.config.max_keepalive_run
        if limit is not None and items[0][0] in _KEEPALIVE and all(
                code in _KEEPALIVE for code, _ in items):
            self._keepalive_run += 1
            if self._keepalive_run > limit:
                raise RemoteProtocolError(
                    "limit-exceeded", f"more than {limit} keepalive-only records in a row")
        else:
            self._keepalive_run = 0
        raw_types = self._raw_types
        run: list[tuple[int, memoryview]] = []
        for item in items:
            code = item[0]
            if code in raw_types:
                if not run or run[0][0] != code:  # a run holds one type, handled whole
                    run = []
                    events.append(RawMessages(run))
                run.append(item)
                continue
            run = []
            if code == AUTH:
                raise RemoteProtocolError("unexpected-message", "AUTH after the handshake")
            message = self._registry.parse(code, bytes(item[1]))
            if isinstance(message, Alert):
                alerts.handle_alert(self, message, events)
                return
            if message.TYPE == PING:
                self.send(Pong(message.data))  # type: ignore[attr-defined]
                continue
            events.append(MessageReceived(message))

    # -- transcript ---------------------------------------------------------

    def _absorb(self, data: bytes) -> None:
        assert self._transcript is not None
        self._transcript.update(data)

    def _transcript_hash(self, *more: bytes) -> bytes:
        """
        SHA-256 of the transcript so far followed by C{more} (which is not
        added to it).
        """
        assert self._transcript is not None
        h = self._transcript.copy()
        for part in more:
            h.update(part)
        return h.digest()

    # -- establishing -------------------------------------------------------

    def _enter_established(
        self, public_key: keys.PublicKey, identity: Identity, events: list[Event]
    ) -> None:
        assert self.suite is not None and self._hs_secret is not None
        th = self._transcript_hash()
        ap_i = application_secret(self._hs_secret, th, initiator=True)
        ap_r = application_secret(self._hs_secret, th, initiator=False)
        send, recv = (ap_i, ap_r) if self.is_initiator else (ap_r, ap_i)
        self._sealer = RecordSealer(self.suite, send, self._interval)
        self._opener = RecordOpener(self.suite, recv, self._interval)
        self._hs_secret = self._hs_send = self._hs_recv = None
        self._transcript = None
        self._key_share = b""
        self.peer_identity = identity
        self.peer_key = public_key
        self.state = State.ESTABLISHED
        self._decoder.max_length = self.config.max_frame
        events.append(HandshakeComplete(identity, self.suite))

    # -- failure ------------------------------------------------------------

    def _fail(self, error: ProtocolError) -> ConnectionFailed:
        self.error = error
        alerts.answer_failure(self, error)
        self.state = State.FAILED
        self._pending_auth = self._pending_raw = None
        self._pending_sign = self._pending_peer = None
        self._hs_secret = self._hs_send = self._hs_recv = None
        self._ephemeral = None
        return ConnectionFailed(error)


__all__ = [
    "CLIENT_SERVER", "END_TO_END", "Config", "Connection", "ConnectionClosed",
    "ConnectionFailed", "Event", "HandshakeComplete", "MessageReceived",
    "PeerIdentityReceived", "RawMessages", "Role", "SignatureNeeded", "State",
]
