"""
Tests for L{securechat.server.listeners}' TCP ports: the relay's TCP
connections are Twisted's (non-blocking, close-on-exec, ending as Twisted
ends them for both sides), less a C{shutdown()} before C{close()} and a
per-connection adapter lookup (issue 20).
"""

from __future__ import annotations

import fcntl
import os
import socket
from typing import Any

from twisted.internet import defer, reactor, unix
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.python.components import registerAdapter
from twisted.python.failure import Failure
from twisted.trial import unittest
from zope.interface import alsoProvides, implementer

from securechat.server import listeners
from securechat.server.listeners import RelayPort, RelayPortReactor, RelayServer


class Recorder(Protocol):
    """
    Records what it is told; C{lost} fires on close (with None: the reason
    is kept as C{reason}).
    """

    def __init__(self) -> None:
        self.received = b""
        self.lost: defer.Deferred[None] = defer.Deferred()
        self.lost_count = 0
        self.reason: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.lost_count += 1
        self.reason = reason
        self.lost.callback(None)


class Answer(Recorder):
    """
    Says C{hello} and closes as soon as it is connected.
    """

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(b"hello")
        self.transport.loseConnection()


@implementer(IHalfCloseableProtocol)
class HalfClose(Recorder):
    """
    When the peer stops writing, answers with what it heard and closes.
    """

    def readConnectionLost(self) -> None:
        assert self.transport is not None
        self.transport.write(b"heard " + self.received)
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass


class Servers(Factory):
    """
    Builds C{kind} protocols and keeps them.
    """

    noisy = False

    def __init__(self, kind: type[Recorder]) -> None:
        self.kind = kind
        self.built: list[Recorder] = []

    def buildProtocol(self, addr: Any) -> Recorder:
        protocol = self.kind()
        protocol.factory = self
        self.built.append(protocol)
        return protocol


class ListenerTests(unittest.TestCase):
    """
    C{listening_service} listens for TCP with L{RelayPort}s, whose
    connections are L{RelayServer}s, and they behave as Twisted's.
    """

    def listen(self, kind: type[Recorder], reuse_port: bool = False) -> tuple[Servers, Any]:
        factory = Servers(kind)
        service = listeners.listening_service("tcp:0:interface=127.0.0.1", factory, reuse_port)
        service.startService()
        self.addCleanup(service.stopService)
        port = service._waitingForPort.result  # type: ignore[attr-defined]
        return factory, port

    async def connect(self, port: Any, protocol: Recorder) -> Recorder:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        await connectProtocol(endpoint, protocol)
        return protocol

    @defer.inlineCallbacks
    def test_connectionsAreRelayServers(self) -> Any:
        """
        A plain TCP listener is a L{RelayPort}; its connections are
        L{RelayServer}s whose sockets are non-blocking and close-on-exec.
        """
        factory, port = self.listen(Recorder)
        self.assertIsInstance(port, RelayPort)
        client = yield defer.ensureDeferred(self.connect(port, Recorder()))
        while not factory.built:
            yield deferLater()
        server = factory.built[0]
        self.assertIsInstance(server.transport, RelayServer)
        skt = server.transport.getHandle()  # type: ignore[union-attr]
        self.assertFalse(skt.getblocking())
        self.assertTrue(fcntl.fcntl(skt.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
        self.assertFalse(os.get_inheritable(skt.fileno()))
        client.transport.loseConnection()
        yield server.lost

    @defer.inlineCallbacks
    def test_reusePortListenerToo(self) -> Any:
        """
        With C{--reuse-port}, the shared listener is a L{RelayPort} too,
        with C{SO_REUSEPORT} set.
        """
        _, port = self.listen(Answer, reuse_port=True)
        self.assertIsInstance(port, RelayPort)
        self.assertEqual(port.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT), 1)
        client = yield defer.ensureDeferred(self.connect(port, Recorder()))
        yield client.lost
        self.assertEqual(client.received, b"hello")

    @defer.inlineCallbacks
    def test_peerCloses(self) -> Any:
        """
        The peer's close ends the connection: the protocol has what was
        sent, then C{connectionLost} once, with C{ConnectionDone}.
        """
        factory, port = self.listen(Recorder)
        client = yield defer.ensureDeferred(self.connect(port, Recorder()))
        client.transport.write(b"bye")
        client.transport.loseConnection()
        while not factory.built:
            yield deferLater()
        server = factory.built[0]
        yield server.lost
        self.assertTrue(server.reason.check(ConnectionDone))  # type: ignore[union-attr]
        self.assertEqual((server.received, server.lost_count), (b"bye", 1))

    @defer.inlineCallbacks
    def test_relayCloses(self) -> Any:
        """
        The relay's close (C{close()} with no C{shutdown()} first) reaches
        the peer as an orderly end after every byte written, not a reset.
        """
        _, port = self.listen(Answer)
        client = yield defer.ensureDeferred(self.connect(port, Recorder()))
        yield client.lost
        self.assertTrue(client.reason.check(ConnectionDone))  # type: ignore[union-attr]
        self.assertEqual(client.received, b"hello")

    @defer.inlineCallbacks
    def test_halfCloseableStillHalfCloses(self) -> Any:
        """
        A half-closeable protocol is still told C{readConnectionLost} when
        the peer stops writing, and can still answer.
        """
        factory, port = self.listen(HalfClose)
        client = yield defer.ensureDeferred(self.connect(port, Recorder()))
        client.transport.write(b"question")
        client.transport.loseWriteConnection()
        yield client.lost
        self.assertTrue(client.reason.check(ConnectionDone))  # type: ignore[union-attr]
        self.assertEqual(client.received, b"heard question")


def deferLater() -> defer.Deferred[None]:
    """A Deferred that fires on the reactor's next turn."""
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(0, d.callback, None)  # type: ignore[attr-defined]
    return d


class ReadConnectionLostTests(unittest.TestCase):
    """
    L{RelayServer.readConnectionLost} tells a protocol what Twisted's
    would: C{connectionLost} for one that is not half-closeable (asking
    zope's registry once per class), C{readConnectionLost} otherwise.
    """

    def server_for(self, protocol: Any) -> tuple[RelayServer, list[Any]]:
        server = RelayServer.__new__(RelayServer)
        server.protocol = protocol
        lost: list[Any] = []
        server.connectionLost = lost.append  # type: ignore[method-assign]
        return server, lost

    def test_wholeProtocol(self) -> None:
        """
        A protocol that is not half-closeable is told C{connectionLost}
        with the reason, and its class is remembered as such.
        """
        class Whole(Protocol):
            pass
        reason = Failure(ConnectionDone())
        for _ in range(2):
            server, lost = self.server_for(Whole())
            server.readConnectionLost(reason)
            self.assertEqual(lost, [reason])
        self.assertIs(listeners._WHOLE_CLOSE[Whole], True)

    def test_instanceThatProvidesIt(self) -> None:
        """
        An instance that provides L{IHalfCloseableProtocol} itself is told
        C{readConnectionLost}, though its class is remembered as whole.
        """
        class Whole(Protocol):
            pass
        server, lost = self.server_for(Whole())
        server.readConnectionLost(Failure(ConnectionDone()))
        told: list[str] = []
        half = Whole()
        half.readConnectionLost = lambda: told.append("read")  # type: ignore[attr-defined]
        alsoProvides(half, IHalfCloseableProtocol)
        server, lost = self.server_for(half)
        server.readConnectionLost(Failure(ConnectionDone()))
        self.assertEqual((told, lost), (["read"], []))

    def test_adaptedClass(self) -> None:
        """
        A protocol whose class has an adapter to L{IHalfCloseableProtocol}
        has the adapter told C{readConnectionLost}, every time.
        """
        told: list[Any] = []

        class Adapted(Protocol):
            pass

        @implementer(IHalfCloseableProtocol)
        class Adapter:
            def __init__(self, original: Adapted) -> None:
                self.original = original

            def readConnectionLost(self) -> None:
                told.append(self.original)

            def writeConnectionLost(self) -> None:
                pass
        registerAdapter(Adapter, Adapted, IHalfCloseableProtocol)
        protocols = [Adapted(), Adapted()]
        for protocol in protocols:
            server, lost = self.server_for(protocol)
            server.readConnectionLost(Failure(ConnectionDone()))
            self.assertEqual(lost, [])
        self.assertEqual(told, protocols)
        self.assertIs(listeners._WHOLE_CLOSE[Adapted], False)


class ReactorTests(unittest.TestCase):
    """
    L{RelayPortReactor} makes TCP ports L{RelayPort}s and leaves the rest
    to the reactor.
    """

    def test_adoptedInternetSocket(self) -> None:
        """
        An adopted IPv4 listening socket (systemd's, C{--reuse-port}'s)
        becomes a L{RelayPort}.
        """
        skt = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(skt.close)
        skt.bind(("127.0.0.1", 0))
        skt.listen(5)
        skt.setblocking(False)
        port = RelayPortReactor(reactor).adoptStreamPort(skt.fileno(), socket.AF_INET,
                                                         Servers(Recorder))
        self.addCleanup(port.stopListening)
        self.assertIsInstance(port, RelayPort)
        self.assertEqual(port.getHost().port, skt.getsockname()[1])

    def test_adoptedUnixSocket(self) -> None:
        """
        An adopted UNIX socket is the reactor's own port.
        """
        path = self.mktemp()
        skt = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(skt.close)
        skt.bind(path)
        skt.listen(5)
        skt.setblocking(False)
        port = RelayPortReactor(reactor).adoptStreamPort(skt.fileno(), socket.AF_UNIX,
                                                         Servers(Recorder))
        self.addCleanup(port.stopListening)
        self.assertIsInstance(port, unix.Port)

    def test_restIsTheReactors(self) -> None:
        """
        Everything else is the reactor's, and the wrapper provides what
        the reactor provides (the endpoints check it).
        """
        from twisted.internet.interfaces import IReactorSocket, IReactorTCP
        ours = RelayPortReactor(reactor)
        self.assertEqual(ours.listenSSL, reactor.listenSSL)  # type: ignore[attr-defined]
        self.assertTrue(IReactorTCP.providedBy(ours))
        self.assertTrue(IReactorSocket.providedBy(ours))

    def test_otherReactorsLeftAlone(self) -> None:
        """
        A reactor that does not make Twisted's POSIX ports is used as it is.
        """
        from twisted.internet.testing import MemoryReactor
        other = MemoryReactor()
        self.assertIs(listeners._relay_ports(other), other)
        self.assertIsInstance(listeners._relay_ports(reactor), RelayPortReactor)
