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

from securechat.crypto.handshake import END_TO_END, Config, Role, State
from securechat.errors import Alert
from securechat.protocol import ISessionDelegate, PeerRejected, SecureChatProtocol
from securechat.wire.messages import Identity, Message, UserIdentity

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


def pair(a_answer: Any, b_answer: Any, clock: Clock, **kw: Any):  # type: ignore[no-untyped-def]
    da, db = Delegate(a_answer), Delegate(b_answer)
    pa = SecureChatProtocol(Config(END_TO_END, Role.INITIATOR, A, UserIdentity("alice")), da, clock, **kw)
    pb = SecureChatProtocol(Config(END_TO_END, Role.RESPONDER, B, UserIdentity("bob")), db, clock, **kw)
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
        (pa, da, ta), (pb, db, tb) = a, b
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
