"""
What the relay says when it closes a connection: the specific error code
(docs/protocol.rst, section 8) and the reason README.rst promises in the log
("Against hostile clients": every malformed frame, bad signature, unknown
user, oversized length, replayed or missing record and out-of-state message
closes that one connection with a specific reason in the log).

The log is captured with a L{Logger} whose observer is a list (no global
log observer is added).
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.logger import Logger, formatEvent
from twisted.trial import unittest

from securechat.errors import Alert
from securechat.server.limits import Limits
from securechat.wire.messages import HelloReply, encode_frame_message, encode_inner
from securechat.wire.relay import ListOnline
from tests.attack_tools import RawClient, connect_raw
from tests.relay_harness import Harness, user_key
from tests.test_relay import peer_alert


class ReasonTests(unittest.TestCase):
    """
    One test per reason: the relay's error code, its refusal metric, and
    one log line for that connection naming the specific reason.
    """

    def setUp(self) -> None:
        self.h = Harness()
        self.events: list[dict[str, Any]] = []
        self.h.relay.log = Logger(namespace="securechat.server.relay",  # type: ignore[misc]
                                  observer=self.events.append)

    def closed_with(self, act: Callable[[RawClient], None], code: str, phrase: str,
                    host: str = "10.7.7.7") -> list[str]:
        """
        Run C{act} on a raw connection from C{host}; check the relay failed
        it with C{code} and logged one line about it that contains the
        error's detail and C{phrase}.  Returns the lines logged.
        """
        raw, server, _ = connect_raw(self.h, host)
        del self.events[:]
        act(raw)
        self.h.pump()
        self.assertIsNotNone(server.error, "the relay did not fail the connection")
        self.assertEqual(server.error.code, code)
        lines = [formatEvent(e) for e in self.events]
        ending = [line for line in lines if "ended before login" in line or "disconnected" in line]
        self.assertEqual(len(ending), 1, lines)
        self.assertIn(server.error.detail, ending[0])
        self.assertIn(phrase, ending[0])
        self.assertTrue(raw.lost or server.transport.disconnecting)
        return lines

    def refused(self, code: str) -> float:
        value: float = self.h.relay.metrics.refusals.labels(code)._value.get()
        return value

    def test_oversizedLengthLogged(self) -> None:
        """
        An oversized length: C{frame-too-large}, logged with the length and
        the maximum.
        """
        self.closed_with(lambda raw: raw.write((2**31).to_bytes(4, "big")), "frame-too-large",
                         "connection from 10.7.7.7 ended before login: frame length 2147483648")
        self.assertEqual(self.refused("frame-too-large"), 1)

    def test_malformedFrameLogged(self) -> None:
        """
        A HELLO cut short: C{truncated}, logged with the field that ran out.
        """
        self.closed_with(lambda raw: raw.write((5).to_bytes(4, "big") + b"\x01abcd"),
                         "truncated", "nonce")

    def test_outOfStateMessageLogged(self) -> None:
        """
        A HELLO_REPLY sent to the relay: C{unexpected-message}, logged with
        the frame type and the state.
        """
        reply = encode_frame_message(HelloReply(1, b"n" * 32, b"\x09" + bytes(31), 1))
        self.closed_with(lambda raw: raw.write(reply), "unexpected-message",
                         "frame type 0x02 in state WAIT_HELLO")

    def test_unknownUserLogged(self) -> None:
        """
        An unregistered name: C{unknown-user}, logged with the name.
        """
        self.closed_with(lambda raw: raw.login("zed", key=user_key("zed")), "unknown-user",
                         "no registered user 'zed'")
        self.assertEqual(self.refused("unknown-user"), 1)

    def test_badSignatureLogged(self) -> None:
        """
        alice's name with bob's key: C{bad-signature}, logged as such.
        """
        self.closed_with(lambda raw: raw.login("alice", key=user_key("bob")), "bad-signature",
                         "signature")
        self.assertEqual(self.refused("bad-signature"), 1)

    def test_revokedUserErrorCode(self) -> None:
        """
        Section 10: a revoked user's login fails at the relay with
        C{revoked-user} (not C{unknown-user}), counted and logged under
        that reason, while the client sees only HANDSHAKE_FAILED.
        """
        self.h.directory.revoke("carol")
        self.closed_with(lambda raw: raw.login("carol"), "revoked-user", "'carol' is revoked")
        self.assertEqual(self.refused("revoked-user"), 1)
        self.assertEqual(self.refused("unknown-user"), 0)
        client, _ = self.h.connect("carol")
        self.assertEqual(peer_alert(client), Alert.HANDSHAKE_FAILED)

    def test_replayedRecordLogged(self) -> None:
        """
        A record sent twice after login: C{record-replayed}, logged for the
        user with both counters.
        """
        def replay(raw: RawClient) -> None:
            raw.login("alice")
            self.h.pump()
            record = raw.seal(encode_inner([ListOnline()]))
            raw.write(record + record)
        lines = self.closed_with(replay, "record-replayed",
                                 "user alice disconnected: record counter 0, expected 1")
        self.assertIn("user alice logged in from 10.7.7.7", lines)

    def test_missingRecordLogged(self) -> None:
        """
        A record missing after login: C{record-gap}, logged for the user
        with both counters.
        """
        def drop(raw: RawClient) -> None:
            raw.login("bob")
            self.h.pump()
            raw.seal(encode_inner([ListOnline()]))
            raw.write(raw.seal(encode_inner([ListOnline()])))
        self.closed_with(drop, "record-gap", "user bob disconnected: record counter 1, expected 0")


class RevalidationTests(unittest.TestCase):
    """
    README: a user revoked, removed or re-keyed while online is disconnected
    at the next reload (L{Relay.revalidate}).
    """

    def test_rekeyedUserDisconnected(self) -> None:
        """
        alice re-registered with another key (one whose DER sorts after
        hers, one before) is disconnected with ACCESS_REVOKED; her
        unchanged registration keeps her online.
        """
        from securechat.crypto import keys
        from securechat.server.directory import UserEntry
        old = keys.public_key_der(user_key("alice").public_key())
        for name in ("k2", "x1"):  # k2's key sorts after alice's, x1's before
            new = user_key(name).public_key()
            self.assertEqual(keys.public_key_der(new) > old, name == "k2")
            h = Harness()
            alice = h.login("alice")
            h.relay.revalidate()
            h.pump()
            self.assertIn("alice", h.relay.sessions)
            h.directory.add(UserEntry("alice", new))
            h.relay.revalidate()
            h.pump()
            self.assertNotIn("alice", h.relay.sessions)
            self.assertEqual(peer_alert(alice), Alert.ACCESS_REVOKED)


class RelayPayloadTests(unittest.TestCase):
    """
    Section 11.2: a RELAY payload longer than WELCOME's max_payload is
    C{limit-exceeded}; one of exactly max_payload is a RELAY like any other.
    """

    def test_payloadLimitOutsideAChat(self) -> None:
        """
        To a user alice has no chat with, a payload of exactly max_payload
        is answered with COMMAND_FAILED(NO_CHAT) and alice stays; one byte
        more closes her connection with C{limit-exceeded}.
        """
        from securechat.wire.relay import CommandFailed, Reason, Relay
        h = Harness(Limits(max_frame=4096))
        maximum = h.relay.limits.max_payload
        alice = h.login("alice")
        h.login("bob")
        alice.send(Relay("bob", b"x" * maximum))
        h.pump()
        [answer] = alice.take()
        self.assertIsInstance(answer, CommandFailed)
        self.assertEqual(answer.reason, Reason.NO_CHAT)
        self.assertIn("alice", h.relay.sessions)
        alice.send(Relay("bob", b"x" * (maximum + 1)))
        h.pump()
        server = h.links["alice"].server
        self.assertEqual(server.error.code, "limit-exceeded")


class MetricsCountTests(unittest.TestCase):
    """
    The handshake and open-connection counts README's /metrics promises.
    """

    def test_handshakesAndOpenConnections(self) -> None:
        """
        Two logins count two handshakes and two open connections; a refused
        login adds no handshake; every connection that ends is subtracted.
        """
        h = Harness()
        metrics = h.relay.metrics
        h.login("alice")
        h.login("bob")
        self.assertEqual((metrics.handshakes, metrics.connections_open), (2, 2))
        client, link = h.connect("mallory", key=user_key("mallory"))
        h.pump()
        self.assertEqual((metrics.handshakes, metrics.connections_open), (2, 2))
        h.links["alice"].close(ConnectionError("gone"))
        h.pump()
        self.assertEqual((metrics.handshakes, metrics.connections_open), (2, 1))
