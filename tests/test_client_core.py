"""
Tests for the chat client core (L{securechat.client.core}): two real
clients and a relay in memory, chatting end to end; and a relay that
misbehaves on purpose, which the clients must catch.
"""

from __future__ import annotations

import os
import struct
from typing import Any, Callable

from twisted.trial import unittest

from securechat.client.core import ChatClient
from securechat.client.endtoend import PRE_AUTH_MAX_FRAME
from securechat.errors import RemoteProtocolError
from securechat.client.pins import CorruptPinFile, PinStatus, PinStore
from securechat.crypto import keys
from securechat.crypto.config import CLIENT_SERVER, Config, Role
from securechat.crypto.events import MessageReceived
from securechat.delegate import PeerRejected
from securechat.protocol import SecureChatProtocol
from securechat.server.limits import Limits
from securechat.server.relay import Relay as RelayCore
from securechat.server.session import UserSession
from securechat.wire.messages import CertificateIdentity, UserIdentity
from securechat.wire.e2e import MAX_TEXT, End, Ready, Text
from securechat.wire.relay import (
    FROM_CLIENT,
    FROM_SERVER,
    ChatAccept,
    ChatCancel,
    ChatEnded,
    ChatRefuse,
    ChatStarted,
    CommandFailed,
    Reason,
    Relay,
    Relayed,
    Welcome,
)
from tests.relay_harness import SERVER_IDENTITY, SERVER_KEY, Harness, user_key


class RecordingView:
    """
    A L{ChatView} that records what the user would see.
    """

    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args: self.seen.append((name,) + args)

    def kinds(self) -> list[str]:
        return [s[0] for s in self.seen]

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [s[1:] for s in self.seen if s[0] == kind]

    def take(self) -> list[tuple[Any, ...]]:
        out, self.seen = self.seen, []
        return out


def verify_test_server(identity: CertificateIdentity) -> keys.PublicKey:
    if identity != SERVER_IDENTITY:
        raise PeerRejected("bad-certificate", "not the test server")
    return SERVER_KEY.public_key()


class ChatHarness(Harness):
    """
    The relay harness with real L{ChatClient}s.
    """

    def client(self, name: str, pins: PinStore | None = None,
               expect_login: bool = True,
               client_class: type[ChatClient] = ChatClient) -> tuple[ChatClient, RecordingView]:
        view = RecordingView()
        client = client_class(name, user_key(name), view, verify_test_server,
                              pins or PinStore(None), clock=lambda: 1_700_000_000.0)
        config = Config(CLIENT_SERVER, Role.INITIATOR, user_key(name), UserIdentity(name),
                        registry=FROM_SERVER)
        proto = SecureChatProtocol(config, client, self.clock, handshake_timeout=1e9)
        link = self.network.connect(proto, self.factory.buildProtocol(None))
        self.links[name] = link
        if expect_login:
            assert client.logged_in, view.seen
            view.take()
        return client, view

    def chat(self, a: str = "alice", b: str = "bob", **kw: Any):  # type: ignore[no-untyped-def]
        ca, va = self.client(a, **kw)
        cb, vb = self.client(b)
        ca.request_chat(b)
        self.pump()
        cb.accept(a)
        self.pump()
        return ca, va, cb, vb


def step_until(h: Harness, condition: Callable[[], bool], limit: int = 100) -> None:
    """
    Deliver one read per link at a time until C{condition} holds (so a
    test can act in the middle of an exchange).
    """
    for _ in range(limit):
        if condition():
            return
        h.network.clock.advance(0)
        for link in list(h.network.links):
            link.pump_once()
    raise AssertionError("condition never held")


class ChatTests(unittest.TestCase):
    """
    Chats that go well.
    """

    def test_batchesFitTheRelaysFrames(self) -> None:
        """
        Against a relay with smaller frames than ours, what the client
        batches into one record stays within the relay's C{max_payload}
        (from WELCOME): fifty lines said in one turn all arrive, and the
        relay cuts nobody off.
        """
        h = ChatHarness(Limits(max_frame=4096))
        alice, va, bob, vb = h.chat()
        self.assertEqual(alice.protocol.outbound.batch_bytes, 4096 - 128)
        for i in range(50):
            alice.say("bob", f"{i:03d} " + "x" * 200)
        h.pump()
        self.assertEqual([m[2] for m in vb.of("message")],
                         [f"{i:03d} " + "x" * 200 for i in range(50)])
        self.assertIn("alice", h.relay.sessions)

    def test_fullChatBothWays(self) -> None:
        """
        Request, accept, the end-to-end handshake, lines both ways, and a
        clean stop that both sides see as complete.
        """
        h = ChatHarness()
        alice, va, bob, vb = h.chat()
        self.assertEqual(vb.of("chat_requested"), [("alice",)])
        self.assertIn(("chat_secured", "bob"), va.seen)
        self.assertIn(("chat_secured", "alice"), vb.seen)
        alice.say("bob", "hello bob")
        h.pump()
        bob.say("alice", "hi alice")
        h.pump()
        self.assertEqual(vb.of("message"), [("alice", 1_700_000_000.0, "hello bob")])
        self.assertEqual(va.of("message"), [("bob", 1_700_000_000.0, "hi alice")])
        alice.stop("bob")
        h.pump()
        self.assertEqual(vb.of("chat_ended"), [("alice", "ended by alice (1 messages received)")])
        self.assertEqual(va.of("chat_ended"),
                         [("bob", "ended by you (1 sent, 1 received; no end from bob)")])
        self.assertEqual(alice.chats, {})
        self.assertEqual(bob.chats, {})

    def test_linesBeforeSecuredWait(self) -> None:
        """
        Rule 12.3: lines typed before the chat is secured wait for it.  The
        initiator types while its chat exists but bob's READY has not
        arrived, the responder before alice's AUTH reached it; both lines
        are sent once secured, in order with the lines typed after, and
        each arrives exactly once.
        """
        h = ChatHarness()
        alice, va = h.client("alice")
        bob, vb = h.client("bob")
        alice.request_chat("bob")
        h.pump()
        bob.accept("alice")
        step_until(h, lambda: "bob" in alice.chats and "alice" in bob.chats)
        self.assertFalse(alice.chats["bob"].secured)
        self.assertFalse(bob.chats["alice"].secured)
        alice.say("bob", "early from alice")
        bob.say("alice", "early from bob")
        self.assertEqual(len(alice.chats["bob"].waiting), 1)
        self.assertEqual(len(bob.chats["alice"].waiting), 1)
        h.pump()
        self.assertTrue(alice.chats["bob"].secured and bob.chats["alice"].secured)
        alice.say("bob", "later from alice")
        h.pump()
        self.assertEqual([m[2] for m in vb.of("message")], ["early from alice", "later from alice"])
        self.assertEqual([m[2] for m in va.of("message")], ["early from bob"])
        self.assertEqual(vb.of("security_error") + va.of("security_error"), [])

    def test_refusal(self) -> None:
        """
        A refused request is shown as refused, and no chat exists.
        """
        h = ChatHarness()
        alice, va = h.client("alice")
        bob, vb = h.client("bob")
        alice.request_chat("bob")
        h.pump()
        bob.refuse("alice")
        h.pump()
        self.assertEqual(va.of("chat_declined"), [("bob", Reason.REFUSED)])
        self.assertEqual(alice.chats, {})

    def test_exitEndsChatsCleanly(self) -> None:
        """
        Logging out sends the authenticated end of every chat first.
        """
        h = ChatHarness()
        alice, va, bob, vb = h.chat()
        alice.say("bob", "bye")
        alice.logout()
        h.pump()
        self.assertEqual(vb.of("chat_ended"), [("alice", "ended by alice (1 messages received)")])
        self.assertEqual(va.of("disconnected"), [(None,)])

    def test_relayDisconnectReported(self) -> None:
        """
        Losing the relay connection ends every chat and says so.
        """
        h = ChatHarness()
        alice, va, bob, vb = h.chat()
        h.links["alice"].close(ConnectionError("network down"))
        h.pump()
        self.assertEqual(va.of("chat_ended"), [("bob", "disconnected from the relay")])
        self.assertEqual(len(va.of("disconnected")), 1)
        self.assertEqual(vb.of("chat_ended"), [(
            "alice", "ended: alice went offline (0 messages received; alice's client sent no "
            "authenticated end, so any later messages are unconfirmed)")])

    def test_firstUsePinsThenMatches(self) -> None:
        """
        The first chat pins the peer's fingerprint (shown as first use); the
        next chat matches it silently.
        """
        h = ChatHarness()
        pins = PinStore(None)
        alice, va, bob, vb = h.chat(pins=pins)
        fp = keys.fingerprint(user_key("bob").public_key())
        self.assertEqual(va.of("chat_opened"), [("bob", fp, True)])
        self.assertEqual(pins.fingerprint("bob"), fp)
        alice.stop("bob")
        h.pump()
        va.take()
        alice.request_chat("bob")
        h.pump()
        bob.accept("alice")
        h.pump()
        self.assertEqual(va.of("chat_opened"), [("bob", fp, False)])

    def test_fingerprints(self) -> None:
        """
        C{fingerprint()} gives our own fingerprint and the pinned one of a
        peer.
        """
        h = ChatHarness()
        alice, va, bob, vb = h.chat()
        self.assertEqual(alice.fingerprint(None), keys.fingerprint(user_key("alice").public_key()))
        self.assertEqual(alice.fingerprint("bob"), keys.fingerprint(user_key("bob").public_key()))
        self.assertIsNone(alice.fingerprint("carol"))


class RequestAndEndTests(unittest.TestCase):
    """
    What the core reports about requests, departures and oversized lines.
    """

    def test_requestPendingReportedOnce(self) -> None:
        """
        Asking for a chat reports nothing until the relay answers; then one
        C{request_pending}.
        """
        h = ChatHarness()
        alice, va = h.client("alice")
        h.client("bob")
        alice.request_chat("bob")
        self.assertEqual(va.seen, [])
        h.pump()
        self.assertEqual(va.take(), [("request_pending", "bob")])
        self.assertEqual(alice.outgoing, {"bob"})

    def test_endedRequestCommandFailureNotShown(self) -> None:
        """
        NO_REQUEST for an accept, refuse or cancel sent while the request
        was ending is not shown: the request's end already was.
        """
        h = ChatHarness()
        alice, va = h.client("alice")
        for command in (ChatAccept.TYPE, ChatRefuse.TYPE, ChatCancel.TYPE):
            alice.message_received(CommandFailed(command, "bob", Reason.NO_REQUEST))
        self.assertEqual(va.seen, [])

    def test_oversizedTextRefusedByReceiver(self) -> None:
        """
        A TEXT longer than MAX_TEXT from a peer whose client skipped the
        check is an end-to-end error at the receiver (C{limit-exceeded},
        docs/protocol.rst 12.3): not shown, and the chat ends.
        """
        h = ChatHarness()
        alice, va, bob, vb = h.chat()
        chat = alice.chats["bob"]
        chat.connection.send(Text(0, "x" * (MAX_TEXT + 1)))
        alice._flush_e2e(chat)
        h.pump()
        self.assertEqual(vb.of("message"), [])
        [(peer, detail)] = vb.of("security_error")
        self.assertEqual(peer, "alice")
        self.assertIn(f"TEXT of {MAX_TEXT + 1} bytes, the most is {MAX_TEXT} [limit-exceeded]",
                      detail)
        self.assertEqual(bob.chats, {})
        self.assertIn("LIMIT_EXCEEDED", va.of("security_error")[0][1])

    def test_textAtTheLimitShown(self) -> None:
        """
        A TEXT of exactly MAX_TEXT bytes is shown.
        """
        h = ChatHarness()
        alice, va, bob, vb = h.chat()
        alice.say("bob", "é" * (MAX_TEXT // 2))
        h.pump()
        self.assertEqual(vb.of("message"), [("alice", 1_700_000_000.0, "é" * (MAX_TEXT // 2))])


class PinStoreTests(unittest.TestCase):
    """
    The known-peers file.
    """

    def test_persisted(self) -> None:
        """
        Pins survive in the file, which is private to the user.
        """
        path = os.path.join(self.mktemp(), "known_peers")
        PinStore(path).pin("bob", user_key("bob").public_key())
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        store = PinStore(path)
        self.assertEqual(store.check("bob", user_key("bob").public_key()), PinStatus.MATCH)
        self.assertEqual(store.check("bob", user_key("eve").public_key()), PinStatus.CHANGED)
        self.assertEqual(store.check("carol", user_key("eve").public_key()), PinStatus.NEW)

    def test_corrupt(self) -> None:
        """
        A mangled known-peers file is refused with its line number.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("bob SHA256:abc\nthis is not a pin\n")
        e = self.assertRaises(CorruptPinFile, PinStore, path)
        self.assertIn("line 2", str(e))


class MaliciousRelay(RelayCore):
    """
    A relay that tampers with what it carries (C{tamper}) and lies about
    keys (C{fake_keys}, user name -> DER key handed over in CHAT_STARTED).
    """

    tamper: Callable[[str, str, bytes], list[bytes]] | None = None

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.fake_keys: dict[str, bytes] = {}
        self.fake_welcome: str | None = None

    def relay_all(self, session, items):  # type: ignore[no-untyped-def]
        # While tampering, every RELAY takes the full path through _forward.
        if self.tamper is None:
            return super().relay_all(session, items)
        for _, body in items:
            self._relay(session, FROM_CLIENT.parse(Relay.TYPE, bytes(body)))

    def _forward(self, session, target, payload):  # type: ignore[no-untyped-def]
        if self.tamper is None:
            return super()._forward(session, target, payload)
        for tampered in self.tamper(session.user, target.user, bytes(payload)):
            super()._forward(session, target, memoryview(tampered))

    def login(self, session):  # type: ignore[no-untyped-def]
        session.__class__ = LyingSession
        super().login(session)


class LyingSession(UserSession):
    """
    A session whose CHAT_STARTED carries the key its relay chose to fake.
    """

    __slots__ = ()

    def deliver(self, message):  # type: ignore[no-untyped-def]
        fake_keys = self.relay.fake_keys  # type: ignore[attr-defined]
        if isinstance(message, ChatStarted) and message.peer in fake_keys:
            message = ChatStarted(message.peer, fake_keys[message.peer], message.initiator)
        fake_welcome = self.relay.fake_welcome  # type: ignore[attr-defined]
        if isinstance(message, Welcome) and fake_welcome is not None:
            message = Welcome(fake_welcome, message.max_payload)
        super().deliver(message)


class MaliciousHarness(ChatHarness):
    def __init__(self) -> None:
        super().__init__(relay_class=MaliciousRelay)


class MaliciousRelayTests(unittest.TestCase):
    """
    A relay that lies or tampers is caught by the clients.
    """

    def test_substitutedKeyFirstUse(self) -> None:
        """
        A relay that hands bob a key of its own for alice cannot complete
        the end-to-end handshake: alice's signature does not verify with it.
        """
        h = MaliciousHarness()
        h.relay.fake_keys = {"alice": keys.public_key_der(user_key("mallory").public_key())}
        alice, va, bob, vb = h.chat()
        errors = vb.of("security_error")
        self.assertEqual(len(errors), 1)
        self.assertIn("bad-signature", errors[0][1])
        self.assertNotIn(("chat_secured", "alice"), vb.seen)
        self.assertNotIn(("chat_secured", "bob"), va.seen)

    def test_substitutedKeyPinned(self) -> None:
        """
        When the peer is pinned, a substituted key is refused before any
        handshake, loudly, with both fingerprints; C{trust} re-pins it.
        """
        h = MaliciousHarness()
        pins = PinStore(None)
        pins.pin("bob", user_key("bob").public_key())
        h.relay.fake_keys = {"bob": keys.public_key_der(user_key("mallory").public_key())}
        alice, va, bob, vb = h.chat(pins=pins)
        [(peer, pinned, offered)] = va.of("key_changed")
        self.assertEqual(peer, "bob")
        self.assertEqual(pinned, keys.fingerprint(user_key("bob").public_key()))
        self.assertEqual(offered, keys.fingerprint(user_key("mallory").public_key()))
        self.assertEqual(alice.chats, {})
        self.assertEqual(pins.check("bob", user_key("bob").public_key()), PinStatus.MATCH)
        alice.trust("bob")
        self.assertEqual(pins.check("bob", user_key("mallory").public_key()), PinStatus.MATCH)

    def _tampered_chat(self, tamper):  # type: ignore[no-untyped-def]
        h = MaliciousHarness()
        alice, va, bob, vb = h.chat()
        self.assertIn(("chat_secured", "alice"), vb.seen)
        h.relay.tamper = tamper
        alice.say("bob", "one")
        h.pump()
        alice.say("bob", "two")
        h.pump()
        alice.say("bob", "three")
        h.pump()
        return vb

    def test_replayDetected(self) -> None:
        """
        A relayed end-to-end record delivered twice is detected as a replay
        and ends the chat.
        """
        vb = self._tampered_chat(lambda s, p, payload: [payload, payload])
        self.assertEqual(vb.of("message")[0][2], "one")
        [(peer, detail)] = vb.of("security_error")
        self.assertIn("record-replayed", detail)

    def test_reorderDetected(self) -> None:
        """
        Two relayed records swapped are detected.
        """
        held: list[bytes] = []

        def swap(s: str, p: str, payload: bytes) -> list[bytes]:
            if not held:
                held.append(payload)
                return []
            return [payload, held.pop()]
        vb = self._tampered_chat(swap)
        self.assertEqual(vb.of("message"), [])
        self.assertIn("record-gap", vb.of("security_error")[0][1])

    def test_dropDetected(self) -> None:
        """
        A dropped record makes the next one fail.
        """
        dropped = []

        def drop(s: str, p: str, payload: bytes) -> list[bytes]:
            if not dropped:
                dropped.append(payload)
                return []
            return [payload]
        vb = self._tampered_chat(drop)
        self.assertEqual(vb.of("message"), [])
        self.assertIn("record-gap", vb.of("security_error")[0][1])

    def test_alterationDetected(self) -> None:
        """
        A flipped bit in a relayed record is detected and nothing is shown.
        """
        def flip(s: str, p: str, payload: bytes) -> list[bytes]:
            return [payload[:-1] + bytes([payload[-1] ^ 1])]
        vb = self._tampered_chat(flip)
        self.assertEqual(vb.of("message"), [])
        self.assertIn("bad-record-mac", vb.of("security_error")[0][1])

    def test_truncationDetected(self) -> None:
        """
        A relay that swallows the authenticated END and ends the chat itself
        is reported as a truncated conversation.
        """
        h = MaliciousHarness()
        alice, va, bob, vb = h.chat()
        alice.say("bob", "one")
        h.pump()
        h.relay.tamper = lambda s, p, payload: []  # swallow everything now
        alice.say("bob", "two")
        alice.stop("bob")
        h.pump()
        [(peer, outcome)] = vb.of("chat_ended")
        self.assertIn("TRUNCATED", outcome)

    def test_reflectedHandshake(self) -> None:
        """
        A relay that reflects alice's own handshake back to her (instead of
        forwarding it to bob) gets it rejected.
        """
        h = MaliciousHarness()
        sessions = h.relay.sessions

        def reflect(sender: str, peer: str, payload: bytes) -> list[bytes]:
            sessions[sender].deliver(Relayed(peer, payload))
            return []
        h.relay.tamper = reflect
        alice, va, bob, vb = h.chat()
        self.assertEqual(len(va.of("security_error")), 1)
        self.assertIn("unexpected-message", va.of("security_error")[0][1])
        self.assertNotIn(("chat_secured", "bob"), va.seen)

    def test_relayNeverSeesPlaintext(self) -> None:
        """
        End-to-end secrecy against the relay: what the relay itself is
        handed after the client-server layer decrypted it (every RELAY body
        and every decoded message, recorded inside the relay) contains none
        of the lines typed, in either direction, while the lines do arrive.
        Fails if the end-to-end layer stops encrypting (the text would sit
        in the RELAY payloads the relay reads).
        """
        h = ChatHarness(relay_class=RecordingRelay)
        alice, va, bob, vb = h.chat()
        relay = h.relay
        assert isinstance(relay, RecordingRelay)
        before = len(relay.relay_bodies)
        secrets = ["attack at dawn", "the password is swordfish", "meet at the old mill"]
        for i, line in enumerate(secrets):
            (alice if i % 2 == 0 else bob).say("bob" if i % 2 == 0 else "alice", line)
            h.pump()
        alice.stop("bob")
        h.pump()
        bodies = relay.relay_bodies[before:]
        # One RELAY per line at least: the recording saw the chat's traffic.
        self.assertGreaterEqual(len(bodies), len(secrets))
        seen = b"".join(bodies) + repr(relay.messages).encode()
        for line in secrets:
            for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
                self.assertNotIn(line.encode(encoding), seen)
        self.assertEqual([m[2] for m in vb.of("message")], secrets[0::2])
        self.assertEqual([m[2] for m in va.of("message")], secrets[1::2])



class EndToEndRuleTests(unittest.TestCase):
    """
    The rules of docs/protocol.rst 12.1 and 12.3 that keep a chat's two
    ends, and the relay, honest about what was said and how it ended.
    """

    def _broke_relay_rule(self, h: ChatHarness, client: ChatClient, view: RecordingView,
                          detail: str) -> None:
        self.assertFalse(client.logged_in)
        self.assertEqual(view.of("disconnected"), [(detail,)])
        error = client.protocol.error
        assert error is not None
        self.assertEqual(error.code, "unexpected-message")

    def test_relayedBeforeChatStarted(self) -> None:
        """
        Rule 12.3: a RELAYED from a user we have no chat with (here: before
        any CHAT_STARTED) breaks the relay's rules: the client ends the
        relay connection with C{unexpected-message} and says why.
        """
        h = ChatHarness()
        alice, va = h.client("alice")
        h.relay.sessions["alice"].deliver(Relayed("bob", b"\x00\x00\x00\x05\x01hello"))
        h.pump()
        self._broke_relay_rule(h, alice, va, "the relay sent end-to-end data from bob outside a chat")

    def test_relayedAfterChatEnded(self) -> None:
        """
        Rule 12.3: a RELAYED from the peer of a chat after its CHAT_ENDED
        (and before another CHAT_STARTED) is C{unexpected-message} too.
        """
        h = ChatHarness()
        alice, va, bob, vb = h.chat()
        alice.stop("bob")
        h.pump()
        self.assertEqual(alice.chats, {})
        h.relay.sessions["alice"].deliver(Relayed("bob", b"\x00\x00\x00\x05\x17late!"))
        h.pump()
        self._broke_relay_rule(h, alice, va, "the relay sent end-to-end data from bob outside a chat")

    def test_relayedForRefusedChatDropped(self) -> None:
        """
        Rule 12.3: after a client answered CHAT_STARTED with CHAT_STOP
        without opening the chat (the peer's key changed), the peer's
        handshake bytes may still come before CHAT_ENDED: they are dropped
        quietly, and so is that CHAT_ENDED.  After it, RELAYED from that
        peer is a broken rule again.
        """
        h = ChatHarness()
        pins = PinStore(None)
        pins.pin("bob", user_key("mallory").public_key())
        alice, va = h.client("alice", pins=pins)
        bob_key = keys.public_key_der(user_key("bob").public_key())
        alice.message_received(ChatStarted("bob", bob_key, 0))
        self.assertEqual(len(va.of("key_changed")), 1)
        alice.message_received(Relayed("bob", b"\x00\x00\x00\x05\x01hello"))
        alice.message_received(ChatEnded("bob", Reason.STOPPED))
        self.assertEqual(va.kinds(), ["key_changed"])
        e = self.assertRaises(RemoteProtocolError, alice.message_received,
                              Relayed("bob", b"\x00\x00\x00\x05\x01hello"))
        self.assertEqual(e.code, "unexpected-message")

    def test_textAfterEnd(self) -> None:
        """
        Rule 12.3: after the peer's END, a TEXT from it is
        C{unexpected-message}: the line is not shown, the chat fails with
        one security error, and both sides end it.
        """
        h = ChatHarness()
        alice, va, bob, vb = h.chat()
        chat = alice.chats["bob"]
        chat.connection.send(End(0))
        chat.connection.send(Text(1_700_000_000_000, "said after the end"))
        alice._flush_e2e(chat)
        h.pump()
        self.assertEqual(vb.of("message"), [])
        [(peer, detail)] = vb.of("security_error")
        self.assertEqual(
            detail, "end-to-end check failed: TEXT after alice's END [unexpected-message]")
        self.assertEqual(vb.of("chat_ended"), [("alice", "ended after a security error")])
        self.assertEqual((alice.chats, bob.chats), ({}, {}))

    def _opened(self, initiator: int) -> tuple[ChatClient, RecordingView, Any]:
        """
        alice with a chat with bob just opened by the relay (the handshake
        not run), in the role C{initiator} says.
        """
        h = ChatHarness()
        alice, va = h.client("alice")
        bob_key = keys.public_key_der(user_key("bob").public_key())
        alice.message_received(ChatStarted("bob", bob_key, initiator))
        return alice, va, alice.chats["bob"]

    def test_textBeforeReady(self) -> None:
        """
        Rule 12.3: READY is the responder's first message; a TEXT that
        reaches the initiator before it is C{unexpected-message}, and is not
        shown.
        """
        alice, va, chat = self._opened(initiator=1)
        alice._handle_e2e(chat, [MessageReceived(Text(1, "early"))])
        self.assertEqual(va.of("message"), [])
        self.assertEqual(va.of("security_error"), [
            ("bob", "end-to-end check failed: TEXT before READY [unexpected-message]")])

    def test_readyOutOfPlace(self) -> None:
        """
        Rule 12.3: a second READY, or a READY that reaches the responder,
        is C{unexpected-message}.
        """
        alice, va, chat = self._opened(initiator=1)
        alice._handle_e2e(chat, [MessageReceived(Ready()), MessageReceived(Ready())])
        self.assertEqual(va.of("chat_secured"), [("bob",)])
        self.assertEqual(va.of("security_error"), [
            ("bob", "end-to-end check failed: a second READY [unexpected-message]")])
        alice, va, chat = self._opened(initiator=0)
        alice._handle_e2e(chat, [MessageReceived(Ready())])
        self.assertEqual(va.of("security_error"), [
            ("bob", "end-to-end check failed: READY from the initiator [unexpected-message]")])

    def test_welcomeForAnotherName(self) -> None:
        """
        Rule 12.3 (of the relay): a WELCOME naming another user than the one
        this client logged in as is C{bad-value}; the client is not logged
        in, and says which names differ.
        """
        h = MaliciousHarness()
        h.relay.fake_welcome = "mallory"
        alice, va = h.client("alice", expect_login=False)
        h.pump()
        self.assertFalse(alice.logged_in)
        self.assertNotIn("logged_in", va.kinds())
        self.assertEqual(va.of("disconnected"),
                         [("the relay welcomed mallory, but this client logged in as alice",)])
        error = alice.protocol.error
        assert error is not None
        self.assertEqual(error.code, "bad-value")

    def test_secondWelcome(self) -> None:
        """
        A second WELCOME on one connection is C{unexpected-message}.
        """
        h = ChatHarness()
        alice, va = h.client("alice")
        h.relay.sessions["alice"].deliver(Welcome("alice", 1000))
        h.pump()
        self._broke_relay_rule(h, alice, va, "the relay sent a second WELCOME")

    def test_stopperNotTruncatedWhenPeerLeaves(self) -> None:
        """
        Rule 12.3: the side that stopped a chat is told it ended it, even
        when the relay reports the peer gone before our CHAT_STOP arrived
        (lines the peer sent after our END are refused to the peer, not
        lost): never TRUNCATED.
        """
        h = ChatHarness()
        alice, va, bob, vb = h.chat()
        alice.say("bob", "one")
        h.pump()
        alice.stop("bob")
        alice.message_received(ChatEnded("bob", Reason.GONE))
        self.assertEqual(va.of("chat_ended"),
                         [("bob", "ended by you (1 sent, 0 received; no end from bob)")])

    def test_stopperSeesPeersEnd(self) -> None:
        """
        Rule 12.3: when the peer's END arrived before our own stop took
        effect, the stopping side's outcome says so.
        """
        h = ChatHarness()
        alice, va, bob, vb = h.chat()
        bob.say("alice", "bye")
        h.pump()
        peer_chat = bob.chats["alice"]
        peer_chat.connection.send(End(peer_chat.sent))
        bob._flush_e2e(peer_chat)
        h.pump()
        alice.stop("bob")
        h.pump()
        self.assertEqual(va.of("chat_ended"),
                         [("bob", "ended by you (0 sent, 1 received; bob's end arrived too)")])
        self.assertEqual(vb.of("chat_ended"), [("alice", "ended by alice (0 messages received)")])

    def test_stopperLoggingOut(self) -> None:
        """
        Rule 12.3: logging out stops every chat; the relay connection closes
        before CHAT_ENDED can come, and the outcome is still "ended by you".
        """
        h = ChatHarness()
        alice, va, bob, vb = h.chat()
        alice.logout()
        h.pump()
        self.assertEqual(va.of("chat_ended"),
                         [("bob", "ended by you (0 sent, 0 received; no end from bob)")])

    def test_nothingSentAfterOwnEnd(self) -> None:
        """
        Rule 12.3: after a client sent END it sends nothing more in that
        chat: a line typed meanwhile is refused with a notice, and a second
        stop sends no second END, so the peer never sees a message after
        END and the chat ends cleanly on both sides.
        """
        h = ChatHarness()
        alice, va, bob, vb = h.chat()
        sent: list[str] = []
        send = alice._send
        alice._send = lambda m: (sent.append(type(m).__name__), send(m))  # type: ignore[method-assign]
        alice.stop("bob")
        alice.say("bob", "too late")
        alice.stop("bob")
        self.assertEqual(sent, ["Relay", "ChatStop"])
        h.pump()
        self.assertEqual(va.of("notice"), [("the chat with bob is ending; line not sent",)])
        self.assertEqual(vb.of("security_error"), [])
        self.assertEqual(vb.of("message"), [])
        self.assertEqual(vb.of("chat_ended"), [("alice", "ended by alice (0 messages received)")])

    def test_noLineAfterSecurityError(self) -> None:
        """
        Rule 12.3: between an end-to-end error and the relay's CHAT_ENDED, a
        line typed for that chat is refused with a notice (the failed
        connection can send nothing), and stopping it sends no END.
        """
        h = ChatHarness()
        alice, va, bob, vb = h.chat()
        bob._e2e_failed(bob.chats["alice"], RemoteProtocolError("bad-record-mac"))
        bob.say("alice", "are you there?")
        bob.stop("alice")
        self.assertEqual(vb.of("notice"), [("the chat with alice is ending; line not sent",)])
        h.pump()
        self.assertEqual(bob.chats, {})

    def test_oversizedPreAuthFrame(self) -> None:
        """
        Rule 12.1: before the end-to-end handshake has authenticated the
        peer, a frame may be at most 16384 bytes, as on the way to the
        relay, although the relay carries much larger payloads: a larger
        one is C{frame-too-large}, the user sees one security error for
        that chat, the chat is stopped on both sides, and another chat
        carries on.
        """
        self.assertEqual(PRE_AUTH_MAX_FRAME, 16384)
        h = MaliciousHarness()
        alice, va, bob, vb = h.chat()
        self.assertGreater(alice.max_payload, 20_000)
        carol, vc = h.client("carol")
        oversized = struct.pack(">IB", 20_000, 0x02) + b"\x00" * 19_999
        h.relay.tamper = lambda s, p, payload: [oversized] if s == "carol" else [payload]
        alice.request_chat("carol")
        h.pump()
        carol.accept("alice")
        h.pump()
        [(peer, detail)] = va.of("security_error")
        self.assertEqual(peer, "carol")
        self.assertIn("[frame-too-large]", detail)
        self.assertIn("16384", detail)
        self.assertNotIn("carol", alice.chats)
        self.assertNotIn("alice", carol.chats)
        alice.say("bob", "still here")
        h.pump()
        self.assertEqual(vb.of("message"), [("alice", 1_700_000_000.0, "still here")])


class RecordingRelay(RelayCore):
    """
    A relay that records what it is handed once the client-server layer
    has decrypted it: RELAY bodies (the hot path) and decoded messages.
    """

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.relay_bodies: list[bytes] = []
        self.messages: list[Any] = []

    def relay_all(self, session, items):  # type: ignore[no-untyped-def]
        self.relay_bodies.extend(bytes(body) for _, body in items)
        return super().relay_all(session, items)

    def handle(self, session, message):  # type: ignore[no-untyped-def]
        self.messages.append(message)
        return super().handle(session, message)
