# -*- test-case-name: tests.test_reuseport -*-
"""
The relay's listening services: one per C{--listen} endpoint (the relay's
own protocol), and the HTTP ones of C{--listen-websocket} and C{--web}
(their C{/relay} a WebSocket).  With C{--reuse-port}, their C{tcp:},
C{tcp6:} and C{ssl:} endpoints listen with C{SO_REUSEPORT}
(L{securechat.server.reuseport}).

Their TCP connections (C{tcp:}, C{tcp6:}, and sockets adopted from
systemd or for C{--reuse-port}) are Twisted's, with two system-level
costs of each connection's end left out (L{RelayServer}): a relay after a
restart is mostly connections that log in and end.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any, Sequence

from twisted.application import strports
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import tcp
from twisted.internet.interfaces import IHalfCloseableProtocol, IListeningPort, IReactorTime
from twisted.python.failure import Failure
from zope.interface import directlyProvides, providedBy

from securechat.server.reuseport import ReusePortReactor, ReusePortUnavailable, applies_to
from securechat.server.startup import StartupError

if TYPE_CHECKING:
    from securechat.server.relay import RelayFactory
    from securechat.server.service import RelayService


#: Per protocol class: whether Twisted's C{IHalfCloseableProtocol(protocol,
#: None)} finds nothing for an instance that does not provide it itself
#: (no adapter registered for the class when it was first asked).
_WHOLE_CLOSE: dict[type, bool] = {}


class RelayServer(tcp.Server):
    """
    Twisted's server-side TCP connection, less two costs of its end that
    change nothing the relay or its peers see:

      - no C{shutdown()} before C{close()}: the socket is close-on-exec
        (Python's C{accept4}) and never shared with another process, so
        C{close()} alone ends the connection the same way (Twisted's own
        comment says the shutdown "isn't really necessary");
      - when the peer closes, a protocol that is not half-closeable is told
        C{connectionLost} as Twisted tells it, without asking zope's
        adapter registry again on every connection (about 3 µs) whether
        the protocol's class can be adapted to
        L{IHalfCloseableProtocol}: asked once per class (an instance that
        provides it itself is still asked every time).
    """

    _shouldShutdown = False

    def readConnectionLost(self, reason: Failure) -> None:
        protocol = self.protocol
        kind = type(protocol)
        whole = _WHOLE_CLOSE.get(kind)
        if whole is None:
            whole = _WHOLE_CLOSE[kind] = (
                not IHalfCloseableProtocol.providedBy(protocol)
                and IHalfCloseableProtocol(protocol, None) is None)
        if whole and not IHalfCloseableProtocol.providedBy(protocol):
            self.connectionLost(reason)
        else:
            super().readConnectionLost(reason)


class RelayPort(tcp.Port):
    """
    Twisted's TCP listening port, whose connections are L{RelayServer}s.
    """

    transport = RelayServer


class RelayPortReactor:
    """
    The reactor as an endpoint sees it, except that TCP listening ports
    (C{listenTCP}, and C{adoptStreamPort} of an IPv4 or IPv6 socket: the
    systemd and C{--reuse-port} ones) are L{RelayPort}s; anything else is
    the reactor's own.
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        # What the endpoints check (IReactorTCP, IReactorSocket, ...).
        directlyProvides(self, providedBy(reactor))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)

    def listenTCP(self, port: int, factory: Any, backlog: int = 50,
                  interface: str = "") -> IListeningPort:
        listening = RelayPort(port, factory, backlog, interface, self._reactor)
        listening.startListening()
        return listening

    def adoptStreamPort(self, fileDescriptor: int, addressFamily: int, factory: Any
                        ) -> IListeningPort:
        if addressFamily not in (socket.AF_INET, socket.AF_INET6):
            port: IListeningPort = self._reactor.adoptStreamPort(fileDescriptor, addressFamily,
                                                                 factory)
            return port
        listening = RelayPort._fromListeningDescriptor(self._reactor, fileDescriptor,
                                                       addressFamily, factory)
        listening.startListening()
        return listening


def listening_service(description: str, factory: Any, reuse_port: bool = False
             ) -> StreamServerEndpointService:
    """
    The listening service for C{description} (a failed listen stops
    start-up: strports raises it synchronously); with C{reuse_port}, a
    C{tcp:}, C{tcp6:} or C{ssl:} one listens with C{SO_REUSEPORT}.

    @raise StartupError: C{reuse_port} on a reactor that cannot adopt a
        listening socket.
    @raise ValueError: (and the other errors of Twisted's endpoint parser)
        for a description that does not parse.
    """
    from twisted.internet import reactor
    ours = _relay_ports(reactor)
    if reuse_port and applies_to(description):
        try:
            sharing: Any = ReusePortReactor(ours)
        except ReusePortUnavailable as e:
            raise StartupError(f"--reuse-port: {e}") from None
        return strports.service(description, factory, reactor=sharing)
    return strports.service(description, factory, reactor=ours)


def _relay_ports(reactor: Any) -> Any:
    """
    L{RelayPortReactor} around C{reactor} when it makes Twisted's own TCP
    ports (the POSIX reactors), else C{reactor} itself.
    """
    from twisted.internet.posixbase import PosixReactorBase
    return RelayPortReactor(reactor) if isinstance(reactor, PosixReactorBase) else reactor


def websocket_listeners(service: RelayService, factory: RelayFactory, websocket: Sequence[str],
                        origins: Sequence[str], clock: IReactorTime, web: str | None,
                        reuse_port: bool = False) -> None:
    """
    One HTTP listener per C{--listen-websocket} endpoint, all serving one
    L{RelayWebSocketSite}, and the web listener (C{--web}).
    """
    from securechat.server.web import web_site
    from securechat.server.websocket import RelayWebSocketSite
    site = RelayWebSocketSite(factory, origins, clock)
    wanted = [("--listen-websocket", d, site) for d in websocket]
    if web is not None:
        wanted.append(("--web", web, web_site(factory, origins, clock)))
    for option, description, http in wanted:
        try:
            listening = listening_service(description, http, reuse_port)
        except (ValueError, TypeError, OSError, IndexError, KeyError) as e:
            raise StartupError(f"cannot use {option} {description!r}: {e}") from None
        listening.setServiceParent(service)
        if option == "--web":
            service.web_listener = listening
        else:
            service.websocket_listeners.append(listening)
    if not origins:
        service.log.warn("no --websocket-origin given: the WebSocket refuses every web page "
                         "(only programs that send no Origin can use it)")
