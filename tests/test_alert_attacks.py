"""
Forged alerts (issue 12, security defect 4): once a handshake has produced
keys, a plaintext ALERT frame, which anyone on the path can write, is not
believed (docs/protocol.rst, 8.3).  A man in the middle between a client
and the relay, or the relay itself between two clients, who injects a
"login refused" or "key rejected" alert, or a close-notify, makes the
connection count as interrupted: never a refused login or key, never a
clean end, and the terminal client reconnects.  The relay's real refusal,
sealed under its application key, is still believed.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.trial import unittest

from securechat.client.cli import is_final
from securechat.client.core import ChatClient, describe_error
from securechat.client.pins import PinStore
from securechat.crypto.config import CLIENT_SERVER, Config, Role
from securechat.errors import Alert as AlertCode
from securechat.errors import PeerAlert, UnauthenticatedAlert
from securechat.protocol import SecureChatProtocol
from securechat.wire.messages import Alert, UserIdentity, encode_frame_message
from securechat.wire.relay import FROM_SERVER
from tests.attack_tools import MITM
from tests.relay_harness import Harness, user_key
from tests.test_client_core import MaliciousHarness, RecordingView, verify_test_server

HANDSHAKE_FAILED = encode_frame_message(Alert(AlertCode.HANDSHAKE_FAILED, ""))
CLOSE_NOTIFY = encode_frame_message(Alert(AlertCode.CLOSE_NOTIFY, ""))

INTERRUPTED = ("the connection to the relay was interrupted (an unauthenticated alert "
               "arrived, which is not believed)")


class _Addr:
    host = "10.9.9.9"


def client_through(h: Harness, name: str,
                   tamper: Callable[[str, bytes], list[bytes]]) -> tuple[SecureChatProtocol,
                                                                         RecordingView]:
    """
    A real L{ChatClient} for C{name} whose traffic to the relay passes
    through a man in the middle running C{tamper}.
    """
    view = RecordingView()
    client = ChatClient(name, user_key(name), view, verify_test_server, PinStore(None))
    proto = SecureChatProtocol(
        Config(CLIENT_SERVER, Role.INITIATOR, user_key(name), UserIdentity(name),
               registry=FROM_SERVER),
        client, h.clock, handshake_timeout=1e9)
    mitm = MITM(tamper)
    h.network.connect(mitm.facing_relay, h.factory.buildProtocol(_Addr()))
    h.network.connect(proto, mitm.facing_client)
    h.pump()
    return proto, view


def inject_after(count: int, forged: bytes) -> Callable[[str, bytes], list[bytes]]:
    """
    A tamper function that passes the relay's first C{count} frames to the
    client, sends C{forged} right after them, and drops the rest.
    """
    seen = [0]

    def tamper(direction: str, frame: bytes) -> list[bytes]:
        if direction == "up":
            return [frame]
        seen[0] += 1
        if seen[0] < count:
            return [frame]
        return [frame, forged] if seen[0] == count else []
    return tamper


class ClientServerForgedAlertTests(unittest.TestCase):
    """
    A man in the middle between a client and the relay forges alerts.
    """

    def assertInterrupted(self, proto: SecureChatProtocol, view: RecordingView,
                          alert: int) -> None:
        error = proto.error
        self.assertIsInstance(error, UnauthenticatedAlert)
        self.assertNotIsInstance(error, PeerAlert)
        assert isinstance(error, UnauthenticatedAlert)
        self.assertEqual(error.code, "unauthenticated-alert")
        self.assertEqual(error.peer_alert, alert)
        self.assertEqual(view.of("disconnected"), [(INTERRUPTED,)])
        self.assertNotIn("refused", INTERRUPTED)
        self.assertFalse(is_final(error), "the client must reconnect")

    def test_forgedRefusalAfterHelloReply(self) -> None:
        """
        A plaintext HANDSHAKE_FAILED ("unknown user") injected right after
        the relay's HELLO_REPLY, where the client already holds handshake
        keys, is reported as an interrupted connection and the client
        reconnects; it is not a refused login.
        """
        h = Harness()
        proto, view = client_through(h, "alice", inject_after(1, HANDSHAKE_FAILED))
        self.assertInterrupted(proto, view, AlertCode.HANDSHAKE_FAILED)

    def test_forgedRefusalAfterRelayAuth(self) -> None:
        """
        The same alert injected after the relay's AUTH record, when the
        client has sent its own AUTH and is waiting for the relay's answer
        (where the real refusal would come), is not believed either.
        """
        h = Harness()
        proto, view = client_through(h, "alice", inject_after(2, HANDSHAKE_FAILED))
        self.assertInterrupted(proto, view, AlertCode.HANDSHAKE_FAILED)

    def test_forgedCloseNotifyBeforeWelcome(self) -> None:
        """
        A plaintext CLOSE_NOTIFY in the same place is not a clean end (after
        which the client would not reconnect): it is an interruption.
        """
        h = Harness()
        proto, view = client_through(h, "alice", inject_after(2, CLOSE_NOTIFY))
        self.assertInterrupted(proto, view, AlertCode.CLOSE_NOTIFY)

    def test_forgedAlertsAfterLogin(self) -> None:
        """
        After WELCOME, forged ACCESS_REVOKED and CLOSE_NOTIFY alerts are
        interruptions too.
        """
        for alert in (AlertCode.ACCESS_REVOKED, AlertCode.CLOSE_NOTIFY):
            h = Harness()
            proto, view = client_through(
                h, "alice", inject_after(3, encode_frame_message(Alert(alert, "forged"))))
            self.assertIn(("logged_in", "alice"), view.seen)
            self.assertInterrupted(proto, view, alert)

    def test_realRefusalBelieved(self) -> None:
        """
        The relay's own refusal of an unknown user, sealed under its
        application key and passed on unchanged, is believed: a refused
        login, final.
        """
        h = Harness()
        proto, view = client_through(h, "mallory", lambda direction, frame: [frame])
        error = proto.error
        self.assertIsInstance(error, PeerAlert)
        self.assertEqual(view.of("disconnected"), [(describe_error(error, False),)])
        self.assertIn("the relay refused the login", view.of("disconnected")[0][0])
        self.assertTrue(is_final(error))

    def test_realRefusalRewrittenInTheClear(self) -> None:
        """
        A man in the middle who drops the relay's sealed refusal and sends
        the same alert in the clear gains nothing: interrupted, not refused.
        """
        def clear(direction: str, frame: bytes) -> list[bytes]:
            if direction == "down" and frame[4] == 0x17 and frame[5:13] == bytes(8) and clear.auth:
                return [HANDSHAKE_FAILED]
            if direction == "down" and frame[4] == 0x17:
                clear.auth = True
            return [frame]
        clear.auth = False  # type: ignore[attr-defined]
        h = Harness()
        proto, view = client_through(h, "mallory", clear)
        self.assertInterrupted(proto, view, AlertCode.HANDSHAKE_FAILED)


class EndToEndForgedAlertTests(unittest.TestCase):
    """
    The relay, between two clients, forges end-to-end alerts.
    """

    def chat_with_forgery(self, forger: str, nth: int, forged: bytes) -> tuple[Any, Any]:
        """
        alice asks bob for a chat; the relay replaces the C{nth} end-to-end
        payload C{forger} sends with C{forged}, and drops that sender's
        later ones.
        """
        h = MaliciousHarness()
        count = [0]

        def tamper(sender: str, target: str, payload: bytes) -> list[bytes]:
            if sender != forger:
                return [payload]
            count[0] += 1
            if count[0] < nth:
                return [payload]
            return [forged] if count[0] == nth else []
        h.relay.tamper = tamper
        alice, va, bob, vb = h.chat()
        return va, vb

    def assertInterrupted(self, view: RecordingView, peer: str) -> None:
        [(who, detail)] = view.of("security_error")
        self.assertEqual(who, peer)
        self.assertIn(f"the end-to-end session with {peer} was interrupted", detail)
        self.assertNotIn("rejected", detail)
        self.assertNotIn(("chat_secured", peer), view.seen)

    def test_forgedRejectionToInitiator(self) -> None:
        """
        In place of bob's READY, the relay sends alice a plaintext
        HANDSHAKE_FAILED "from bob" (as if bob's client rejected her key):
        alice reports the session interrupted, not her key rejected.
        """
        va, vb = self.chat_with_forgery("bob", 2, HANDSHAKE_FAILED)
        self.assertInterrupted(va, "bob")

    def test_forgedRejectionToResponder(self) -> None:
        """
        In place of alice's AUTH, the relay sends bob a plaintext
        HANDSHAKE_FAILED "from alice": bob reports the session interrupted.
        """
        va, vb = self.chat_with_forgery("alice", 2, HANDSHAKE_FAILED)
        self.assertInterrupted(vb, "alice")

    def test_forgedCloseNotify(self) -> None:
        """
        In place of bob's READY, a plaintext CLOSE_NOTIFY: not a clean end
        of the chat but an interruption.
        """
        va, vb = self.chat_with_forgery("bob", 2, CLOSE_NOTIFY)
        self.assertInterrupted(va, "bob")

    def test_realRejectionBelieved(self) -> None:
        """
        bob's client really rejecting alice (the relay handed bob another
        key for her) is sealed under bob's application key and believed:
        alice is told bob's client rejected the session.
        """
        from securechat.crypto import keys
        h = MaliciousHarness()
        h.relay.fake_keys = {"alice": keys.public_key_der(user_key("mallory").public_key())}
        alice, va, bob, vb = h.chat()
        [(who, detail)] = va.of("security_error")
        self.assertEqual(who, "bob")
        self.assertIn("bob's client rejected the end-to-end session", detail)
