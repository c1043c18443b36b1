# -*- test-case-name: tests.test_reuseport -*-
"""
Listening with C{SO_REUSEPORT} (C{twistd securechat --reuse-port}): several
relay processes on one host accept on one TCP port, and the kernel spreads
new connections among them.

Twisted's own endpoint parser reads the C{--listen} description as usual,
given L{ReusePortReactor} instead of the reactor: its C{listenTCP} (and
C{listenSSL}, which wraps the factory in TLS as the reactor does) makes the
listening socket itself, with C{SO_REUSEADDR} and C{SO_REUSEPORT} set before
C{bind}, and hands it to the real reactor with C{adoptStreamPort}; anything
else is the real reactor's.  So C{tcp:}, C{tcp6:} and C{ssl:} descriptions
mean exactly what they mean without the option.

Only Linux is accepted: its C{SO_REUSEPORT} balances new connections across
the sockets (since 3.9), and only among sockets of the same effective user,
so another user's process cannot take a share of the port.  Elsewhere the
option exists with other meanings (on macOS and the BSDs the last socket
bound gets every connection), so there the option is refused at start-up
rather than seeming to work.
"""

from __future__ import annotations

import errno
import socket
import sys
from typing import Any, Callable

from twisted.internet.abstract import isIPv6Address
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IReactorSocket

#: The endpoint kinds --reuse-port applies to (what they listen with is
#: C{listenTCP} or C{listenSSL}).
KINDS = ("tcp", "tcp6", "ssl")


class ReusePortUnavailable(Exception):
    """
    This platform cannot share a port among processes the way
    C{--reuse-port} promises; the message says why, in one sentence.
    """


def reuse_port_option() -> int:
    """
    The socket option number of C{SO_REUSEPORT}.

    @raise ReusePortUnavailable: not on Linux, or Python's C{socket} module
        has no C{SO_REUSEPORT} here.
    """
    platform = sys.platform
    option = getattr(socket, "SO_REUSEPORT", None)
    if not platform.startswith("linux"):
        raise ReusePortUnavailable(
            f"this platform ({platform}) has no SO_REUSEPORT that spreads connections among "
            "processes (Linux only); run one relay process per port behind a TCP load balancer "
            "instead")
    if option is None:
        raise ReusePortUnavailable(
            "this Python has no socket.SO_REUSEPORT (Linux 3.9 or later is needed); run one "
            "relay process per port behind a TCP load balancer instead")
    return int(option)


def applies_to(description: str) -> bool:
    """
    Whether C{--reuse-port} changes how C{description} listens: a
    C{tcp:}, C{tcp6:} or C{ssl:} endpoint (C{unix:} paths cannot be shared,
    and C{systemd:} sockets are made by systemd: C{ReusePort=} in the
    socket unit).
    """
    return description.split(":", 1)[0].strip().lower() in KINDS


def reuse_port_socket(port: int, backlog: int, interface: str,
                      make_socket: Callable[[int, int], socket.socket] | None = None
                      ) -> socket.socket:
    """
    A non-blocking socket listening on C{interface}:C{port} with
    C{SO_REUSEADDR} (as Twisted sets it) and C{SO_REUSEPORT}.

    @raise CannotListenError: the kernel refused C{SO_REUSEPORT}, the bind
        or the listen; the error says which.
    """
    try:
        option = reuse_port_option()
    except ReusePortUnavailable as e:
        raise CannotListenError(interface, port, OSError(errno.ENOPROTOOPT, str(e))) from None
    family = socket.AF_INET6 if isIPv6Address(interface) else socket.AF_INET
    s = (make_socket or socket.socket)(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.setsockopt(socket.SOL_SOCKET, option, 1)
        except OSError as e:
            raise CannotListenError(interface, port, OSError(
                e.errno, f"the kernel refused SO_REUSEPORT ({e.strerror}); --reuse-port needs "
                "Linux 3.9 or later")) from None
        try:
            s.bind((interface, port))
            s.listen(backlog)
        except OSError as e:
            raise CannotListenError(interface, port, e) from None
        s.setblocking(False)
    except BaseException:
        s.close()
        raise
    return s


class ReusePortReactor:
    """
    The reactor as an endpoint sees it, except that TCP (and TLS over TCP)
    listening sockets get C{SO_REUSEPORT}.
    """

    def __init__(self, reactor: Any,
                 make_socket: Callable[[int, int], socket.socket] | None = None) -> None:
        if not IReactorSocket.providedBy(reactor):
            raise ReusePortUnavailable(
                f"the reactor {type(reactor).__name__} cannot adopt a listening socket "
                "(IReactorSocket); --reuse-port needs one of the POSIX reactors")
        self._reactor = reactor
        self._make_socket = make_socket

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)

    def listenTCP(self, port: int, factory: Any, backlog: int = 50,
                  interface: str = "") -> IListeningPort:
        s = reuse_port_socket(port, backlog, interface, self._make_socket)
        try:
            # adoptStreamPort duplicates the descriptor; ours is closed.
            listening: IListeningPort = self._reactor.adoptStreamPort(s.fileno(), s.family, factory)
        finally:
            s.close()
        return listening

    def listenSSL(self, port: int, factory: Any, contextFactory: Any,
                  backlog: int = 50, interface: str = "") -> IListeningPort:
        from twisted.protocols.tls import TLSMemoryBIOFactory
        return self.listenTCP(port, TLSMemoryBIOFactory(contextFactory, False, factory),
                              backlog, interface)
