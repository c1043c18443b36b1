# -*- test-case-name: tests.test_protocol -*-
"""
The outbound side of a connection: L{OutboundQueue}, the inner messages
waiting (encoded) to be sealed into records, and L{EndOfTurn}, which drains
the queues once per read or reactor turn (the relay shares one among all
its connections).
"""

from __future__ import annotations

from typing import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from securechat.wire.messages import INNER_HEADER, Message


class EndOfTurn:
    """
    Runs the drains of outbound queues once their messages are all in:
    at the end of the read that queued them (most messages are answers to
    a read), or else at the end of the reactor turn, with one delayed call
    per turn for all queues, not one per queue.  The relay shares one among
    all its connections.  Whichever way, the transport still writes once
    per turn.
    """

    __slots__ = ("_clock", "_pending", "_calls", "_call", "reading")

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._pending: list[OutboundQueue] = []
        self._calls: list[Callable[[], None]] = []
        self._call: IDelayedCall | None = None
        #: Reads being handled: queues are drained when they end.
        self.reading = 0

    def schedule(self, queue: OutboundQueue) -> None:
        self._pending.append(queue)
        if self._call is None and not self.reading:
            self._call = self._clock.callLater(0, self._turn_ended)

    def call_at_end(self, call: Callable[[], None]) -> None:
        """
        Call C{call} when the read being handled ends (or, outside a read,
        at the end of the reactor turn), before the queues are drained:
        what a read's messages start together (the mailbox's letters, one
        store call per read) is handed on once, when they are all in.
        """
        self._calls.append(call)
        if self._call is None and not self.reading:
            self._call = self._clock.callLater(0, self._turn_ended)

    def read_ended(self) -> None:
        """
        A read was handled: drain what it queued (unless it was nested in
        another read, which drains when it ends).
        """
        self.reading -= 1
        if not self.reading and (self._pending or self._calls):
            self.run()

    def _turn_ended(self) -> None:
        self._call = None
        self.run()

    def run(self) -> None:
        """
        Make the calls asked for, then drain every queue scheduled so far.
        """
        while self._calls or self._pending:
            while self._calls:
                calls, self._calls = self._calls, []
                for call in calls:
                    call()
            pending, self._pending = self._pending, []
            for queue in pending:
                queue.scheduled = False
                queue.drain()


def _sealed_nothing(plaintext: bytes) -> None:
    """
    The seal function of a cleared queue, which never seals (it accepts
    nothing more).
    """


class OutboundQueue:
    """
    Inner messages waiting to be sealed for one connection, kept encoded.

    Whatever is queued during one reactor turn is sealed at the end of it,
    into as few records as the frame maximum allows (C{batch_bytes} of
    plaintext each), so the AEAD, framing and write cost is paid per flush,
    not per message.  A queue is an C{IPushProducer}: registered with the
    transport, it holds messages while the transport's buffer is full.

    Each message is two chunks, its inner header and its body, so a body
    (a relayed payload, say) is copied once, into the record's plaintext.

    @ivar bytes: the size of what is queued.
    @ivar on_drained: called after each drain.
    """

    __slots__ = ("_turn", "_seal", "batch_bytes", "on_drained", "_chunks",
                 "_sizes", "scheduled", "bytes", "paused", "stopped")

    def __init__(self, turn: EndOfTurn, seal: Callable[[bytes], None], batch_bytes: int) -> None:
        self._turn = turn
        self._seal = seal
        self.batch_bytes = batch_bytes
        self.on_drained: Callable[[], None] | None = None
        self._chunks: list[bytes | memoryview] = []
        self._sizes: list[int] = []
        #: A drain is due at the end of this turn.
        self.scheduled = False
        self.bytes = 0
        self.paused = False
        self.stopped = False

    def __len__(self) -> int:
        return len(self._sizes)

    def push(self, message: Message) -> None:
        """
        Queue C{message}.
        """
        body = message.encode_body()
        self.push_encoded(INNER_HEADER.pack(message.TYPE, len(body)), body)

    def push_encoded(self, header: bytes, body: bytes | memoryview) -> None:
        """
        Queue one message already encoded: its 5-byte inner header (type,
        body length) and its body.
        """
        if self.stopped:
            return
        size = len(header) + len(body)
        chunks = self._chunks
        chunks.append(header)
        chunks.append(body)
        self._sizes.append(size)
        self.bytes += size
        if not self.scheduled and not self.paused:
            self.scheduled = True
            self._turn.schedule(self)

    def push_inner(self, data: bytes) -> None:
        """
        Queue whole inner messages already encoded, one after another in
        C{data} (each its header and body), cut at message boundaries into
        pieces a record can hold.
        """
        limit = self.batch_bytes
        start, end = 0, len(data)
        while end - start > limit:
            # (Rare: more answers than one record holds.)  Whole messages
            # up to the limit; one larger than it goes alone.
            cut = start
            while cut < end:
                size = INNER_HEADER.size + INNER_HEADER.unpack_from(data, cut)[1]
                if cut > start and cut + size - start > limit:
                    break
                cut += size
            self.push_encoded(b"", data[start:cut])
            start = cut
        if start < end:
            self.push_encoded(b"", data[start:] if start else data)

    def drain(self) -> None:
        """
        Seal what is queued, unless the transport paused us.
        """
        sizes, chunks = self._sizes, self._chunks
        while sizes and not self.paused and not self.stopped:
            if self.bytes <= self.batch_bytes:
                total = self.bytes
                data = b"".join(chunks)
                chunks.clear()
                sizes.clear()
            else:
                total = count = 0
                for size in sizes:
                    if count and total + size > self.batch_bytes:
                        break
                    total += size
                    count += 1
                data = b"".join(chunks[:2 * count])
                del chunks[:2 * count]
                del sizes[:count]
            self.bytes -= total
            self._seal(data)
        if self.on_drained is not None:
            self.on_drained()

    def flush(self) -> None:
        """
        Seal everything queued now, paused or not (a message sent directly
        must not overtake what was queued before it).
        """
        paused, self.paused = self.paused, False
        try:
            self.drain()
        finally:
            self.paused = paused

    def clear(self) -> None:
        """
        Drop everything and accept nothing more (the connection is over).
        The seal function and C{on_drained} are let go: they are the
        connection's and its session's methods, which refer back to this
        queue, and that cycle would otherwise wait for the garbage
        collector after every connection.
        """
        self.stopped = True
        self._chunks.clear()
        self._sizes.clear()
        self.bytes = 0
        self._seal = _sealed_nothing
        self.on_drained = None

    # IPushProducer, for the transport
    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        if not self.scheduled and self._sizes and not self.stopped:
            self.scheduled = True
            self._turn.schedule(self)

    def stopProducing(self) -> None:
        self.clear()


__all__ = ["EndOfTurn", "OutboundQueue"]
