"""
Tools for attacking the relay in memory (over L{tests.memnet}):

  - L{RawClient}: sends any bytes at any time; can also run a real
    handshake (L{RawClient.login}) and then seal anything it likes, with
    its session keys and counters in reach;
  - L{MITM}: sits between an honest client and the relay and can drop,
    duplicate, reorder, delay, inject or rewrite whole frames;
  - L{Canary}: two users chatting through the same relay, checked before
    and after every attack;
  - L{assert_fail_closed}: the definition of failing closed, as one check.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.protocol import Protocol
from twisted.trial import unittest

from securechat.crypto.config import CLIENT_SERVER, Config, Role
from securechat.crypto.events import HandshakeComplete, PeerIdentityReceived
from securechat.crypto.handshake import Connection
from securechat.wire.framing import FrameDecoder
from securechat.wire.messages import UserIdentity
from securechat.wire.relay import FROM_SERVER, ChatAccept, ChatRequest, Relay, Relayed
from tests.memnet import Link
from tests.relay_harness import SERVER_KEY, Harness, RecordingClient, user_key


class RawClient(Protocol):
    """
    A client that writes whatever the test says, and records what the relay
    sends back.
    """

    def __init__(self) -> None:
        self.received = b""
        self.connection: Connection | None = None
        self.events: list[Any] = []
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if self.connection is not None:
            events = self.connection.receive_data(data)
            for event in events:
                if isinstance(event, PeerIdentityReceived):
                    events.extend(self.connection.accept_peer(SERVER_KEY.public_key()))
            self.events.extend(events)
            self.flush()

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = True

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def flush(self) -> None:
        if self.connection is not None:
            data = self.connection.data_to_send()
            if data:
                self.write(data)

    def login(self, name: str, key: Any = None) -> None:
        """
        Start a real handshake as C{name} (completed as the network pumps).
        """
        self.connection = Connection(Config(
            CLIENT_SERVER, Role.INITIATOR, key or user_key(name), UserIdentity(name),
            registry=FROM_SERVER))
        self.connection.initiate()
        self.flush()

    @property
    def established(self) -> bool:
        return any(isinstance(e, HandshakeComplete) for e in self.events)

    def seal(self, plaintext: bytes) -> bytes:
        """
        A record carrying exactly C{plaintext} under our application key.
        """
        assert self.connection is not None and self.connection._sealer is not None
        return self.connection._sealer.seal(plaintext)

    def frames(self) -> list[bytes]:
        """
        The frames the relay sent, as far as they are complete.
        """
        decoder = FrameDecoder(2**31)
        decoder.feed(self.received)
        out = []
        while (frame := decoder.next_frame()) is not None:
            out.append(frame)
        return out


class _Half(Protocol):
    def __init__(self, mitm: MITM, direction: str) -> None:
        self.mitm = mitm
        self.direction = direction
        self.decoder = FrameDecoder(2**31)
        self.other: _Half | None = None

    def dataReceived(self, data: bytes) -> None:
        self.decoder.feed(data)
        while (frame := self.decoder.next_frame()) is not None:
            for out in self.mitm.tamper(self.direction, frame):
                assert self.other is not None and self.other.transport is not None
                self.other.transport.write(out)

    def connectionLost(self, reason: Any = None) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.loseConnection()


class MITM:
    """
    A frame-aware man in the middle.  C{tamper(direction, frame)} returns
    the frames to pass on (C{"up"}: client to relay, C{"down"}: relay to
    client); the default passes everything.  C{held} keeps frames a tamper
    function delays.
    """

    def __init__(self, tamper: Callable[[str, bytes], list[bytes]] | None = None) -> None:
        self.tamper = tamper or (lambda direction, frame: [frame])
        self.facing_client = _Half(self, "up")
        self.facing_relay = _Half(self, "down")
        self.facing_client.other = self.facing_relay
        self.facing_relay.other = self.facing_client
        self.held: list[bytes] = []


def connect_raw(h: Harness, host: str = "10.6.6.6") -> tuple[RawClient, Any, Link]:
    """
    A raw client connected to a fresh relay protocol; returns the client,
    the relay's protocol and the link.
    """
    raw = RawClient()
    server = h.factory.buildProtocol(_Addr(host))
    link = h.network.connect(raw, server, client_host=host)
    return raw, server, link


def connect_through(h: Harness, name: str, mitm: MITM) -> tuple[RecordingClient, Any]:
    """
    An honest client for C{name} whose traffic passes through C{mitm}.
    """
    from securechat.protocol import SecureChatProtocol

    client = RecordingClient(name)
    proto = SecureChatProtocol(
        Config(CLIENT_SERVER, Role.INITIATOR, user_key(name), UserIdentity(name), registry=FROM_SERVER),
        client, h.clock, handshake_timeout=1e9)
    server = h.factory.buildProtocol(_Addr("10.7.7.7"))
    h.network.connect(mitm.facing_relay, server)
    h.network.connect(proto, mitm.facing_client)
    return client, server


class Canary:
    """
    Two users (carol and dave) chatting through the relay under attack.
    """

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.carol = h.login("carol", host="10.1.1.1")
        self.dave = h.login("dave", host="10.1.1.2")
        self.carol.send(ChatRequest("dave"))
        h.pump()
        self.dave.send(ChatAccept("carol"))
        h.pump()
        self.carol.take()
        self.dave.take()
        self.count = 0

    def check(self, test: unittest.TestCase) -> None:
        """
        A message each way arrives, and nobody saw an error.
        """
        self.count += 1
        payload = f"canary {self.count}".encode()
        self.carol.send(Relay("dave", payload))
        self.dave.send(Relay("carol", payload))
        self.h.pump()
        test.assertEqual(self.dave.take(), [Relayed("carol", payload)])
        test.assertEqual(self.carol.take(), [Relayed("dave", payload)])
        test.assertFalse(self.carol.ended or self.dave.ended)


def assert_fail_closed(test: unittest.TestCase, h: Harness, server: Any, code: str,
                       canary: Canary, online_before: set[str]) -> None:
    """
    The attacked connection failed with C{code} and is closing; the relay's
    sessions are what they were; the canary chat still works.
    """
    test.assertIsNotNone(server.error, "the connection did not fail")
    test.assertEqual(server.error.code, code, server.error)
    test.assertTrue(server.transport.disconnecting, "the connection is not closing")
    test.assertEqual(set(h.relay.sessions), online_before)
    canary.check(test)


class _Addr:
    def __init__(self, host: str) -> None:
        self.host = host
