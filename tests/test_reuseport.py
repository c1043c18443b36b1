"""
Tests for L{securechat.server.reuseport} and C{twistd securechat
--reuse-port}: several listeners, and several relay processes, on one
loopback port.
"""

from __future__ import annotations

import errno
import os
import socket
import types
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.endpoints import (SSL4ClientEndpoint, TCP4ClientEndpoint, connectProtocol,
                                        serverFromString)
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory, Protocol
from twisted.python import usage
from twisted.test import __file__ as twisted_test_file
from twisted.trial import unittest

from securechat.server import reuseport
from securechat.server.limits import Limits
from securechat.server.reuseport import (ReusePortReactor, ReusePortUnavailable, applies_to,
                                         reuse_port_socket)
from securechat.tap import Options

#: Connections tried before concluding the kernel never picks one of two
#: listeners (it picks by a hash of the connection's addresses, so each
#: connection from a new source port goes to either with even odds).
ATTEMPTS = 200


class Tell(Protocol):
    """
    Says which listener accepted the connection, then closes it.
    """

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.factory.tag)  # type: ignore[attr-defined]
        self.transport.loseConnection()


class Hear(Protocol):
    """
    Collects what the listener says; C{done} fires with it on close.
    """

    def __init__(self) -> None:
        self.received = b""
        self.done: defer.Deferred[bytes] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.done.callback(self.received)


def tagged(tag: bytes) -> Factory:
    factory = Factory.forProtocol(Tell)
    factory.tag = tag  # type: ignore[attr-defined]
    factory.noisy = False
    return factory


def reuse_option_set(port: Any) -> int:
    """
    The value of C{SO_REUSEPORT} on a Twisted listening port's socket.
    """
    return int(port.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT))


class SharedPortTests(unittest.TestCase):
    """
    Two listeners with C{SO_REUSEPORT} on one loopback port, in this
    process (the kernel treats them as it treats two processes' sockets of
    the same user).
    """

    def listen(self, port: int, tag: bytes) -> Any:
        listening = ReusePortReactor(reactor).listenTCP(port, tagged(tag), interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        return listening

    async def accepted_by(self, port: int, client: Any = None) -> bytes:
        endpoint = client or TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        hear = Hear()
        await connectProtocol(endpoint, hear)
        return await hear.done

    @defer.inlineCallbacks
    def test_twoListenersShareAPortAndBothAccept(self) -> Any:
        """
        A second listener binds the port the first one has, both sockets
        carry C{SO_REUSEPORT}, and new connections reach each of them (the
        kernel spreads them: within L{ATTEMPTS} connections both have
        answered).  With the first one stopped, the second takes every
        connection.
        """
        first = self.listen(0, b"first")
        port = first.getHost().port
        second = self.listen(port, b"second")
        self.assertEqual(second.getHost().port, port)
        self.assertEqual((reuse_option_set(first), reuse_option_set(second)), (1, 1))
        seen: set[bytes] = set()
        for _ in range(ATTEMPTS):
            seen.add((yield defer.ensureDeferred(self.accepted_by(port))))
            if seen == {b"first", b"second"}:
                break
        self.assertEqual(seen, {b"first", b"second"})
        yield first.stopListening()
        for _ in range(5):
            self.assertEqual((yield defer.ensureDeferred(self.accepted_by(port))), b"second")

    def test_plainListenerRefusedBesideShared(self) -> None:
        """
        A listener without C{SO_REUSEPORT} (a relay started without
        C{--reuse-port}) cannot take a port shared ones hold, and a shared
        one cannot take a port a plain one holds: the option must be on
        every process, and a mistake is a failed listen, not a split.
        """
        shared = self.listen(0, b"shared")
        port = shared.getHost().port
        with self.assertRaises(CannotListenError) as caught:
            reactor.listenTCP(port, tagged(b"plain"), interface="127.0.0.1")
        self.assertEqual(caught.exception.socketError.errno, errno.EADDRINUSE)
        plain = reactor.listenTCP(0, tagged(b"plain"), interface="127.0.0.1")
        self.addCleanup(plain.stopListening)
        with self.assertRaises(CannotListenError) as caught:
            ReusePortReactor(reactor).listenTCP(plain.getHost().port, tagged(b"x"),
                                               interface="127.0.0.1")
        self.assertEqual(caught.exception.socketError.errno, errno.EADDRINUSE)

    @defer.inlineCallbacks
    def test_endpointStringsMeanTheSame(self) -> Any:
        """
        Twisted's own parser reads the description: C{tcp:} with
        C{interface=} and C{backlog=} listens where it says, with
        C{SO_REUSEPORT}.
        """
        sharing = ReusePortReactor(reactor)
        endpoint = serverFromString(sharing, "tcp:0:interface=127.0.0.1:backlog=7")
        listening = yield endpoint.listen(tagged(b"parsed"))
        self.addCleanup(listening.stopListening)
        self.assertEqual(listening.getHost().host, "127.0.0.1")
        self.assertEqual(reuse_option_set(listening), 1)
        self.assertEqual((yield defer.ensureDeferred(self.accepted_by(listening.getHost().port))),
                         b"parsed")

    @defer.inlineCallbacks
    def test_tlsEndpointShares(self) -> Any:
        """
        An C{ssl:} endpoint listens with C{SO_REUSEPORT} too, and speaks
        TLS (the factory wrapped as the reactor's own C{listenSSL} wraps it).
        """
        from twisted.internet import ssl
        pem = os.path.join(os.path.dirname(twisted_test_file), "server.pem")
        description = f"ssl:0:interface=127.0.0.1:privateKey={pem}:certKey={pem}"
        first = yield serverFromString(ReusePortReactor(reactor), description).listen(
            tagged(b"tls one"))
        self.addCleanup(first.stopListening)
        port = first.getHost().port
        second = yield serverFromString(ReusePortReactor(reactor), description.replace(
            "ssl:0:", f"ssl:{port}:")).listen(tagged(b"tls two"))
        self.addCleanup(second.stopListening)
        self.assertEqual((reuse_option_set(first), reuse_option_set(second)), (1, 1))
        client = SSL4ClientEndpoint(reactor, "127.0.0.1", port, ssl.CertificateOptions())
        said = yield defer.ensureDeferred(self.accepted_by(port, client))
        self.assertIn(said, (b"tls one", b"tls two"))


class FakeSocket:
    """
    A socket that records what is done to it; C{refuse} maps a socket
    option to the errno setting it fails with.
    """

    def __init__(self, family: int, kind: int, refuse: dict[int, int]) -> None:
        self.family = family
        self.calls: list[tuple[Any, ...]] = []
        self.refuse = refuse
        self.closed = False

    def setsockopt(self, level: int, option: int, value: int) -> None:
        if option in self.refuse:
            raise OSError(self.refuse[option], os.strerror(self.refuse[option]))
        self.calls.append(("setsockopt", option, value))

    def bind(self, address: tuple[str, int]) -> None:
        self.calls.append(("bind", address))

    def listen(self, backlog: int) -> None:
        self.calls.append(("listen", backlog))

    def setblocking(self, flag: bool) -> None:
        self.calls.append(("setblocking", flag))

    def close(self) -> None:
        self.closed = True


class SocketOptionTests(unittest.TestCase):
    """
    L{reuse_port_socket}: the options set, in order, and the errors.
    """

    def make(self, refuse: dict[int, int] | None = None) -> tuple[list[FakeSocket], Any]:
        made: list[FakeSocket] = []

        def factory(family: int, kind: int) -> Any:
            made.append(FakeSocket(family, kind, refuse or {}))
            return made[-1]
        return made, factory

    def test_optionsBeforeBind(self) -> None:
        """
        C{SO_REUSEADDR} and C{SO_REUSEPORT} are set before the bind, then
        the socket listens with the backlog given and is non-blocking; an
        IPv6 interface gets an IPv6 socket.
        """
        made, factory = self.make()
        s = reuse_port_socket(7070, 9, "127.0.0.1", factory)
        self.assertEqual(made[0].family, socket.AF_INET)
        self.assertEqual(made[0].calls, [
            ("setsockopt", socket.SO_REUSEADDR, 1), ("setsockopt", socket.SO_REUSEPORT, 1),
            ("bind", ("127.0.0.1", 7070)), ("listen", 9), ("setblocking", False)])
        self.assertIs(s, made[0])
        reuse_port_socket(7070, 9, "::1", factory)
        self.assertEqual(made[1].family, socket.AF_INET6)

    def test_kernelRefusesTheOption(self) -> None:
        """
        A kernel without C{SO_REUSEPORT} (C{ENOPROTOOPT}) is a failed listen
        that says so and what is needed; the socket is closed.
        """
        made, factory = self.make({socket.SO_REUSEPORT: errno.ENOPROTOOPT})
        with self.assertRaises(CannotListenError) as caught:
            reuse_port_socket(7070, 50, "0.0.0.0", factory)
        error = caught.exception
        self.assertEqual((error.interface, error.port), ("0.0.0.0", 7070))
        self.assertEqual(error.socketError.errno, errno.ENOPROTOOPT)
        self.assertIn("the kernel refused SO_REUSEPORT (Protocol not available); --reuse-port "
                      "needs Linux 3.9 or later", error.socketError.strerror)
        self.assertTrue(made[0].closed)

    def test_platformWithoutTheOptionAtListen(self) -> None:
        """
        Asked to listen where there is no C{SO_REUSEPORT}, the listen fails
        with the reason and no socket is made.
        """
        self.patch(reuseport, "sys", types.SimpleNamespace(platform="darwin"))
        made, factory = self.make()
        with self.assertRaises(CannotListenError) as caught:
            reuse_port_socket(7070, 50, "127.0.0.1", factory)
        self.assertIn("this platform (darwin) has no SO_REUSEPORT that spreads connections",
                      caught.exception.socketError.strerror)
        self.assertEqual(made, [])


class PlatformTests(unittest.TestCase):
    """
    L{reuseport.reuse_port_option} and the reactor check.
    """

    def test_notLinux(self) -> None:
        """
        Where C{SO_REUSEPORT} does not spread connections (macOS, the BSDs),
        the option is refused, naming the platform and the alternative.
        """
        self.patch(reuseport, "sys", types.SimpleNamespace(platform="darwin"))
        with self.assertRaises(ReusePortUnavailable) as caught:
            reuseport.reuse_port_option()
        self.assertEqual(str(caught.exception),
                         "this platform (darwin) has no SO_REUSEPORT that spreads connections "
                         "among processes (Linux only); run one relay process per port behind a "
                         "TCP load balancer instead")

    def test_noConstant(self) -> None:
        """
        A Python whose C{socket} module has no C{SO_REUSEPORT} is refused.
        """
        self.patch(reuseport, "socket", types.SimpleNamespace())
        with self.assertRaises(ReusePortUnavailable) as caught:
            reuseport.reuse_port_option()
        self.assertIn("this Python has no socket.SO_REUSEPORT (Linux 3.9 or later is needed)",
                      str(caught.exception))

    def test_linux(self) -> None:
        """
        On Linux it is the socket module's C{SO_REUSEPORT}.
        """
        self.patch(reuseport, "sys", types.SimpleNamespace(platform="linux"))
        self.assertEqual(reuseport.reuse_port_option(), socket.SO_REUSEPORT)

    def test_reactorThatCannotAdopt(self) -> None:
        """
        A reactor that cannot adopt a listening socket is refused by name.
        """
        with self.assertRaises(ReusePortUnavailable) as caught:
            ReusePortReactor(object())
        self.assertIn("the reactor object cannot adopt a listening socket", str(caught.exception))

    def test_appliesTo(self) -> None:
        """
        TCP and TLS-over-TCP endpoints share; unix: paths and systemd:
        sockets do not.
        """
        for description in ("tcp:7070", "TCP:7070:interface=0.0.0.0", "tcp6:7070",
                            "ssl:7443:privateKey=k:certKey=c"):
            self.assertTrue(applies_to(description), description)
        for description in ("unix:/run/securechat.sock", "systemd:domain=INET:index=0"):
            self.assertFalse(applies_to(description), description)


class OptionTests(unittest.TestCase):
    """
    C{twistd securechat --reuse-port}.
    """

    def parse(self, *argv: str) -> Options:
        options = Options()
        options.exit_on_usage_error = False
        options.parseOptions(list(argv))
        return options

    def test_offByDefault(self) -> None:
        """
        Off unless given.
        """
        self.assertFalse(self.parse()["reuse-port"])
        self.assertTrue(self.parse("--reuse-port")["reuse-port"])

    def test_refusedWithoutAnEndpointToShare(self) -> None:
        """
        With only a unix: listener there is nothing to share: refused, saying
        what it applies to.
        """
        with self.assertRaises(usage.UsageError) as caught:
            self.parse("--reuse-port", "--listen", "unix:/tmp/sc-test.sock")
        self.assertIn("--reuse-port applies to tcp:, tcp6: and ssl: endpoints, and none is given",
                      str(caught.exception))

    def test_aWebsocketListenerIsEnough(self) -> None:
        """
        A tcp: --listen-websocket beside a unix: --listen is something to share.
        """
        options = self.parse("--reuse-port", "--listen", "unix:/tmp/sc-test.sock",
                             "--listen-websocket", "tcp:8080:interface=127.0.0.1")
        self.assertTrue(options["reuse-port"])

    def test_refusedOnAPlatformWithout(self) -> None:
        """
        Where the platform lacks Linux's C{SO_REUSEPORT}, the option is a
        usage error at start-up, before anything listens.
        """
        self.patch(reuseport, "sys", types.SimpleNamespace(platform="freebsd14"))
        with self.assertRaises(usage.UsageError) as caught:
            self.parse("--reuse-port")
        self.assertEqual(str(caught.exception),
                         "--reuse-port: this platform (freebsd14) has no SO_REUSEPORT that "
                         "spreads connections among processes (Linux only); run one relay "
                         "process per port behind a TCP load balancer instead")

    def test_helpExplains(self) -> None:
        """
        --help says what it does, that --metrics is not shared, and where
        the README explains running several processes.
        """
        text = " ".join(str(Options()).split())
        self.assertIn("--reuse-port", text)
        for words in ("SO_REUSEPORT", "several relay processes", "same port",
                      "--metrics is never shared", "Running several relay processes"):
            self.assertIn(words, text)


class ServiceTests(unittest.TestCase):
    """
    The relay's service tree with C{reuse_port}: which listeners share.
    """

    def test_clientAndWebsocketListenersShareMetricsDoesNot(self) -> None:
        """
        The --listen and --listen-websocket sockets carry C{SO_REUSEPORT};
        the --metrics one does not (each process answers for itself); a
        unix: listener is listened on as usual.
        """
        from twisted.internet.task import Clock

        from securechat.server.service import relay_service
        path = os.path.join(self.mktemp(), "data")
        unix = os.path.join(os.path.dirname(path), "relay.sock")
        service = relay_service(path, ["tcp:0:interface=127.0.0.1", f"unix:{unix}"],
                                "tcp:0:interface=127.0.0.1", Limits(), clock=Clock(),
                                websocket=["tcp:0:interface=127.0.0.1"], reuse_port=True)
        service.startService()
        self.addCleanup(service.stopService)

        def port(listener: Any) -> Any:
            return listener._waitingForPort.result
        tcp, unix_listener = service.listeners
        self.assertEqual(reuse_option_set(port(tcp)), 1)
        self.assertEqual(reuse_option_set(port(service.websocket_listeners[0])), 1)
        self.assertEqual(port(unix_listener).socket.family, socket.AF_UNIX)
        metrics = [s for s in service if s not in service.listeners
                   and s not in service.websocket_listeners and hasattr(s, "_waitingForPort")]
        self.assertEqual(len(metrics), 1)
        self.assertEqual(reuse_option_set(port(metrics[0])), 0)

    def test_withoutTheOptionNothingShares(self) -> None:
        """
        Without C{reuse_port} the --listen socket has no C{SO_REUSEPORT}.
        """
        from twisted.internet.task import Clock

        from securechat.server.service import relay_service
        path = os.path.join(self.mktemp(), "data")
        service = relay_service(path, ["tcp:0:interface=127.0.0.1"], None, Limits(),
                                clock=Clock())
        service.startService()
        self.addCleanup(service.stopService)
        self.assertEqual(reuse_option_set(service.listeners[0]._waitingForPort.result), 0)


class RelayProcessTests(unittest.TestCase):
    """
    Real C{twistd securechat} processes on one loopback port.
    """

    def test_secondRelayJoinsThePortAndTakesOver(self) -> None:
        """
        Two relays started with --reuse-port listen on one port (each says
        so, with the warning that each knows only its own users); a relay
        started without it cannot, in one line; when the first stops, users
        connecting to the port chat through the second.
        """
        from tests.test_endtoend import Deployment, listening_port, open_chat

        d = Deployment(self)
        first = d.relay("--listen", "tcp:0:interface=127.0.0.1", "--reuse-port")
        first.expect(r"--reuse-port: other relay processes may accept on this port too, and "
                     r"each knows only the users connected to it")
        port = listening_port(first)
        second = d.relay("--listen", f"tcp:{port}:interface=127.0.0.1", "--reuse-port")
        self.assertEqual(listening_port(second), port)
        second.expect(rf"listening on 127\.0\.0\.1:{port}\b")
        plain = d.relay("--listen", f"tcp:{port}:interface=127.0.0.1")
        plain.expect(rf"^twistd securechat: error: cannot listen on 127\.0\.0\.1:{port}: "
                     r"Address already in use$")
        self.assertEqual(plain.wait(), 1)
        first.stop()
        server = f"tcp:127.0.0.1:{port}"
        alice, bob = d.client("alice", server), d.client("bob", server)
        open_chat(alice, bob)
        alice.send("through the second relay")
        bob.expect(r"alice: through the second relay")
        for user in (alice, bob):
            user.send("!exit")
            self.assertEqual(user.wait(), 0)
