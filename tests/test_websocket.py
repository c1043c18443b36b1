"""
Tests for the relay's WebSocket listener (L{securechat.server.websocket}):
a real WebSocket client (L{tests.ws_harness}) against the relay on the
in-memory network, beside TCP users; every limit TCP has, and the ones
only WebSocket needs.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import globalLogPublisher, formatEvent
from twisted.trial import unittest

from securechat.errors import Alert
from securechat.server.limits import Limits
from securechat.server.websocket import (CLOSE_TOO_BIG, CLOSE_UNSUPPORTED_DATA, SLICE,
                                         check_origin, max_message)
from securechat.wire.framing import encode_frame
from securechat.wire.relay import (ChatAccept, ChatEnded, ChatRequest, ChatRequested, ChatStarted,
                                   ChatStop, Reason, Relay, Relayed, RequestPending, Welcome)
from tests.ws_harness import ORIGIN, WebSocketClient, WebSocketHarness


def alert_in(client: WebSocketClient, alert: Alert) -> bool:
    """
    Whether a plaintext alert C{alert} came in a binary message.
    """
    return any(bytes([0x15, alert]) in m for m in client.received)


class LogLines:
    """
    The relay's log lines while a test runs.
    """

    def __init__(self, test: unittest.TestCase) -> None:
        self.lines: list[str] = []
        globalLogPublisher.addObserver(self._observe)
        test.addCleanup(globalLogPublisher.removeObserver, self._observe)

    def _observe(self, event: dict[str, Any]) -> None:
        self.lines.append(formatEvent(event))

    def matching(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]


class ChatOverWebSocketTests(unittest.TestCase):
    """
    A browser user is a relay user like any other.
    """

    def test_loginAndChatWithTcpUser(self) -> None:
        """
        A user logs in over a WebSocket (the same handshake as over TCP),
        chats with a TCP user, and both see each other's frames relayed:
        the transport changes nothing above the frames.
        """
        h = WebSocketHarness()
        alice, ws = h.connect_websocket("alice")
        self.assertTrue(ws.opened)
        self.assertTrue(alice.logged_in, alice.error)
        self.assertEqual(alice.take(), [Welcome("alice", Limits().max_payload)])
        bob = h.login("bob")
        alice.send(ChatRequest("bob"))
        h.pump()
        self.assertEqual(bob.take(), [ChatRequested("alice")])
        self.assertEqual(alice.take(), [RequestPending("bob")])
        bob.send(ChatAccept("alice"))
        h.pump()
        self.assertEqual([type(m) for m in alice.take()], [ChatStarted])
        self.assertEqual([type(m) for m in bob.take()], [ChatStarted])
        alice.send(Relay("bob", b"from the browser"))
        bob.send(Relay("alice", b"from the terminal"))
        h.pump()
        self.assertEqual(bob.take(), [Relayed("alice", b"from the browser")])
        self.assertEqual(alice.take(), [Relayed("bob", b"from the terminal")])
        alice.send(ChatStop("bob"))
        h.pump()
        self.assertEqual(bob.take(), [ChatEnded("alice", Reason.STOPPED)])
        alice.protocol.close()
        h.pump()
        self.assertIsNone(alice.error)
        self.assertNotIn("alice", h.relay.sessions)
        self.assertEqual(h.relay.gate.total, 0)

    def test_messageBoundariesCarryNoMeaning(self) -> None:
        """
        Frames split across binary messages (here: every message one to
        seven bytes) make the same byte stream: the login succeeds.
        """
        h = WebSocketHarness()
        client = WebSocketClient(None)
        sizes = iter(range(1, 10**6))
        original = client.send_bytes

        def split(data: bytes, finished: bool = True) -> None:
            while data:
                n = next(sizes) % 7 + 1
                original(data[:n])
                data = data[n:]
        client.send_bytes = split  # type: ignore[method-assign]
        from securechat.crypto.config import CLIENT_SERVER, Config, Role
        from securechat.protocol import SecureChatProtocol
        from securechat.wire.mailbox import MAILBOX_FROM_SERVER
        from securechat.wire.messages import UserIdentity
        from tests.relay_harness import RecordingClient, user_key
        alice = RecordingClient("alice")
        client.inner = SecureChatProtocol(
            Config(CLIENT_SERVER, Role.INITIATOR, user_key("alice"), UserIdentity("alice"),
                   registry=MAILBOX_FROM_SERVER), alice, h.clock, handshake_timeout=1e9)
        h.open(client)
        self.assertTrue(alice.logged_in, alice.error)

    def test_programWithoutOriginAccepted(self) -> None:
        """
        A client that sends no Origin is not a browser page (every browser
        sends one) and is let in: Origin guards browsers' users only.
        """
        h = WebSocketHarness()
        alice, ws = h.connect_websocket("alice", origin=None)
        self.assertTrue(alice.logged_in, alice.error)


class WebSocketLimitTests(unittest.TestCase):
    """
    The limits of TCP, and WebSocket's own, each hit.
    """

    def test_oversizeMessageRefused(self) -> None:
        """
        A binary message longer than the largest frame plus its length
        prefix is refused: close code 1009, FRAME_TOO_LARGE, one log line.
        """
        log = LogLines(self)
        h = WebSocketHarness()
        client = WebSocketClient()
        link = h.open(client)
        client.send_bytes(b"\x00" * (max_message(Limits()) + 1))
        h.pump()
        self.assertEqual(client.close_code, CLOSE_TOO_BIG)
        self.assertTrue(alert_in(client, Alert.FRAME_TOO_LARGE))
        self.assertTrue(link.closed)
        self.assertEqual(h.relay.gate.total, 0)
        self.assertEqual(len(log.matching(
            f"WebSocket message of {max_message(Limits()) + 1} bytes (at most 65540)")), 1)

    def test_largestMessageAccepted(self) -> None:
        """
        A message of exactly the limit is passed on to the frame layer
        (which then judges the frame inside: here an oversized one).
        """
        h = WebSocketHarness()
        client = WebSocketClient()
        h.open(client)
        client.send_bytes(b"\xff" * max_message(Limits()))
        h.pump()
        self.assertNotEqual(client.close_code, CLOSE_TOO_BIG)
        self.assertTrue(alert_in(client, Alert.FRAME_TOO_LARGE))

    def test_unfinishedMessageBounded(self) -> None:
        """
        A message that never finishes (fragments without end) is not
        buffered without bound: the connection ends with 1009 once the
        budget is spent, having taken at most one slice more.
        """
        h = WebSocketHarness()
        client = WebSocketClient()
        link = h.open(client)
        stream = link.server.stream
        for _ in range(40):
            client.send_bytes(b"\x00" * 8192, finished=False)
            h.pump()
        self.assertEqual(client.close_code, CLOSE_TOO_BIG)
        self.assertTrue(link.closed)
        self.assertLessEqual(stream.unread, stream.budget + SLICE)
        self.assertEqual(h.relay.gate.total, 0)

    def test_oversizeFrameRefusedBeforeBuffering(self) -> None:
        """
        A frame announcing more than the handshake maximum is refused as
        on TCP (FRAME_TOO_LARGE) from its length alone, though its body
        never comes.
        """
        h = WebSocketHarness()
        client = WebSocketClient()
        link = h.open(client)
        client.send_bytes((Limits().max_handshake_frame + 1).to_bytes(4, "big") + b"\x01")
        h.pump()
        self.assertTrue(alert_in(client, Alert.FRAME_TOO_LARGE))
        self.assertTrue(link.closed)

    def test_textMessageRefused(self) -> None:
        """
        Frames travel in binary messages only: a text message ends the
        connection with close code 1003 and UNEXPECTED_MESSAGE.
        """
        log = LogLines(self)
        h = WebSocketHarness()
        client = WebSocketClient()
        link = h.open(client)
        client.send_text("hello")
        h.pump()
        self.assertEqual(client.close_code, CLOSE_UNSUPPORTED_DATA)
        self.assertTrue(alert_in(client, Alert.UNEXPECTED_MESSAGE))
        self.assertTrue(link.closed)
        self.assertTrue(log.matching("a text WebSocket message"))

    def test_textMessageAfterLoginRefused(self) -> None:
        """
        A text message from a logged-in user ends its session too.
        """
        h = WebSocketHarness()
        alice, ws = h.connect_websocket("alice")
        ws.send_text("hello")
        h.pump()
        self.assertEqual(ws.close_code, CLOSE_UNSUPPORTED_DATA)
        self.assertNotIn("alice", h.relay.sessions)

    def test_badOriginRefused(self) -> None:
        """
        A page from an origin not on the allow-list gets HTTP 403, no
        WebSocket, and the relay logs one line naming the origin.
        """
        log = LogLines(self)
        h = WebSocketHarness()
        client = WebSocketClient(origin="https://evil.example")
        link = h.open(client)
        self.assertEqual(client.rejected, 403)
        self.assertIn(b"not allowed", client.reject_body)
        self.assertFalse(client.opened)
        self.assertTrue(link.closed)
        self.assertEqual(h.relay.gate.total, 0)
        self.assertEqual(len(log.matching(
            "refused a WebSocket connection from 10.0.0.7: WebSocket Origin "
            "'https://evil.example' is not allowed (see --websocket-origin)")), 1)

    def test_originMatchIgnoresCase(self) -> None:
        """
        Origins compare as the allow-list entries are written, scheme and
        host in any case (they are case-insensitive).
        """
        h = WebSocketHarness()
        alice, ws = h.connect_websocket("alice", origin=ORIGIN.upper())
        self.assertTrue(alice.logged_in, alice.error)

    def test_noOriginsAllowedByDefault(self) -> None:
        """
        With no allow-list, every browser page is refused.
        """
        h = WebSocketHarness(origins=())
        client = WebSocketClient()
        h.open(client)
        self.assertEqual(client.rejected, 403)

    def test_handshakeDeadlineCoversHttpRequest(self) -> None:
        """
        The handshake deadline runs from TCP accept: a client still
        trickling its HTTP request when it passes is disconnected.
        """
        h = WebSocketHarness(Limits(handshake_timeout=10))
        server = h.site.buildProtocol(None)  # type: ignore[arg-type]
        from tests.memnet import MemoryTransport
        from twisted.internet.address import IPv4Address
        addr = IPv4Address("TCP", "10.0.0.9", 1)
        transport = MemoryTransport(server, addr, addr, 65536)
        server.makeConnection(transport)
        request = b"GET /relay HTTP/1.1\r\nHost: relay.example\r\n"
        for i in range(9):
            h.clock.advance(1)
            server.dataReceived(request[i:i + 1])
        self.assertFalse(transport.disconnecting)
        h.clock.advance(1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(h.relay.gate.total, 0)

    def test_handshakeDeadlineAfterUpgrade(self) -> None:
        """
        An open WebSocket that does not complete the relay handshake in
        time is closed with TIMEOUT, as a TCP connection would be.
        """
        h = WebSocketHarness(Limits(handshake_timeout=10))
        client = WebSocketClient()
        link = h.open(client)
        self.assertTrue(client.opened)
        client.send_bytes(encode_frame(0x01, b"\x00" * 5)[:6])
        h.network.advance(9)
        self.assertFalse(link.closed)
        h.network.advance(1)
        self.assertTrue(alert_in(client, Alert.TIMEOUT))
        self.assertTrue(link.closed)

    def test_gateRefusalIsHttp503(self) -> None:
        """
        Past C{max_unauthenticated_per_host}, a new connection is refused
        at accept with HTTP 503 and the reason, as TCP's LIMIT_EXCEEDED.
        """
        h = WebSocketHarness(Limits(max_unauthenticated_per_host=1))
        first = WebSocketClient()
        h.open(first)
        second = WebSocketClient()
        link = h.open(second)
        self.assertEqual(second.rejected, 503)
        self.assertIn(b"too many connections from your address", second.reject_body)
        self.assertTrue(link.closed)
        self.assertEqual(h.relay.gate.total, 1)

    def test_requestBodyNotKept(self) -> None:
        """
        A request body (the upgrade is a GET) is discarded as it arrives,
        never stored.
        """
        h = WebSocketHarness()
        server = h.site.buildProtocol(None)  # type: ignore[arg-type]
        from tests.memnet import MemoryTransport
        from twisted.internet.address import IPv4Address
        addr = IPv4Address("TCP", "10.0.0.9", 1)
        transport = MemoryTransport(server, addr, addr, 65536)
        server.makeConnection(transport)
        server.dataReceived(b"POST /relay HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
        server.dataReceived(b"x" * 500_000)
        request = server.requests[0]
        self.assertEqual(request.content.getvalue(), b"")


class OriginOptionTests(unittest.TestCase):
    """
    The allow-list entries.
    """

    def test_origins(self) -> None:
        """
        An origin is scheme://host[:port]; case and a final slash do not
        matter.
        """
        self.assertEqual(check_origin("HTTPS://Chat.Example.org/"), "https://chat.example.org")
        self.assertEqual(check_origin("http://127.0.0.1:8080"), "http://127.0.0.1:8080")

    def test_notOrigins(self) -> None:
        """
        A URL with a path, another scheme or no host is refused, saying
        what an origin looks like.
        """
        for bad in ("chat.example.org", "https://chat.example.org/app", "ftp://x", "https://",
                    "https://u@x"):
            with self.assertRaises(ValueError) as e:
                check_origin(bad)
            self.assertIn("is not an origin: write scheme://host[:port]", str(e.exception))


class RealSocketTests(unittest.TestCase):
    """
    The relay's WebSocket listener on a real loopback port, reached with
    Twisted's own WebSocket client.
    """

    def test_loginOverLoopback(self) -> Any:
        """
        A registered user logs in through C{--listen-websocket} on a real
        socket with Twisted's WebSocket client (which sends no Origin, as
        a program), lists who is online, and logs out cleanly.
        """
        import datetime
        import os
        from cryptography.hazmat.primitives.asymmetric import ed25519
        from twisted.internet import reactor
        from twisted.internet.defer import Deferred
        from twisted.web.websocket import WebSocketClientEndpoint
        from securechat.crypto.config import CLIENT_SERVER, Config, Role
        from securechat.datadir import DataDir
        from securechat.protocol import SecureChatProtocol
        from securechat.server.service import relay_service
        from securechat.wire.mailbox import MAILBOX_FROM_SERVER
        from securechat.wire.messages import UserIdentity
        from securechat.wire.relay import ListOnline, OnlineList
        from tests.ws_harness import ClientWebSocket

        now = datetime.datetime.now(datetime.timezone.utc)
        path = os.path.join(self.mktemp(), "data")
        data = DataDir(path)
        data.init(["localhost"], now - datetime.timedelta(minutes=1))
        key = ed25519.Ed25519PrivateKey.generate()
        data.add_user("alice", key.public_key(), now)
        service = relay_service(path, [], None, Limits(), clock=reactor,
                                websocket=["tcp:0:interface=127.0.0.1"], origins=[ORIGIN])
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        port = service.websocket_listeners[0]._waitingForPort.result.getHost().port
        relay_key = service.relay.credentials.private_key.public_key()
        done: Deferred[list[Any]] = Deferred()

        class Alice:
            protocol: SecureChatProtocol

            def verify_peer(self, identity: Any) -> Any:
                return relay_key

            def established(self, peer: Any) -> None:
                pass

            def message_received(self, message: Any) -> None:
                if isinstance(message, Welcome):
                    self.protocol.send(ListOnline())
                elif isinstance(message, OnlineList):
                    done.callback([message])
                    self.protocol.close()

            def connection_ended(self, error: Any) -> None:
                if not done.called:
                    done.errback(AssertionError(f"connection ended: {error}"))

        config = Config(CLIENT_SERVER, Role.INITIATOR, key, UserIdentity("alice"),
                        registry=MAILBOX_FROM_SERVER)
        inner = SecureChatProtocol(config, Alice(), reactor)

        class Factory:
            def buildProtocol(self, url: str) -> ClientWebSocket:
                return ClientWebSocket(inner)

        endpoint = WebSocketClientEndpoint.new(reactor, f"ws://127.0.0.1:{port}/relay")
        Deferred.fromCoroutine(endpoint.connect(Factory())).addErrback(done.errback)

        def check(messages: list[Any]) -> None:
            self.assertEqual(messages, [OnlineList(("alice",), 1)])
        return done.addCallback(check)
