"""
An in-memory network for protocol tests, with real backpressure.

L{twisted.test.iosim} moves bytes but ignores producers.  Here each side of
a L{Link} has a write buffer with a limit: past it, the registered streaming
producer is paused, and resumed when the peer has read it down to half.  A
side can stop reading (C{transport.pauseProducing()}, as the relay does to
throttle a sender, or L{MemoryTransport.reading} set by a test to play a
client that never reads), and its peer's writes then pile up.

Everything runs on a L{task.Clock}; L{Network.pump} delivers until quiet.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.interfaces import IProtocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure


#: The most one read delivers (Twisted's TCP transport reads 64 KiB at a time).
READ_SIZE = 64 * 1024


class MemoryTransport:
    """
    One side of a L{Link}: the transport its protocol writes to.
    """

    disconnecting = False
    aborted = False
    disconnected = False

    def __init__(self, protocol: IProtocol, host: IPv4Address, peer: IPv4Address,
                 buffer_limit: int) -> None:
        self.protocol = protocol
        self.host = host
        self.peer = peer
        self.buffer_limit = buffer_limit
        self.outgoing: list[bytes] = []
        self.outgoing_bytes = 0
        self.producer: Any = None
        self.streaming = False
        self.producer_paused = False
        #: False while this side does not read what arrives for it.
        self.reading = True
        self.written = 0

    # ITransport
    def write(self, data: bytes) -> None:
        if self.disconnecting:
            return
        self.outgoing.append(data)
        self.outgoing_bytes += len(data)
        self.written += len(data)
        if (self.producer is not None and self.streaming and not self.producer_paused
                and self.outgoing_bytes > self.buffer_limit):
            self.producer_paused = True
            self.producer.pauseProducing()

    def writeSequence(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        self.disconnecting = True

    def abortConnection(self) -> None:
        self.disconnecting = True
        self.aborted = True

    def getPeer(self) -> IPv4Address:
        return self.peer

    def getHost(self) -> IPv4Address:
        return self.host

    # IConsumer
    def registerProducer(self, producer: Any, streaming: bool) -> None:
        assert self.producer is None, "a producer is already registered"
        self.producer = producer
        self.streaming = streaming
        self.producer_paused = False

    def unregisterProducer(self) -> None:
        self.producer = None

    # IPushProducer: the protocol pausing *our reading*
    def pauseProducing(self) -> None:
        self.reading = False

    def resumeProducing(self) -> None:
        self.reading = True

    def stopProducing(self) -> None:
        self.loseConnection()


class Link:
    """
    A connection between a client protocol and a server protocol.
    """

    def __init__(self, client: IProtocol, server: IProtocol, client_host: str = "10.0.0.1",
                 buffer_limit: int = 64 * 1024) -> None:
        c_addr = IPv4Address("TCP", client_host, 40000)
        s_addr = IPv4Address("TCP", "10.0.0.254", 7070)
        self.client = client
        self.server = server
        self.client_transport = MemoryTransport(client, c_addr, s_addr, buffer_limit)
        self.server_transport = MemoryTransport(server, s_addr, c_addr, buffer_limit)
        self.closed = False

    def start(self) -> None:
        self.server.makeConnection(self.server_transport)
        self.client.makeConnection(self.client_transport)

    def _move(self, sender: MemoryTransport, receiver: MemoryTransport) -> bool:
        if not sender.outgoing or not receiver.reading or self.closed:
            return False
        if sender.aborted:
            sender.outgoing.clear()
            sender.outgoing_bytes = 0
            return False
        # Like a TCP transport, deliver at most READ_SIZE bytes per read.
        data = b"".join(sender.outgoing)
        chunk, rest = data[:READ_SIZE], data[READ_SIZE:]
        sender.outgoing[:] = [rest] if rest else []
        sender.outgoing_bytes = len(rest)
        receiver.protocol.dataReceived(chunk)
        if (sender.producer is not None and sender.producer_paused
                and sender.outgoing_bytes <= sender.buffer_limit // 2):
            sender.producer_paused = False
            sender.producer.resumeProducing()
        return True

    def pump_once(self) -> bool:
        moved = self._move(self.client_transport, self.server_transport)
        moved = self._move(self.server_transport, self.client_transport) or moved
        if moved or self.closed:
            return moved
        for side in (self.client_transport, self.server_transport):
            # A closing side closes once its buffer is written (or at once
            # when aborted); a side that is not read from never drains.
            if side.disconnecting and (side.aborted or not side.outgoing):
                self.close(ConnectionAborted() if side.aborted else ConnectionDone())
                return True
        return False

    def close(self, reason: Exception) -> None:
        if self.closed:
            return
        self.closed = True
        for t in (self.client_transport, self.server_transport):
            t.disconnected = True
            t.disconnecting = True
        self.server.connectionLost(Failure(reason))
        self.client.connectionLost(Failure(reason))


class Network:
    """
    Several links on one clock.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        self.links: list[Link] = []

    def connect(self, client: IProtocol, server: IProtocol, **kw: Any) -> Link:
        link = Link(client, server, **kw)
        self.links.append(link)
        link.start()
        self.pump()
        return link

    def pump(self, rounds: int = 10_000) -> None:
        for _ in range(rounds):
            self.clock.advance(0)
            moved = False
            for link in list(self.links):
                moved = link.pump_once() or moved
            if not moved and not any(c.getTime() <= self.clock.seconds()
                                      for c in self.clock.getDelayedCalls()):
                return
        raise AssertionError("network did not settle")

    def advance(self, seconds: float) -> None:
        """
        Move the clock forward in small steps, pumping as it goes.
        """
        step = min(1.0, seconds)
        elapsed = 0.0
        while elapsed < seconds:
            d = min(step, seconds - elapsed)
            self.clock.advance(d)
            elapsed += d
            self.pump()
