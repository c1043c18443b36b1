"""
State-machine and record rules of L{securechat.crypto.handshake} that
mutation testing found unguarded (tests/MUTATION.rst): each test names the
rule of docs/protocol.rst it holds, asserts the specific error code, and
checks the boundary on both sides where there is one.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from twisted.trial import unittest

from securechat.crypto.config import END_TO_END, MAX_KEEPALIVE_RUN, Config, Role
from securechat.crypto.events import (
    ConnectionClosed,
    ConnectionFailed,
    HandshakeComplete,
    MessageReceived,
    PeerIdentityReceived,
)
from securechat.crypto.handshake import Connection, State
from securechat.crypto.records import RecordOpener, RecordSealer
from securechat.errors import Alert as AlertCode
from securechat.errors import LocalProtocolError, RemoteProtocolError
from securechat.wire.e2e import E2E_MESSAGES, Text
from securechat.wire.framing import encode_frame
from securechat.wire.messages import (
    Alert,
    Hello,
    HelloReply,
    Ping,
    Pong,
    UserIdentity,
    encode_frame_message,
    encode_inner,
    parse_frame,
)
from tests.relay_harness import user_key
from tests.support import failure, run

ALICE, BOB = user_key("alice"), user_key("bob")


def _alice(**kw):  # type: ignore[no-untyped-def]
    return Connection(Config(END_TO_END, Role.INITIATOR, ALICE, UserIdentity("alice"), **kw))


def _bob(**kw):  # type: ignore[no-untyped-def]
    return Connection(Config(END_TO_END, Role.RESPONDER, BOB, UserIdentity("bob"), **kw))


def _known(identity):  # type: ignore[no-untyped-def]
    return {"alice": ALICE, "bob": BOB}[identity.name].public_key()


def _established(**kw):  # type: ignore[no-untyped-def]
    a, b = _alice(**kw), _bob(**kw)
    ea, eb = run(a, b, _known, _known)
    assert isinstance(eb[-1], HandshakeComplete), eb
    return a, b


def _first_frame_length(data: bytes) -> int:
    return 4 + int.from_bytes(data[:4], "big")


class HandshakeRecordTests(unittest.TestCase):
    """
    Section 5.1, "Both, on the peer's AUTH record".
    """

    def _reply_and_record(self, transform: Callable[[bytes], bytes],
                          counter: int = 0) -> tuple[Connection, bytes]:
        """
        alice after her HELLO, and bob's real HELLO_REPLY followed by a
        handshake record sealed under bob's real handshake key (at
        C{counter}) holding C{transform} of bob's real AUTH plaintext.
        """
        a, b = _alice(), _bob()
        a.initiate()
        b.receive_data(a.data_to_send())
        out = b.data_to_send()
        assert b._hs_send is not None and b.suite is not None
        reply_length = _first_frame_length(out)
        auth = RecordOpener(b.suite, b._hs_send, 1).open(out[reply_length:])
        sealer = RecordSealer(b.suite, b._hs_send, 1)
        sealer.counter = counter
        return a, out[:reply_length] + sealer.seal(transform(auth))

    def test_handshakeRecordHoldsExactlyOneAuth(self) -> None:
        """
        The handshake record must hold exactly one inner message, of type
        AUTH: a record holding a PING instead, or the real AUTH followed by
        a PING, fails with C{unexpected-message} (the control: the real
        AUTH alone is accepted).
        """
        ping = encode_inner([Ping(b"")])
        for transform, expected in ((lambda auth: ping, "unexpected-message"),
                                    (lambda auth: auth + ping, "unexpected-message"),
                                    # the real AUTH body under inner type 0x02
                                    (lambda auth: b"\x02" + auth[1:], "unexpected-message"),
                                    (lambda auth: auth, None)):
            a, data = self._reply_and_record(transform)
            events = a.receive_data(data)
            self.assertEqual(failure(events), expected)
            if expected is None:
                self.assertIsInstance(events[-1], PeerIdentityReceived)

    def test_handshakeRecordCounterChecked(self) -> None:
        """
        Section 6 applies to the handshake record too: counter 1 is
        C{record-gap} (checked before decryption, not reported as
        C{bad-handshake-record}), and a record cut below header and tag is
        C{truncated}.
        """
        a, data = self._reply_and_record(lambda auth: auth, counter=1)
        self.assertEqual(failure(a.receive_data(data)), "record-gap")
        a, data = self._reply_and_record(lambda auth: auth)
        reply_length = _first_frame_length(data)
        short = data[:reply_length] + encode_frame(0x17, bytes(8 + 15))
        self.assertEqual(failure(a.receive_data(short)), "truncated")


class HelloCheckTests(unittest.TestCase):
    """
    Section 5.1, responder step 1, both ways round.
    """

    def test_helloVersionZero(self) -> None:
        """
        A HELLO of version 0 (below 1) is C{unsupported-version} too.
        """
        hello = Hello(0, END_TO_END, b"n" * 32, b"\x09" + bytes(31), (1,))
        self.assertEqual(failure(_bob().receive_data(encode_frame_message(hello))),
                         "unsupported-version")

    def test_clientServerHelloToEndToEndResponder(self) -> None:
        """
        A client-server HELLO (context 1) sent to an end-to-end responder
        (context 2) is C{wrong-context}, as is the reverse.
        """
        from securechat.crypto.handshake import CLIENT_SERVER
        for hello_context, responder_context in ((CLIENT_SERVER, END_TO_END),
                                                 (END_TO_END, CLIENT_SERVER)):
            hello = Hello(1, hello_context, b"n" * 32, b"\x09" + bytes(31), (1,))
            b = Connection(Config(responder_context, Role.RESPONDER, BOB, UserIdentity("bob")))
            self.assertEqual(failure(b.receive_data(encode_frame_message(hello))), "wrong-context")


class ReleaseTests(unittest.TestCase):
    """
    A quiet connection drops its AEAD contexts (securechat.crypto.records).
    """

    def test_releaseContexts(self) -> None:
        """
        C{release_contexts} makes both warm directions cold, keeps the
        connection working, and is harmless before the handshake.
        """
        _alice().release_contexts()
        a, b = _established(rekey_interval=2**20)  # no per-record ratchet dropping them
        for i in range(5):
            a.send(Ping(b"%d" % i))
            b.receive_data(a.data_to_send())
            a.receive_data(b.data_to_send())
        assert a._sealer is not None and a._opener is not None
        self.assertEqual((a._sealer.warm, a._opener.warm), (True, True))
        a.release_contexts()
        self.assertEqual((a._sealer.warm, a._opener.warm), (False, False))
        a.send(Ping(b"after"))
        b.receive_data(a.data_to_send())
        self.assertEqual(a.receive_data(b.data_to_send()), [MessageReceived(Pong(b"after"))])
        self.assertEqual(a.state, State.ESTABLISHED)


class EstablishedFrameTests(unittest.TestCase):
    """
    Section 3 and 5.4: what an established connection accepts in the clear.
    """

    def test_helloAfterEstablished(self) -> None:
        """
        A HELLO or HELLO_REPLY reaching an established initiator (even
        before the responder's first application record, while a clear
        ALERT is still allowed) is C{unexpected-message}: no second
        handshake.
        """
        hello = encode_frame_message(Hello(1, END_TO_END, b"n" * 32, b"\x09" + bytes(31), (1,)))
        reply = encode_frame_message(HelloReply(1, b"n" * 32, b"\x09" + bytes(31), 1))
        for frame in (hello, reply):
            a, b = _established()
            self.assertEqual(failure(a.receive_data(frame)), "unexpected-message")

    def test_unknownFrameTypeWhenEstablished(self) -> None:
        """
        Frame types above RECORD (0x18, 0xFF) are C{unknown-type} in the
        established state too, not taken for records.
        """
        for ftype in (0x18, 0xFF):
            a, b = _established()
            self.assertEqual(failure(b.receive_data(encode_frame(ftype, bytes(40)))),
                             "unknown-type", ftype)

    def test_lowInnerTypes(self) -> None:
        """
        Inner types 0x00, 0x01 and 0x02 (below AUTH, never defined) in an
        application record are C{unknown-type}.
        """
        for code in (0x00, 0x01, 0x02):
            a, b = _established()
            a.send_inner(bytes([code]) + bytes(4))
            self.assertEqual(failure(b.receive_data(a.data_to_send())), "unknown-type", code)


class HeldInputTests(unittest.TestCase):
    """
    Input held while the peer's identity is checked is bounded (section 8,
    C{limit-exceeded}); the default bound is two maximum frames.
    """

    def _waiting(self, **kw):  # type: ignore[no-untyped-def]
        a, b = _alice(), _bob(**kw)
        a.initiate()
        b.receive_data(a.data_to_send())
        a.receive_data(b.data_to_send())
        a.accept_peer(BOB.public_key())
        b.receive_data(a.data_to_send())
        self.assertEqual(b.state, State.WAIT_VERIFY)
        return b

    def test_heldInputBoundary(self) -> None:
        """
        Exactly C{max_held} bytes held are fine; one more is
        C{limit-exceeded}; the default C{max_held} is 131072.
        """
        self.assertEqual(Config(END_TO_END, Role.RESPONDER, BOB, UserIdentity("bob")).max_held,
                         2 * 65536)
        for max_held in (100, None):
            b = self._waiting(**({"max_held": max_held} if max_held else {}))
            limit = max_held or 2 * 65536
            self.assertEqual(b.receive_data(b"\x00"), [])
            self.assertEqual(b.receive_data(b"\x00" * (limit - 1)), [])
            self.assertEqual(b.state, State.WAIT_VERIFY)
            self.assertEqual(failure(b.receive_data(b"\x00")), "limit-exceeded")


class CloseAndAlertTests(unittest.TestCase):
    """
    Section 8.3: how a connection ends and what its alert says.
    """

    def test_closeStates(self) -> None:
        """
        C{close()} (CLOSE_NOTIFY) ends in CLOSED; closing with another code
        (TIMEOUT) ends in FAILED.
        """
        a, b = _established()
        a.close()
        self.assertEqual(a.state, State.CLOSED)
        a, b = _established()
        a.close(AlertCode.TIMEOUT, "gave up")
        self.assertEqual(a.state, State.FAILED)

    def test_closeAtCounterLimit(self) -> None:
        """
        A connection whose send counter is exhausted still closes (and
        fails) cleanly: the alert that can no longer be sealed is dropped,
        never sent under a reused nonce, and nothing is raised.
        """
        from securechat.crypto.records import COUNTER_LIMIT
        a, b = _established()
        assert a._sealer is not None
        a._sealer.counter = COUNTER_LIMIT
        a.close()
        self.assertEqual((a.state, a.data_to_send()), (State.CLOSED, b""))
        a, b = _established()
        assert b._sealer is not None
        b._sealer.counter = COUNTER_LIMIT
        a.send(Ping(b"x"))
        # b cannot seal the PONG: it fails with record-limit, sends nothing
        self.assertEqual(failure(b.receive_data(a.data_to_send())), "record-limit")
        self.assertEqual((b.state, b.data_to_send()), (State.FAILED, b""))

    def test_alertReasons(self) -> None:
        """
        Only HANDSHAKE_FAILED goes with an empty reason (uniform
        authentication failures); other alerts carry the detail: BAD_RECORD
        for a replayed record (sealed, established) and UNEXPECTED_MESSAGE
        for a HELLO_REPLY sent to a responder (in the clear).
        """
        a, b = _established()
        a.send(Ping(b"1"))
        record = a.data_to_send()
        b.receive_data(record)
        a.receive_data(b.data_to_send())  # the PONG
        self.assertEqual(failure(b.receive_data(record)), "record-replayed")
        [alert] = [e for e in a.receive_data(b.data_to_send()) if isinstance(e, ConnectionFailed)]
        self.assertEqual(alert.error.peer_alert, AlertCode.BAD_RECORD)  # type: ignore[attr-defined]
        self.assertIn("record counter 0, expected 1", alert.error.detail)

        b = _bob()
        reply = encode_frame_message(HelloReply(1, b"n" * 32, bytes(32), 1))
        self.assertEqual(failure(b.receive_data(reply)), "unexpected-message")
        self.assertEqual(parse_frame(b.data_to_send(), Alert),
                         Alert(AlertCode.UNEXPECTED_MESSAGE, "frame type 0x02 in state WAIT_HELLO"))

        a = _alice()
        b = Connection(Config(END_TO_END, Role.RESPONDER, user_key("mallory"), UserIdentity("bob")))
        a.initiate()
        b.receive_data(a.data_to_send())
        events = a.receive_data(b.data_to_send())
        self.assertIsInstance(events[-1], PeerIdentityReceived)
        self.assertEqual(failure(a.accept_peer(BOB.public_key())), "bad-signature")
        self.assertEqual(parse_frame(a.data_to_send(), Alert), Alert(AlertCode.HANDSHAKE_FAILED, ""))


class SendStateTests(unittest.TestCase):
    """
    Sending application data before the connection is established is our
    own mistake (L{LocalProtocolError}), even when a handshake key exists.
    """

    def test_sendBeforeEstablished(self) -> None:
        """
        At START and in WAIT_AUTH (the responder holds its handshake sealer
        then), C{send} and C{send_inner} raise C{unexpected-message} and
        nothing is queued.
        """
        a = _alice()
        b = _bob()
        a.initiate()
        b.receive_data(a.data_to_send())
        b.data_to_send()
        self.assertEqual(b.state, State.WAIT_AUTH)
        for conn in (_alice(), b):
            for call in (lambda: conn.send(Ping(b"x")), lambda: conn.send_inner(bytes(5))):
                e = self.assertRaises(LocalProtocolError, call)
                self.assertEqual(e.code, "unexpected-message")
            self.assertEqual(conn.data_to_send(), b"")


class KeepaliveBoundaryTests(unittest.TestCase):
    """
    Section 4.4: 32 keepalive-only records in a row are tolerated, the 33rd
    is C{limit-exceeded}; the count restarts at any other message and when
    the limited side sends its own PING.
    """

    def _limited(self):  # type: ignore[no-untyped-def]
        # The relay's setting (Relay.config passes MAX_KEEPALIVE_RUN).
        self.assertEqual(MAX_KEEPALIVE_RUN, 32)
        a = _alice(registry=E2E_MESSAGES)
        b = _bob(registry=E2E_MESSAGES, max_keepalive_run=MAX_KEEPALIVE_RUN)
        run(a, b, _known, _known)
        return a, b

    def _pings(self, a: Connection, b: Connection, n: int) -> str | None:
        for _ in range(n):
            a.send(Ping(b""))
            code = failure(b.receive_data(a.data_to_send()))
            if code is not None:
                return code
        return None

    def test_countRestartsAtApplicationMessage(self) -> None:
        """
        After 20 PINGs and a chat line, exactly 32 more keepalive records
        are fine and the 33rd is refused.
        """
        a, b = self._limited()
        self.assertIsNone(self._pings(a, b, 20))
        a.send(Text(0, "line"))
        self.assertEqual(b.receive_data(a.data_to_send()), [MessageReceived(Text(0, "line"))])
        self.assertIsNone(self._pings(a, b, 32))
        self.assertEqual(self._pings(a, b, 1), "limit-exceeded")

    def test_countRestartsAtOwnPing(self) -> None:
        """
        After 20 PINGs, the limited side sending its own PING restarts the
        count: exactly 32 more are fine, the 33rd is refused.
        """
        a, b = self._limited()
        self.assertIsNone(self._pings(a, b, 20))
        b.send(Ping(b"mine"))
        a.receive_data(b.data_to_send())
        self.assertIsNone(failure(b.receive_data(a.data_to_send())))  # the PONG: 1
        self.assertIsNone(self._pings(a, b, 31))
        self.assertEqual(self._pings(a, b, 1), "limit-exceeded")


class EventValueTests(unittest.TestCase):
    """
    Events are frozen values.
    """

    def test_eventsFrozen(self) -> None:
        """
        An event handed to the application cannot be altered in place.
        """
        from securechat.crypto.suites import AES_256_GCM
        events = [PeerIdentityReceived(UserIdentity("bob")),
                  HandshakeComplete(UserIdentity("bob"), AES_256_GCM),
                  MessageReceived(Ping(b"")),
                  ConnectionFailed(RemoteProtocolError("bad-signature")),
                  Config(END_TO_END, Role.INITIATOR, ALICE, UserIdentity("alice"))]
        for event in events:
            field = dataclasses.fields(event)[0].name
            self.assertRaises(dataclasses.FrozenInstanceError, setattr, event, field, None)
        self.assertRaises(dataclasses.FrozenInstanceError, setattr, ConnectionClosed(), "x", 1)
