"""
The end-to-end rules of L{securechat.client.core} (docs/protocol.rst,
section 12), each driven through real L{ChatClient}s and a relay in memory,
never through a wrapper that repeats the rule: if the client stops
enforcing one, its test fails.
"""

from __future__ import annotations

from twisted.trial import unittest

from securechat.client.core import ChatClient
from securechat.client.endtoend import PeerChat
from securechat.client.pins import PinStore
from securechat.crypto import keys
from securechat.crypto.config import Config, Role
from securechat.crypto.events import Event, HandshakeComplete
from securechat.crypto.handshake import Connection
from securechat.wire.e2e import Text
from securechat.errors import RemoteProtocolError
from securechat.server.limits import Limits
from securechat.wire.messages import UserIdentity
from securechat.wire.relay import ChatEnded, ChatStarted, Reason, Relayed
from tests.relay_harness import user_key
from tests.test_client_core import ChatHarness, MaliciousHarness


class PeerNameTests(unittest.TestCase):
    """
    Rule 12.1: the peer must prove exactly the name we chat with.
    """

    def test_peerProvingAnotherNameRejected(self) -> None:
        """
        bob's client proves another name ("carol", or "aaron", which sorts
        before "bob") with bob's own key (the key the relay handed alice for
        bob, so the signature verifies): alice's client refuses with
        C{peer-rejected}, and the chat is never secured.
        """
        for claimed in ("carol", "aaron"):
            h = ChatHarness()
            alice, va = h.client("alice")
            bob, vb = h.client("bob")
            bob.user = claimed  # what bob's client claims end to end from now on
            alice.request_chat("bob")
            h.pump()
            bob.accept("alice")
            h.pump()
            errors = va.of("security_error")
            self.assertEqual(len(errors), 1, va.seen)
            peer, detail = errors[0]
            self.assertEqual(peer, "bob")
            self.assertIn("[peer-rejected]", detail)
            self.assertIn(claimed, detail)
            self.assertNotIn(("chat_secured", "bob"), va.seen)
            self.assertNotIn(("chat_secured", "alice"), vb.seen)

    def test_relayRoutingToAnotherUserRejected(self) -> None:
        """
        A relay that answers alice's chat with bob by connecting her to
        carol (carol's key handed over as bob's, carol's bytes labelled as
        bob's) is caught by the name check: carol proves "carol", and
        alice's client refuses with C{peer-rejected}.
        """
        h = MaliciousHarness()
        sessions = h.relay.sessions
        carol_der = keys.public_key_der(user_key("carol").public_key())
        alice_der = keys.public_key_der(user_key("alice").public_key())
        h.relay.fake_keys = {"bob": carol_der}

        def reroute(sender: str, peer: str, payload: bytes) -> list[bytes]:
            if sender == "alice":
                sessions["carol"].deliver(Relayed("alice", payload))
            elif sender == "carol":
                sessions["alice"].deliver(Relayed("bob", payload))
            return []
        alice, va = h.client("alice")
        carol, vc = h.client("carol")
        bob, vb = h.client("bob")
        h.relay.tamper = reroute
        # carol's client is told it chats with alice (which it does).
        alice.request_chat("bob")
        h.pump()
        sessions["carol"].chats = {"alice": None}
        sessions["alice"].chats = {"bob": None, "carol": None}
        sessions["carol"].deliver(ChatStarted("alice", alice_der, False))
        bob.accept("alice")
        h.pump()
        errors = va.of("security_error")
        self.assertEqual(len(errors), 1)
        self.assertIn("[peer-rejected]", errors[0][1])
        self.assertNotIn(("chat_secured", "bob"), va.seen)


class NoReadyResponder(ChatClient):
    """
    A responder's client that breaks rule 12.3: once its handshake
    completes it sends a line instead of READY.
    """

    def _handle_e2e(self, chat: PeerChat, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, HandshakeComplete) and not chat.connection.is_initiator:
                chat.connection.send(Text(0, "no READY from me"))
                self._flush_e2e(chat)
                return
        super()._handle_e2e(chat, events)


class ReadyTests(unittest.TestCase):
    """
    Rule 12.3: the initiator considers the chat secured only once READY
    arrives.
    """

    def test_onlyReadySecuresTheInitiator(self) -> None:
        """
        A responder that sends a line but never READY: alice's client never
        considers the chat secured, and the line she typed meanwhile is
        never sent.  Since READY must come first (12.3), that line is
        C{unexpected-message}: it is not shown, and the chat fails with
        that error.
        """
        h = ChatHarness()
        alice, va = h.client("alice")
        bob, vb = h.client("bob", client_class=NoReadyResponder)
        alice.request_chat("bob")
        h.pump()
        bob.accept("alice")
        h.pump()
        alice.say("bob", "waiting for READY")
        h.pump()
        self.assertEqual(va.of("message"), [])
        self.assertNotIn(("chat_secured", "bob"), va.seen)
        self.assertEqual(va.of("security_error"), [
            ("bob", "end-to-end check failed: TEXT before READY [unexpected-message]")])
        self.assertEqual(vb.of("message"), [])


class KeyCompromiseImpersonationTests(unittest.TestCase):
    """
    What the protocol guarantees when alice's long-term key is stolen
    (docs/security.rst, KCI): the thief can be alice, but cannot make
    alice's client accept it as bob, nor as the relay.
    """

    def test_stolenKeyCannotImpersonateBobToAlice(self) -> None:
        """
        The thief holds alice's private key and sits where bob's client
        should be: it completes a full handshake of its own (its own
        ephemeral key, correct Finished) claiming "bob" and signing with
        alice's key.  alice's client, checking against bob's key from the
        relay, refuses with C{bad-signature}, and shows nothing as from bob.
        """
        h = ChatHarness()
        alice, va = h.client("alice")
        bob, vb = h.client("bob")
        bob.private_key = user_key("alice")  # the stolen key, in bob's place
        alice.request_chat("bob")
        h.pump()
        bob.accept("alice")
        h.pump()
        errors = va.of("security_error")
        self.assertEqual(len(errors), 1, va.seen)
        self.assertIn("[bad-signature]", errors[0][1])
        self.assertNotIn(("chat_secured", "bob"), va.seen)
        self.assertEqual(va.of("message"), [])

    def test_stolenKeyCannotImpersonateRelayToAlice(self) -> None:
        """
        The thief answers alice's login as the relay, with the relay's
        (public) certificate identity, its own ephemeral key and alice's
        key for the signature: alice's client fails the handshake with
        C{bad-signature} and never logs in.
        """
        from securechat.crypto.handshake import CLIENT_SERVER
        from securechat.wire.relay import FROM_SERVER
        from tests.relay_harness import SERVER_IDENTITY
        from tests.support import failure, run

        def relay_key(identity):  # type: ignore[no-untyped-def]
            from tests.test_client_core import verify_test_server
            return verify_test_server(identity)
        client = Connection(Config(CLIENT_SERVER, Role.INITIATOR, user_key("alice"),
                                   UserIdentity("alice"), registry=FROM_SERVER))
        thief = Connection(Config(CLIENT_SERVER, Role.RESPONDER, user_key("alice"),
                                  SERVER_IDENTITY))
        ec, et = run(client, thief, relay_key, lambda i: user_key("alice").public_key())
        self.assertEqual(failure(ec), "bad-signature")


class EndTests(unittest.TestCase):
    """
    Rule 12.3: how a chat ends.
    """

    def test_wrongEndCountIsTruncated(self) -> None:
        """
        An authenticated END whose count differs from the lines that
        arrived (alice's client claims three, one arrived) is reported as
        TRUNCATED with both numbers, not as a clean end.
        """
        h = ChatHarness()
        alice, va, bob, vb = h.chat()
        alice.say("bob", "one")
        h.pump()
        alice.chats["bob"].sent = 3  # as if two lines went missing on the way
        alice.stop("bob")
        h.pump()
        self.assertEqual(vb.of("chat_ended"), [("alice", "TRUNCATED: alice sent 3 messages, 1 arrived")])

    def test_endCountBelowArrivedIsTruncated(self) -> None:
        """
        An END counting fewer lines than arrived (0 sent, 1 arrived) is
        TRUNCATED too: any difference, not only lines missing.
        """
        h = ChatHarness()
        alice, va, bob, vb = h.chat()
        alice.say("bob", "one")
        h.pump()
        alice.chats["bob"].sent = 0
        alice.stop("bob")
        h.pump()
        self.assertEqual(vb.of("chat_ended"), [("alice", "TRUNCATED: alice sent 0 messages, 1 arrived")])

    def test_longChatEndsCleanly(self) -> None:
        """
        A chat of 300 lines (counts past the small integers Python shares)
        ends cleanly when the END's count matches: the counts are compared
        by value.
        """
        h = ChatHarness(Limits(rate=1000, burst=1000))
        alice, va, bob, vb = h.chat()
        for i in range(300):
            alice.say("bob", f"line {i}")
        h.pump()
        alice.stop("bob")
        h.pump()
        self.assertEqual(vb.of("chat_ended"), [("alice", "ended by alice (300 messages received)")])

    def test_rightEndCountIsClean(self) -> None:
        """
        The control: an END whose count matches is a clean end.
        """
        h = ChatHarness()
        alice, va, bob, vb = h.chat()
        alice.say("bob", "one")
        h.pump()
        alice.stop("bob")
        h.pump()
        self.assertEqual(vb.of("chat_ended"), [("alice", "ended by alice (1 messages received)")])

    def test_chatStopAfterEndToEndError(self) -> None:
        """
        Rule 12.3: an end-to-end error ends the chat: the detecting client
        shows it and sends CHAT_STOP, so the relay ends the chat for both
        (alice is told it ended, without bob's END: truncated).  The relay
        here alters alice's records and swallows bob's (his alert too), so
        bob's CHAT_STOP is the only way the chat can end.
        """
        h = MaliciousHarness()
        alice, va, bob, vb = h.chat()

        def tamper(sender: str, peer: str, payload: bytes) -> list[bytes]:
            if sender == "alice":
                return [payload[:-1] + bytes([payload[-1] ^ 1])]
            return []
        h.relay.tamper = tamper
        alice.say("bob", "one")
        h.pump()
        self.assertIn("bad-record-mac", vb.of("security_error")[0][1])
        self.assertNotIn("alice", h.relay.sessions["bob"].chats)
        self.assertNotIn("bob", h.relay.sessions["alice"].chats)
        [(peer, outcome)] = va.of("chat_ended")
        self.assertEqual(peer, "bob")
        self.assertIn("TRUNCATED", outcome)
        self.assertEqual(alice.chats, {})
        self.assertEqual(bob.chats, {})
        self.assertEqual(vb.of("chat_ended"), [("alice", "ended after a security error")])


class PinRuleTests(unittest.TestCase):
    """
    Rule 12.1: a changed key is refused before any handshake.
    """

    def test_changedKeySendsChatStopAndNoHandshake(self) -> None:
        """
        A CHAT_STARTED whose key differs from the pinned one: the client
        sends CHAT_STOP (the relay ends the chat for both) and no
        end-to-end byte leaves it.
        """
        h = MaliciousHarness()
        pins = PinStore(None)
        pins.pin("bob", user_key("bob").public_key())
        h.relay.fake_keys = {"bob": keys.public_key_der(user_key("mallory").public_key())}
        sent: list[tuple[str, str]] = []
        h.relay.tamper = lambda s, p, payload: (sent.append((s, p)), [payload])[1]
        alice, va, bob, vb = h.chat(pins=pins)
        self.assertEqual(len(va.of("key_changed")), 1)
        self.assertNotIn(("alice", "bob"), sent)
        self.assertNotIn("bob", h.relay.sessions["alice"].chats)
        self.assertEqual(vb.of("chat_ended")[0][0], "alice")

    def test_unusableKeyRefusedBeforeHandshake(self) -> None:
        """
        A CHAT_STARTED whose key does not parse is a security error at once
        (no handshake, no pin) and the client sends CHAT_STOP.
        """
        h = MaliciousHarness()
        pins = PinStore(None)
        h.relay.fake_keys = {"bob": b"not a key"}
        alice, va, bob, vb = h.chat(pins=pins)
        [(peer, detail)] = va.of("security_error")
        self.assertIn("unusable key for bob", detail)
        self.assertEqual(alice.chats, {})
        self.assertIsNone(pins.fingerprint("bob"))
        self.assertNotIn("bob", h.relay.sessions["alice"].chats)


class ChatEndedNoticeTests(unittest.TestCase):
    """
    CHAT_ENDED for a chat the client no longer has (it refused a changed
    key, for example) is shown unless it merely confirms our own stop.
    """

    def test_endOfUnknownChat(self) -> None:
        """
        STOPPED (the answer to our own CHAT_STOP) is not shown; GONE and
        REVOKED are, with their reason.
        """
        h = ChatHarness()
        alice, va = h.client("alice")
        for reason in (Reason.STOPPED, Reason.GONE, Reason.REVOKED):
            alice.message_received(ChatEnded("zed", reason))
        self.assertEqual(va.of("chat_ended"), [
            ("zed", "the other side disconnected"),
            ("zed", "the other side's access was revoked"),
        ])


class OwnStopTests(unittest.TestCase):
    """
    Rule 12.3 when we stopped: we ended the chat, whatever the relay's
    reason; RELAYED outside a chat is the relay breaking 12.4.
    """

    def test_ourStopNeverTruncated(self) -> None:
        """
        After our own stop, a CHAT_ENDED with GONE, REPLACED or REVOKED (the
        peer went away before the relay handled our CHAT_STOP) is reported
        exactly as STOPPED is: ended by us, never TRUNCATED (what the peer
        sent after our CHAT_STOP is refused to it, not lost).
        """
        for reason in (Reason.GONE, Reason.REPLACED, Reason.REVOKED, Reason.STOPPED):
            h = ChatHarness()
            alice, va, bob, vb = h.chat()
            alice.stop("bob")
            alice.message_received(ChatEnded("bob", reason))
            self.assertEqual(va.of("chat_ended"),
                             [("bob", "ended by you (0 sent, 0 received; no end from bob)")],
                             reason)
            self.assertEqual(alice.chats, {})

    def test_relayedForNoChatIsUnexpected(self) -> None:
        """
        Rule 12.4: RELAYED bytes from a user the client has no chat with
        (and did not refuse) are C{unexpected-message}: the relay broke its
        rules, and nothing of them is shown.
        """
        h = ChatHarness()
        alice, va = h.client("alice")
        e = self.assertRaises(RemoteProtocolError, alice.message_received,
                              Relayed("zed", b"\x00\x00\x00\x05\x17junk"))
        self.assertEqual(e.code, "unexpected-message")
        self.assertIn("from zed outside a chat", str(e))
        self.assertEqual(va.seen, [])

class DisplayTests(unittest.TestCase):
    """
    What the receiving user is shown of a line.
    """

    def test_sentAtKeepsMilliseconds(self) -> None:
        """
        TEXT's C{sent_at} is milliseconds; the receiver shows the sender's
        time to the millisecond (seconds as a float), not truncated.
        """
        h = ChatHarness()
        alice, va, bob, vb = h.chat()
        alice.clock = lambda: 1_700_000_000.25
        alice.say("bob", "quarter past")
        h.pump()
        self.assertEqual(vb.of("message"), [("alice", 1_700_000_000.25, "quarter past")])

    def test_longestLine(self) -> None:
        """
        A line of exactly 16384 bytes (TEXT's maximum) is sent and arrives;
        one byte more is refused locally with a notice and nothing is sent.
        """
        h = ChatHarness()
        alice, va, bob, vb = h.chat()
        alice.say("bob", "x" * 16384)
        alice.say("bob", "y" * 16385)
        h.pump()
        self.assertEqual([len(m[2]) for m in vb.of("message")], [16384])
        self.assertEqual(va.of("notice"), [("message too long (at most 16384 bytes)",)])
        self.assertEqual(alice.chats["bob"].sent, 1)
