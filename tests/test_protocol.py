"""
Tests for L{securechat.protocol.SecureChatProtocol}, the Twisted adapter
shared by relay and client: asynchronous identity checks, deadlines,
aborts, keepalive, and the delegate's lifecycle.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial import unittest
from zope.interface import implementer

from securechat.crypto.config import END_TO_END, Config, Role
from securechat.crypto.handshake import State
from securechat.errors import Alert
from securechat.delegate import ISessionDelegate, PeerRejected
from securechat.keepalive import KeepaliveSweep
from securechat.protocol import SecureChatProtocol
from securechat.wire.messages import Identity, Message, Ping, UserIdentity

A = ed25519.Ed25519PrivateKey.from_private_bytes(b"\x0a" * 32)
B = ed25519.Ed25519PrivateKey.from_private_bytes(b"\x0b" * 32)


@implementer(ISessionDelegate)
class Delegate:
    protocol: SecureChatProtocol

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.asked: list[Identity] = []
        self.established_with: list[Identity] = []
        self.messages: list[Message] = []
        self.ended: list[Any] = []

    def verify_peer(self, identity: Identity) -> Any:
        self.asked.append(identity)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def established(self, peer: Identity) -> None:
        self.established_with.append(peer)

    def message_received(self, message: Message) -> None:
        self.messages.append(message)

    def connection_ended(self, reason: Any) -> None:
        self.ended.append(reason)


def pair(a_answer: Any, b_answer: Any, clock: Clock, rekey_interval: int | None = None,
         **kw: Any):  # type: ignore[no-untyped-def]
    da, db = Delegate(a_answer), Delegate(b_answer)
    pa = SecureChatProtocol(Config(END_TO_END, Role.INITIATOR, A, UserIdentity("alice"),
                                   rekey_interval=rekey_interval), da, clock, **kw)
    pb = SecureChatProtocol(Config(END_TO_END, Role.RESPONDER, B, UserIdentity("bob"),
                                   rekey_interval=rekey_interval), db, clock, **kw)
    ta, tb = StringTransport(), StringTransport()
    pa.makeConnection(ta)
    pb.makeConnection(tb)
    return (pa, da, ta), (pb, db, tb)


def shuttle(*ends) -> None:  # type: ignore[no-untyped-def]
    (pa, _, ta), (pb, _, tb) = ends
    for _ in range(10):
        a_out, b_out = ta.value(), tb.value()
        ta.clear()
        tb.clear()
        if not a_out and not b_out:
            return
        if a_out:
            pb.dataReceived(a_out)
        if b_out:
            pa.dataReceived(b_out)


class AdapterTests(unittest.TestCase):
    """
    The adapter around the sans-IO core.
    """

    def test_asynchronousVerification(self) -> None:
        """
        C{verify_peer} may return a Deferred; input is held until it fires,
        then the handshake completes.
        """
        clock = Clock()
        pending: Deferred[Any] = Deferred()
        a, b = pair(B.public_key(), pending, clock)
        shuttle(a, b)
        self.assertEqual(b[1].asked, [UserIdentity("alice")])
        self.assertEqual(b[1].established_with, [])
        pending.callback(A.public_key())
        shuttle(a, b)
        self.assertEqual(b[1].established_with, [UserIdentity("alice")])

    def test_rejection(self) -> None:
        """
        L{PeerRejected} from C{verify_peer} fails the handshake: the peer
        gets HANDSHAKE_FAILED and the connection closes; the delegate hears
        the specific code.
        """
        clock = Clock()
        a, b = pair(B.public_key(), PeerRejected("unknown-user", "no such user"), clock)
        shuttle(a, b)
        self.assertEqual(b[1].ended[0].code, "unknown-user")
        self.assertTrue(b[2].disconnecting)
        self.assertEqual(a[1].ended[0].peer_alert, Alert.HANDSHAKE_FAILED)

    def test_unexpectedVerifierError(self) -> None:
        """
        A bug in C{verify_peer} is logged and rejects the peer, never
        accepting it.
        """
        clock = Clock()
        a, b = pair(B.public_key(), RuntimeError("directory exploded"), clock)
        shuttle(a, b)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(b[1].ended[0].code, "peer-rejected")
        self.assertEqual(b[1].established_with, [])

    def test_disconnectDuringVerification(self) -> None:
        """
        Losing the connection while an identity check is pending cancels it
        quietly (nothing logged) and ends the session once.
        """
        clock = Clock()
        pending: Deferred[Any] = Deferred()
        a, b = pair(B.public_key(), pending, clock)
        shuttle(a, b)
        b[0].connectionLost()
        self.assertEqual([e.code for e in b[1].ended], ["connection-closed"])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_handshakeDeadlineThenAbort(self) -> None:
        """
        An unfinished handshake is closed with TIMEOUT at the deadline; a
        peer that does not let the connection close is aborted after
        C{abort_after}.
        """
        clock = Clock()
        d = Delegate(A.public_key())
        p = SecureChatProtocol(Config(END_TO_END, Role.RESPONDER, B, UserIdentity("bob")), d, clock,
                               handshake_timeout=10, abort_after=5)
        t = StringTransport()
        p.makeConnection(t)
        clock.advance(9.9)
        self.assertFalse(t.disconnecting)
        clock.advance(0.1)
        self.assertTrue(t.disconnecting)
        self.assertIn(bytes([0x15, Alert.TIMEOUT]), t.value())
        self.assertEqual(d.ended[0].code, "timeout")
        self.assertFalse(t.disconnected)
        clock.advance(5)
        self.assertTrue(t.disconnected)  # StringTransport.abortConnection

    def test_keepaliveAfterEndIsQuiet(self) -> None:
        """
        A keepalive timer due after the session ended does nothing.
        """
        clock = Clock()
        a, b = pair(B.public_key(), A.public_key(), clock, idle_timeout=100)
        shuttle(a, b)
        a[0].terminate("limit-exceeded", "test")
        clock.advance(1000)
        self.assertEqual(a[0].connection.state, State.FAILED)

    def test_keepalivePings(self) -> None:
        """
        With an idle timeout, a quiet session sends a PING at half of it and
        is closed with TIMEOUT when nothing comes back by the full timeout.
        """
        clock = Clock()
        a, b = pair(B.public_key(), A.public_key(), clock, idle_timeout=100)
        shuttle(a, b)
        a[2].clear()
        clock.advance(50)
        self.assertNotEqual(a[2].value(), b"")  # the PING record
        a[2].clear()
        clock.advance(50)
        self.assertEqual(a[1].ended[0].code, "timeout")

    def test_keepalivePingsOncePerQuietSpell(self) -> None:
        """
        A quiet session gets one PING per quiet spell, not one per check;
        traffic starts a new spell, which gets its own.
        """
        clock = Clock()
        a, b = pair(B.public_key(), A.public_key(), clock, idle_timeout=100)
        shuttle(a, b)
        a[2].clear()
        clock.advance(50)
        self.assertNotEqual(a[2].value(), b"")  # the PING
        a[2].clear()
        clock.pump([10] * 4)  # more checks, same quiet spell
        self.assertEqual(a[2].value(), b"")
        b[0].send(Ping(b"back"))
        a[0].dataReceived(b[2].value())
        b[2].clear()
        a[2].clear()  # the PONG
        clock.pump([10] * 5)
        self.assertNotEqual(a[2].value(), b"")  # the new spell's PING
        self.assertEqual(a[0].connection.state, State.ESTABLISHED)

    def test_keepaliveLateByAtMostOneCheck(self) -> None:
        """
        The keepalive checks every tenth of the idle timeout: a session
        established between two checks is PINGed, and given up on, at most
        that much after its timeout says.
        """
        clock = Clock()
        sweep = KeepaliveSweep(clock, 10)
        clock.advance(3)
        a, b = pair(B.public_key(), A.public_key(), clock, idle_timeout=100, keepalive=sweep)
        shuttle(a, b)
        # The sweep started with the first member, at t=3: checks at 13, 23, ...
        a[2].clear()
        clock.advance(49)  # t=52, quiet 49
        self.assertEqual(a[2].value(), b"")
        clock.advance(10)  # t=62: the check at 53 found it quiet for 50
        self.assertNotEqual(a[2].value(), b"")
        clock.advance(41)  # t=103: the check at 103 finds it quiet for 100
        self.assertEqual(a[1].ended[0].code, "timeout")

    def test_oneTimerForManySessions(self) -> None:
        """
        Sessions sharing a L{KeepaliveSweep} share its one delayed call;
        each leaves it when it ends, and the last one stops it.
        """
        clock = Clock()
        sweep = KeepaliveSweep(clock, 10)
        pairs = [pair(B.public_key(), A.public_key(), clock, idle_timeout=100, keepalive=sweep)
                 for _ in range(5)]
        for a, b in pairs:
            shuttle(a, b)
        self.assertEqual(len(sweep), 10)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        for a, b in pairs:
            a[0].close()
            shuttle(a, b)
        self.assertEqual(len(sweep), 0)
        # (each closed session still has its abort-after-close timer)
        self.assertEqual([c for c in clock.getDelayedCalls() if c.func == sweep._sweep], [])

    def test_keepalivePeriodPositive(self) -> None:
        """
        A keepalive period of zero or less is refused.
        """
        for period in (0, -1):
            self.assertRaises(ValueError, KeepaliveSweep, Clock(), period)

    def test_quietSessionReleasesContexts(self) -> None:
        """
        The keepalive check that finds a session quiet drops its AEAD
        contexts (an idle user holds none); the session carries on after.
        """
        clock = Clock()
        a, b = pair(B.public_key(), A.public_key(), clock, rekey_interval=1000, idle_timeout=100)
        shuttle(a, b)
        for i in range(5):
            a[0].send(Ping(b"%d" % i))
            shuttle(a, b)
        conn = a[0].connection
        self.assertEqual((conn._sealer.warm, conn._opener.warm), (True, True))
        clock.advance(50)
        self.assertEqual((conn._sealer.warm, conn._opener.warm), (False, False))
        shuttle(a, b)  # the PING, and the PONG that answers it
        b[0].send(Ping(b"after"))
        shuttle(a, b)
        self.assertEqual(a[0].connection.state, State.ESTABLISHED)
        self.assertEqual(b[0].connection.state, State.ESTABLISHED)

    def test_endedOnce(self) -> None:
        """
        The delegate hears the end exactly once, whatever happens after.
        """
        clock = Clock()
        a, b = pair(B.public_key(), A.public_key(), clock)
        shuttle(a, b)
        a[0].close()
        a[0].close()
        a[0].connectionLost()
        self.assertEqual(a[1].ended, [None])

    def test_failureInSameReadAsHandshake(self) -> None:
        """
        A read that completes the handshake and then fails (the AUTH record
        duplicated) never establishes a session: the delegate hears only the
        failure, and the connection closes.
        """
        clock = Clock()
        a, b = pair(B.public_key(), A.public_key(), clock)
        (pa, _, ta), (pb, db, tb) = a, b
        pb.dataReceived(ta.value())
        ta.clear()
        pa.dataReceived(tb.value())
        tb.clear()
        auth = ta.value()
        pb.dataReceived(auth + auth)
        self.assertEqual(db.established_with, [])
        self.assertEqual([e.code for e in db.ended], ["bad-record-mac"])
        self.assertTrue(tb.disconnecting)

    def test_messagesThenFailureInOneRead(self) -> None:
        """
        Messages that arrive intact before a failure in the same read are
        delivered in order, then the failure ends the session.
        """
        from securechat.wire.e2e import E2E_MESSAGES, Text
        clock = Clock()
        da, db = Delegate(B.public_key()), Delegate(A.public_key())
        pa = SecureChatProtocol(Config(END_TO_END, Role.INITIATOR, A, UserIdentity("alice"),
                                       registry=E2E_MESSAGES), da, clock)
        pb = SecureChatProtocol(Config(END_TO_END, Role.RESPONDER, B, UserIdentity("bob"),
                                       registry=E2E_MESSAGES), db, clock)
        ta, tb = StringTransport(), StringTransport()
        pa.makeConnection(ta)
        pb.makeConnection(tb)
        shuttle((pa, da, ta), (pb, db, tb))
        pa.send(Text(0, "one"))
        record = ta.value()
        ta.clear()
        pb.dataReceived(record + record)
        self.assertEqual(db.messages, [Text(0, "one")])
        self.assertEqual([e.code for e in db.ended], ["record-replayed"])


def e2e_pair(clock: Clock, delegate_b: Any = None):  # type: ignore[no-untyped-def]
    from securechat.wire.e2e import E2E_MESSAGES
    da = Delegate(B.public_key())
    db = delegate_b or Delegate(A.public_key())
    pa = SecureChatProtocol(Config(END_TO_END, Role.INITIATOR, A, UserIdentity("alice"),
                                   registry=E2E_MESSAGES), da, clock)
    pb = SecureChatProtocol(Config(END_TO_END, Role.RESPONDER, B, UserIdentity("bob"),
                                   registry=E2E_MESSAGES, raw_types=getattr(db, "RAW", frozenset())),
                            db, clock)
    ta, tb = StringTransport(), StringTransport()
    pa.makeConnection(ta)
    pb.makeConnection(tb)
    shuttle((pa, da, ta), (pb, db, tb))
    assert da.established_with and db.established_with
    return (pa, da, ta), (pb, db, tb)


def record_count(data: bytes) -> int:
    """
    How many frames C{data} holds (each a record once established).
    """
    count = pos = 0
    while pos < len(data):
        pos += 4 + int.from_bytes(data[pos:pos + 4], "big")
        count += 1
    return count


class PostTests(unittest.TestCase):
    """
    C{post}: messages queued during a reactor turn are sealed together at
    its end, in order, in as few records as the frame maximum allows.
    """

    def test_postedMessagesShareOneRecord(self) -> None:
        """
        Three messages posted in one turn leave as one record, after the
        turn, and arrive in order.
        """
        from securechat.wire.e2e import Text
        clock = Clock()
        (pa, da, ta), (pb, db, tb) = e2e_pair(clock)
        for i in range(3):
            pa.post(Text(0, f"line {i}"))
        self.assertEqual(ta.value(), b"")
        clock.advance(0)
        self.assertEqual(record_count(ta.value()), 1)
        pb.dataReceived(ta.value())
        self.assertEqual(db.messages, [Text(0, f"line {i}") for i in range(3)])

    def test_sendAfterPostKeepsOrder(self) -> None:
        """
        A message sent directly after others were posted does not overtake
        them, and nothing is sent twice when the turn ends.
        """
        from securechat.wire.e2e import Text
        clock = Clock()
        (pa, da, ta), (pb, db, tb) = e2e_pair(clock)
        pa.post(Text(0, "posted"))
        pa.send(Text(0, "sent"))
        clock.advance(0)
        pb.dataReceived(ta.value())
        self.assertEqual(db.messages, [Text(0, "posted"), Text(0, "sent")])
        self.assertEqual(db.ended, [])

    def test_closeDeliversPostedFirst(self) -> None:
        """
        A clean close seals what was posted before its CLOSE_NOTIFY.
        """
        from securechat.wire.e2e import Text
        clock = Clock()
        (pa, da, ta), (pb, db, tb) = e2e_pair(clock)
        pa.post(Text(0, "last words"))
        pa.close()
        pb.dataReceived(ta.value())
        self.assertEqual(db.messages, [Text(0, "last words")])
        self.assertEqual(db.ended, [None])

    def test_batchesSplitAtMessageBoundaries(self) -> None:
        """
        Posted messages beyond one batch leave in several records, each
        within the batch size, no message cut between two records.
        """
        from securechat.wire.e2e import Text
        clock = Clock()
        (pa, da, ta), (pb, db, tb) = e2e_pair(clock)
        pa.outbound.batch_bytes = 100
        lines = [Text(i, "x" * 40) for i in range(5)]  # 55 bytes encoded each
        for line in lines:
            pa.post(line)
        clock.advance(0)
        self.assertEqual(record_count(ta.value()), 5)
        pb.dataReceived(ta.value())
        self.assertEqual(db.messages, lines)
        pa.outbound.batch_bytes = 120
        for line in lines:
            pa.post(line)
        ta.clear()
        clock.advance(0)
        self.assertEqual(record_count(ta.value()), 3)  # 2 + 2 + 1

    def test_pausedQueueHoldsUntilResumed(self) -> None:
        """
        While the transport pauses the queue, posted messages wait (and are
        counted in C{bytes}); resuming sends them.
        """
        from securechat.wire.e2e import Text
        clock = Clock()
        (pa, da, ta), (pb, db, tb) = e2e_pair(clock)
        pa.outbound.pauseProducing()
        pa.post(Text(0, "held"))
        clock.advance(0)
        self.assertEqual(ta.value(), b"")
        self.assertEqual(pa.outbound.bytes, 5 + len(Text(0, "held").encode_body()))
        pa.outbound.resumeProducing()
        clock.advance(0)
        pb.dataReceived(ta.value())
        self.assertEqual(db.messages, [Text(0, "held")])
        self.assertEqual(pa.outbound.bytes, 0)

    def test_postedAfterConnectionLostDropped(self) -> None:
        """
        Once the connection is lost, the queue is cleared and refuses more:
        nothing is written to a dead transport when the turn ends.
        """
        from securechat.wire.e2e import Text
        clock = Clock()
        (pa, da, ta), (pb, db, tb) = e2e_pair(clock)
        pa.post(Text(0, "lost"))
        pa.connectionLost()
        pa.post(Text(0, "after"))
        self.assertEqual((len(pa.outbound), pa.outbound.bytes), (0, 0))
        clock.advance(0)
        self.assertEqual(ta.value(), b"")


class EndOfTurnTests(unittest.TestCase):
    """
    When posted messages are sealed: at the end of the read that posted
    them, else at the end of the reactor turn.
    """

    def test_answersSealedWhenReadEnds(self) -> None:
        """
        Messages posted while a read is handled (answers to it) are sealed
        together as soon as the read ends, with no timer involved.
        """
        from securechat.wire.e2e import Text
        clock = Clock()

        class Echo(Delegate):
            def message_received(self, message: Message) -> None:
                super().message_received(message)
                self.protocol.post(message)
                self.protocol.post(message)

        echo = Echo(A.public_key())
        (pa, da, ta), (pb, db, tb) = e2e_pair(clock, echo)
        pa.send(Text(0, "ping"))
        pb.dataReceived(ta.value())
        self.assertEqual(record_count(tb.value()), 1)
        self.assertEqual(clock.getDelayedCalls(), [])
        pa.dataReceived(tb.value())
        self.assertEqual(da.messages, [Text(0, "ping"), Text(0, "ping")])

    def test_sharedAcrossConnections(self) -> None:
        """
        One L{EndOfTurn} serves several queues with a single delayed call
        per turn.
        """
        from securechat.outbound import EndOfTurn, OutboundQueue
        clock = Clock()
        turn = EndOfTurn(clock)
        sealed: list[tuple[str, bytes]] = []
        queues = [OutboundQueue(turn, lambda data, n=n: sealed.append((n, data)), 1000)
                  for n in ("a", "b", "c")]
        for q in queues:
            q.push_encoded(b"\x20\0\0\0\1", b"x")
            q.push_encoded(b"\x20\0\0\0\1", b"y")
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(0)
        self.assertEqual(sealed, [(n, b"\x20\0\0\0\1x\x20\0\0\0\1y") for n in "abc"])

    def test_callsAtTheEndOfTheRead(self) -> None:
        """
        C{call_at_end} during a read runs when the read (the outermost, if
        nested) ends, before the queues drain, so what the call queues is
        sealed with the rest; no timer is involved.
        """
        from securechat.outbound import EndOfTurn, OutboundQueue
        clock = Clock()
        turn = EndOfTurn(clock)
        sealed: list[bytes] = []
        queue = OutboundQueue(turn, sealed.append, 1000)
        events: list[str] = []
        turn.reading += 1
        turn.reading += 1
        queue.push_encoded(b"\x20\0\0\0\1", b"x")
        turn.call_at_end(lambda: (events.append("called"),
                                  queue.push_encoded(b"\x20\0\0\0\1", b"y")))
        turn.read_ended()
        self.assertEqual((events, sealed), ([], []))
        turn.read_ended()
        self.assertEqual(events, ["called"])
        self.assertEqual(sealed, [b"\x20\0\0\0\1x\x20\0\0\0\1y"])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_callsOutsideAReadAtTheEndOfTheTurn(self) -> None:
        """
        Outside a read, C{call_at_end} runs at the end of the reactor turn,
        in the one delayed call the queues use.
        """
        from securechat.outbound import EndOfTurn
        clock = Clock()
        turn = EndOfTurn(clock)
        events: list[int] = []
        turn.call_at_end(lambda: events.append(1))
        turn.call_at_end(lambda: events.append(2))
        self.assertEqual((events, len(clock.getDelayedCalls())), ([], 1))
        clock.advance(0)
        self.assertEqual(events, [1, 2])


class DelegateErrorTests(unittest.TestCase):
    """
    A delegate that finds a protocol error in what it was handed raises it,
    and the connection fails with that error's alert.
    """

    def test_rawMessagesErrorFailsConnection(self) -> None:
        """
        C{raw_messages_received} raising L{RemoteProtocolError} ends the
        session with that error and sends the peer its alert; the rest of
        the read is not handed over.
        """
        from securechat.errors import RemoteProtocolError
        from securechat.delegate import IRawMessageDelegate
        from securechat.wire.e2e import Text

        @implementer(IRawMessageDelegate)
        class Raw(Delegate):
            RAW = frozenset({Text.TYPE})

            def __init__(self) -> None:
                super().__init__(A.public_key())
                self.raw: list[bytes] = []

            def raw_messages_received(self, items: list[tuple[int, memoryview]]) -> None:
                for _, body in items:
                    self.raw.append(bytes(body))
                    if b"bad" in bytes(body):
                        raise RemoteProtocolError("bad-value", "a bad line")

        clock = Clock()
        raw = Raw()
        (pa, da, ta), (pb, db, tb) = e2e_pair(clock, raw)
        pa.send(Text(0, "good"), Text(0, "bad"), Text(0, "unseen"))
        pa.send(Text(0, "next record"))
        pb.dataReceived(ta.value())
        self.assertEqual(raw.raw, [Text(0, "good").encode_body(), Text(0, "bad").encode_body()])
        self.assertEqual([e.code for e in raw.ended], ["bad-value"])
        self.assertTrue(tb.disconnecting)
        pa.dataReceived(tb.value())
        self.assertEqual([e.peer_alert for e in da.ended], [Alert.DECODE_ERROR])

    def test_messageReceivedErrorFailsConnection(self) -> None:
        """
        The same for a decoded message: C{message_received} raising ends the
        session with that error.
        """
        from securechat.errors import RemoteProtocolError
        from securechat.wire.e2e import Text

        class Strict(Delegate):
            def message_received(self, message: Message) -> None:
                raise RemoteProtocolError("limit-exceeded", "too long")

        clock = Clock()
        strict = Strict(A.public_key())
        (pa, da, ta), (pb, db, tb) = e2e_pair(clock, strict)
        pa.send(Text(0, "anything"))
        pb.dataReceived(ta.value())
        self.assertEqual([e.code for e in strict.ended], ["limit-exceeded"])
        pa.dataReceived(tb.value())
        self.assertEqual([e.peer_alert for e in da.ended], [Alert.LIMIT_EXCEEDED])
