# -*- test-case-name: tests.test_websocket -*-
"""
The relay over WebSocket (RFC 6455), for browsers: the same frames as TCP,
carried in binary WebSocket messages (docs/protocol.rst, section 3.1).

Twisted's own WebSocket support (L{twisted.web.websocket}, on wsproto)
does the HTTP upgrade and the WebSocket framing.  What it leaves to the
application, this module adds:

  - B{The relay's protocol, unchanged.}  Each accepted TCP connection gets
    its L{SecureChatProtocol} (from L{RelayFactory}, so the gate on
    unauthenticated connections counts it) at once, over a
    L{WebSocketStream}: an C{ITransport} whose writes become binary
    messages once the upgrade is done.  The handshake deadline therefore
    runs from TCP accept and covers the HTTP request too.
  - B{Bounded buffering.}  Twisted reassembles a whole message before
    delivering it, however large.  L{_RelayChannel} feeds the bytes that
    follow the upgrade to the WebSocket parser in slices and ends the
    connection (close code 1009) once more than L{WebSocketStream.budget}
    bytes arrived without a message completing; a message that completes
    over the limit is refused the same way.
  - B{Text messages refused} (close code 1003), B{Origin allow-list}
    (C{--websocket-origin}; a browser page from any other origin gets 403
    and one log line), B{no request bodies} (discarded unread: the
    upgrade is a GET), and a refusal by the gate answered with HTTP 503.
"""

from __future__ import annotations

import io
from typing import Any, Sequence

from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from twisted.web.websocket import WebSocketResource, WebSocketTransport
from wsproto.utilities import LocalProtocolError as WebSocketStateError

from securechat.protocol import SecureChatProtocol
from securechat.server.limits import Limits
from securechat.server.relay import RelayFactory
from securechat.wire.framing import LENGTH_SIZE

#: The path of the WebSocket on a relay's HTTP listener.
WEBSOCKET_PATH = b"relay"

#: Bytes fed to the WebSocket parser at a time, so that the budget is
#: checked between pieces (the most buffered past the budget).
SLICE = 4096

#: Room for WebSocket headers and control frames within one message's budget.
OVERHEAD = 1024

#: WebSocket close codes (RFC 6455, 7.4.1).
CLOSE_NORMAL = 1000
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_TOO_BIG = 1009


def max_message(limits: Limits) -> int:
    """
    The largest binary message the relay accepts: its largest frame with
    the length prefix (docs/protocol.rst, 3.1).
    """
    return max(limits.max_frame, limits.max_handshake_frame) + LENGTH_SIZE


def check_origin(origin: str) -> str:
    """
    C{origin} as an allow-list entry (C{scheme://host[:port]}, lower
    case), or raise C{ValueError} saying what is wrong with it.
    """
    text = origin.strip().lower().rstrip("/")
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in ("http", "https") or not rest or "/" in rest or "@" in rest:
        raise ValueError(f"{origin!r} is not an origin: write scheme://host[:port], "
                         "e.g. https://chat.example.org")
    return text


class WebSocketStream:
    """
    What a L{SecureChatProtocol} writes to and closes: binary messages on
    the WebSocket once it is open (nothing is written before: the relay
    only answers), and the TCP connection beneath for reading, pausing and
    aborting.

    @ivar unread: bytes received since the last message was delivered.
    @ivar budget: how many of them are tolerated.
    """

    def __init__(self, tcp: Any, channel: HTTPChannel, limit: int) -> None:
        self._tcp = tcp
        self._channel = channel
        self.ws: WebSocketTransport | None = None
        self.limit = limit
        self.budget = limit + OVERHEAD
        self.unread = 0
        self.close_code = CLOSE_NORMAL
        self.disconnecting = False

    # ITransport
    def write(self, data: bytes) -> None:
        if self.disconnecting or self.ws is None:
            return
        try:
            self.ws.sendBytesMessage(data)
        except WebSocketStateError:
            pass  # the peer closed the WebSocket; TCP is going too

    def writeSequence(self, data: Sequence[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        if self.disconnecting:
            return
        self.disconnecting = True
        if self.ws is None:
            self._channel.loseConnection()
            return
        # The HTTP channel stays the TCP transport's producer after the
        # upgrade; a paused producer would keep the connection open.
        self._tcp.unregisterProducer()
        try:
            self.ws.loseConnection(self.close_code)
        except WebSocketStateError:
            self._tcp.loseConnection()

    def abortConnection(self) -> None:
        self.disconnecting = True
        self._tcp.abortConnection()

    def getPeer(self) -> IAddress:
        peer: IAddress = self._tcp.getPeer()
        return peer

    def getHost(self) -> IAddress:
        host: IAddress = self._tcp.getHost()
        return host

    # IConsumer: the HTTP channel is the TCP transport's producer and
    # passes pause and resume on to the one registered with it.
    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._channel.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self._channel.unregisterProducer()

    # IPushProducer: the relay pausing this connection's reading.
    def pauseProducing(self) -> None:
        self._tcp.pauseProducing()

    def resumeProducing(self) -> None:
        self._tcp.resumeProducing()

    def stopProducing(self) -> None:
        self.loseConnection()


def refuse(protocol: SecureChatProtocol, stream: WebSocketStream, close_code: int, code: str,
           detail: str) -> None:
    """
    End the connection for C{code} with C{detail} (the relay's log line),
    closing the WebSocket with C{close_code}.
    """
    stream.close_code = close_code
    protocol.terminate(code, detail)
    stream.disconnecting = True


class _RelayWebSocket:
    """
    The L{twisted.web.websocket.WebSocketProtocol} of one connection:
    binary messages in, to the relay's protocol; text refused.
    """

    def __init__(self, stream: WebSocketStream, protocol: SecureChatProtocol) -> None:
        self.stream = stream
        self.protocol = protocol

    def negotiationStarted(self, transport: WebSocketTransport) -> None:
        self.stream.ws = transport

    def negotiationFinished(self) -> None:
        pass

    def bytesMessageReceived(self, data: bytes | bytearray) -> None:
        stream = self.stream
        stream.unread = 0
        if stream.disconnecting:
            return
        if len(data) > stream.limit:
            refuse(self.protocol, stream, CLOSE_TOO_BIG, "frame-too-large",
                   f"WebSocket message of {len(data)} bytes (at most {stream.limit})")
            return
        self.protocol.dataReceived(bytes(data))

    def textMessageReceived(self, message: str) -> None:
        self.stream.unread = 0
        if not self.stream.disconnecting:
            refuse(self.protocol, self.stream, CLOSE_UNSUPPORTED_DATA, "unexpected-message",
                   "a text WebSocket message (frames travel in binary messages)")

    def pongReceived(self, payload: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        self.protocol.connectionLost(reason)


class _RelayChannel(HTTPChannel):
    """
    An HTTP channel that runs a relay protocol over its WebSocket, and
    bounds what the WebSocket parser may buffer after the upgrade.

    On a WebSocket-only listener (C{eager}) the relay protocol is brought
    up at TCP accept; on the web listener, at the upgrade request, so that
    fetching the page is not a relay connection.
    """

    relay_protocol: SecureChatProtocol | None = None
    stream: WebSocketStream
    message_limit: int
    eager_protocol: SecureChatProtocol | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self.stream = WebSocketStream(self.transport, self, self.message_limit)
        if self.eager_protocol is not None:
            self.attach(self.eager_protocol)

    def attach(self, protocol: SecureChatProtocol) -> None:
        """
        Run C{protocol} over this connection from now on.
        """
        self.relay_protocol = protocol
        protocol.makeConnection(self.stream)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        # Only before the upgrade: Twisted's WebSocket replaces this after.
        super().connectionLost(reason)
        if self.relay_protocol is not None:
            self.relay_protocol.connectionLost(reason)

    def _protocolUpgradeForWebsockets(self, protocol: Any) -> None:
        super()._protocolUpgradeForWebsockets(protocol)
        self._feed_websocket = self.dataReceived
        self.dataReceived = self._bounded  # type: ignore[method-assign]

    def _bounded(self, data: bytes) -> None:
        stream = self.stream
        assert self.relay_protocol is not None
        for start in range(0, len(data), SLICE):
            if stream.disconnecting:
                return
            piece = data[start:start + SLICE]
            stream.unread += len(piece)
            if stream.unread > stream.budget:
                refuse(self.relay_protocol, stream, CLOSE_TOO_BIG, "frame-too-large",
                       f"more than {stream.budget} bytes without a complete WebSocket message")
                return
            self._feed_websocket(piece)


class _DiscardedBody(io.BytesIO):
    """
    A request body nobody reads: the WebSocket upgrade is a GET.
    """

    def write(self, data: Any) -> int:
        return len(data)


class RelayRequest(Request):
    """
    A request whose body is discarded unread.
    """

    def gotLength(self, length: int | None) -> None:
        super().gotLength(0)
        self.content = _DiscardedBody()  # type: ignore[assignment]


def _unavailable(reason: str) -> bytes:
    """
    An HTTP 503 response saying C{reason}, that closes the connection.
    """
    body = f"{reason}\n".encode()
    return (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))


class _Refusal(Protocol):
    """
    Answers a connection the gate did not admit with HTTP 503, then closes.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(_unavailable(self.reason))
        self.transport.loseConnection()


class RelayWebSocketResource(WebSocketResource):
    """
    The relay's WebSocket, refusing browser pages from origins not on the
    allow-list.  A request without C{Origin} is not from a browser (every
    browser sends it): Origin protects browsers' users, and a program can
    write any Origin it likes, so it is not asked for one.
    """

    log = Logger()

    def __init__(self, factory: RelayFactory, origins: Sequence[str]) -> None:
        super().__init__(self)
        self.relay_factory = factory
        self.origins = frozenset(origins)

    def render_GET(self, request: Request) -> bytes | int:
        channel: _RelayChannel = request.channel  # type: ignore[assignment]
        host = getattr(request.getClientAddress(), "host", "?")
        origin = request.getHeader("origin")
        if origin is not None and origin.lower().rstrip("/") not in self.origins:
            why = f"WebSocket Origin {origin!r} is not allowed (see --websocket-origin)"
            self.log.warn("refused a WebSocket connection from {host}: {why}", host=host, why=why)
            request.setResponseCode(403)
            request.setHeader("content-type", "text/plain; charset=utf-8")
            request.setHeader("connection", "close")
            request.write(f"origin {origin!r} is not allowed\n".encode())
            request.finish()
            if channel.relay_protocol is not None:
                channel.relay_protocol.terminate("peer-rejected", why)
            else:
                channel.loseConnection()
            return NOT_DONE_YET
        if channel.relay_protocol is None:
            protocol = self.relay_factory.buildProtocol(request.getClientAddress())
            if not isinstance(protocol, SecureChatProtocol):
                channel.transport.write(  # type: ignore[union-attr]
                    _unavailable(getattr(protocol, "reason", "refused")))
                channel.loseConnection()
                return NOT_DONE_YET
            channel.attach(protocol)
        result: bytes | int = super().render_GET(request)
        return result

    def buildProtocol(self, request: Request) -> _RelayWebSocket:
        channel: _RelayChannel = request.channel  # type: ignore[assignment]
        assert channel.relay_protocol is not None
        return _RelayWebSocket(channel.stream, channel.relay_protocol)


class RelayWebSocketSite(Site):
    """
    An HTTP listener whose C{/relay} is the relay's WebSocket.

    With no C{root} it is a WebSocket listener (C{--listen-websocket}):
    every connection is gated and timed as a TCP connection is, from
    accept.  With a C{root} it is the web listener (C{--web}) serving that
    too: a connection becomes a relay connection (gated, timed) at its
    upgrade request, and is otherwise an HTTP connection idle for at most
    the handshake timeout.
    """

    protocol = _RelayChannel  # type: ignore[assignment]
    requestFactory = RelayRequest
    noisy = False

    def __init__(self, factory: RelayFactory, origins: Sequence[str], clock: IReactorTime,
                 root: Resource | None = None,
                 request_factory: type[RelayRequest] = RelayRequest) -> None:
        self.eager = root is None
        root = Resource() if root is None else root
        root.putChild(WEBSOCKET_PATH, RelayWebSocketResource(factory, origins))
        # A WebSocket listener has no HTTP idle timeout: the relay's
        # handshake deadline and idle timeout govern it from accept on.
        timeout = None if self.eager else factory.relay.limits.handshake_timeout
        super().__init__(root, requestFactory=request_factory, timeout=timeout, reactor=clock)
        self.relay_factory = factory
        self.message_limit = max_message(factory.relay.limits)

    def buildProtocol(self, addr: IAddress | None) -> Any:
        relay_protocol: SecureChatProtocol | None = None
        if self.eager:
            built = self.relay_factory.buildProtocol(addr)
            if not isinstance(built, SecureChatProtocol):
                return _Refusal(getattr(built, "reason", "refused"))
            relay_protocol = built
        channel: _RelayChannel = super().buildProtocol(addr)
        channel.eager_protocol = relay_protocol
        channel.message_limit = self.message_limit
        return channel

    def log(self, request: Any) -> None:
        pass  # no access log: the relay logs logins and refusals itself
