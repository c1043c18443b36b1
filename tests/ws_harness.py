"""
A browser's side of the relay's WebSocket, for the tests: a real RFC 6455
client (wsproto, which Twisted's own WebSocket support is built on) that
carries a L{SecureChatProtocol}'s bytes in binary messages, or sends
whatever a test wants (text, oversized and never-finished messages).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (AcceptConnection, BytesMessage, CloseConnection, Ping,
                            RejectConnection, RejectData, Request, TextMessage)

from securechat.crypto.config import CLIENT_SERVER, Config, Role
from securechat.protocol import SecureChatProtocol
from securechat.server.websocket import RelayWebSocketSite
from securechat.wire.mailbox import MAILBOX_FROM_SERVER
from securechat.wire.messages import UserIdentity
from tests.relay_harness import Harness, RecordingClient, _Addr, user_key

ORIGIN = "https://chat.example.org"


class _Stream:
    """
    The client protocol's transport: writes become binary messages.
    """

    def __init__(self, client: WebSocketClient) -> None:
        self.client = client

    def write(self, data: bytes) -> None:
        self.client.send_bytes(data)

    def writeSequence(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        self.client.close()

    def abortConnection(self) -> None:
        assert self.client.transport is not None
        self.client.transport.abortConnection()  # type: ignore[attr-defined]

    def getPeer(self) -> Any:
        assert self.client.transport is not None
        return self.client.transport.getPeer()

    def getHost(self) -> Any:
        assert self.client.transport is not None
        return self.client.transport.getHost()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass


class WebSocketClient(Protocol):
    """
    Opens C{/relay} with C{origin} (none if C{None}), then hands binary
    messages to C{inner} (if any) and records everything else.
    """

    def __init__(self, inner: IProtocol | None = None, origin: str | None = ORIGIN,
                 path: str = "/relay") -> None:
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.inner = inner
        self.origin = origin
        self.path = path
        self.opened = False
        self.rejected: int | None = None
        self.reject_body = b""
        self.close_code: int | None = None
        self.received: list[bytes] = []
        self.lost = False
        self._message = b""

    def connectionMade(self) -> None:
        assert self.transport is not None
        extra = [(b"origin", self.origin.encode())] if self.origin is not None else []
        self.transport.write(self.ws.send(Request(host="relay.example", target=self.path,
                                                   extra_headers=extra)))

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, AcceptConnection):
                self.opened = True
                if self.inner is not None:
                    self.inner.makeConnection(_Stream(self))  # type: ignore[arg-type]
            elif isinstance(event, RejectConnection):
                self.rejected = event.status_code
            elif isinstance(event, RejectData):
                self.reject_body += event.data
            elif isinstance(event, BytesMessage):
                self._message += event.data
                if event.message_finished:
                    message, self._message = self._message, b""
                    self.received.append(message)
                    if self.inner is not None:
                        self.inner.dataReceived(message)
            elif isinstance(event, CloseConnection):
                self.close_code = event.code
                if self.ws.state is not ConnectionState.CLOSED:
                    self.transport.write(self.ws.send(event.response()))
                self.transport.loseConnection()
            elif isinstance(event, Ping):
                self.transport.write(self.ws.send(event.response()))

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        self.lost = True
        if self.inner is not None and self.opened:
            self.inner.connectionLost(reason)

    def send_bytes(self, data: bytes, finished: bool = True) -> None:
        """
        Send C{data} as (part of) a binary message.
        """
        assert self.transport is not None
        if self.ws.state is ConnectionState.OPEN:
            self.transport.write(self.ws.send(BytesMessage(data=data, message_finished=finished)))

    def send_text(self, text: str) -> None:
        assert self.transport is not None
        self.transport.write(self.ws.send(TextMessage(data=text)))

    def close(self) -> None:
        assert self.transport is not None
        if self.ws.state is ConnectionState.OPEN:
            self.transport.write(self.ws.send(CloseConnection(code=1000)))
        self.transport.loseConnection()


class WebSocketHarness(Harness):
    """
    L{Harness}, with the relay's WebSocket listener beside its TCP one.
    """

    def __init__(self, *args: Any, origins: tuple[str, ...] = (ORIGIN,), **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.site = RelayWebSocketSite(self.factory, origins, self.clock)

    def open(self, client: WebSocketClient, host: str = "10.0.0.7") -> Any:
        """
        Connect C{client} to the WebSocket listener; return the link.
        """
        server = self.site.buildProtocol(_Addr(host))  # type: ignore[arg-type]
        return self.network.connect(client, server, client_host=host)

    def connect_websocket(self, name: str, **kw: Any) -> tuple[RecordingClient, WebSocketClient]:
        """
        Connect C{name} over a WebSocket, as a browser would.
        """
        client = RecordingClient(name)
        config = Config(CLIENT_SERVER, Role.INITIATOR, user_key(name), UserIdentity(name),
                        registry=MAILBOX_FROM_SERVER)
        proto = SecureChatProtocol(config, client, self.clock, handshake_timeout=1e9)
        ws = WebSocketClient(proto, **kw)
        self.open(ws)
        return client, ws


class ClientWebSocket:
    """
    The client side over Twisted's own WebSocket client
    (L{twisted.web.websocket.WebSocketClientEndpoint}): a
    L{twisted.web.websocket.WebSocketProtocol} that runs C{inner} (a
    L{SecureChatProtocol}) over binary messages.
    """

    def __init__(self, inner: IProtocol) -> None:
        self.inner = inner
        self.transport: Any = None

    def negotiationStarted(self, transport: Any) -> None:
        self.transport = transport

    def negotiationFinished(self) -> None:
        self.inner.makeConnection(_TwistedStream(self.transport))  # type: ignore[arg-type]

    def bytesMessageReceived(self, data: bytes) -> None:
        self.inner.dataReceived(bytes(data))

    def textMessageReceived(self, text: str) -> None:
        raise AssertionError("the relay sent a text message")

    def pongReceived(self, payload: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        self.inner.connectionLost(reason)


class _TwistedStream:
    def __init__(self, ws: Any) -> None:
        self.ws = ws

    def write(self, data: bytes) -> None:
        self.ws.sendBytesMessage(data)

    def writeSequence(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        self.ws.loseConnection()

    def abortConnection(self) -> None:
        self.ws.transport.abortConnection()

    def getPeer(self) -> Any:
        return self.ws.transport.getPeer()

    def getHost(self) -> Any:
        return self.ws.transport.getHost()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass
