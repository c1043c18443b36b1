# -*- test-case-name: tests.test_reuseport -*-
"""
The relay's listening services: one per C{--listen} endpoint (the relay's
own protocol), and the HTTP ones of C{--listen-websocket} and C{--web}
(their C{/relay} a WebSocket).  With C{--reuse-port}, their C{tcp:},
C{tcp6:} and C{ssl:} endpoints listen with C{SO_REUSEPORT}
(L{securechat.server.reuseport}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from twisted.application import strports
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.interfaces import IReactorTime

from securechat.server.reuseport import ReusePortReactor, ReusePortUnavailable, applies_to
from securechat.server.startup import StartupError

if TYPE_CHECKING:
    from securechat.server.relay import RelayFactory
    from securechat.server.service import RelayService


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
    if reuse_port and applies_to(description):
        from twisted.internet import reactor
        try:
            sharing: Any = ReusePortReactor(reactor)
        except ReusePortUnavailable as e:
            raise StartupError(f"--reuse-port: {e}") from None
        return strports.service(description, factory, reactor=sharing)
    return strports.service(description, factory)


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
