"""
Tests for L{securechat.writethrough}: bytes written at once to an empty
plain TCP transport, in order with whatever had to be buffered.

The transport is Twisted's own L{tcp.Connection} with its socket replaced by
a recorder (no socket is opened): its buffer, C{write} and reactor
registration are the real ones.
"""

from __future__ import annotations

from twisted.internet import main, tcp
from twisted.internet.abstract import FileDescriptor
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.trial.unittest import TestCase

from securechat.writethrough import writer_for


class _RecordingConnection(tcp.Connection):
    """
    A L{tcp.Connection} whose C{writeSomeData} records what it sends and
    takes at most C{room} bytes per call (C{None}: all), or fails with
    C{error}.
    """

    def __init__(self) -> None:
        FileDescriptor.__init__(self, reactor=MemoryReactor())
        self.connected = 1
        self.sent: list[bytes] = []
        self.room: int | None = None
        self.error: Exception | None = None

    def writeSomeData(self, data: bytes) -> int | main.error.ConnectionLost:
        if self.error is not None:
            return self.error  # type: ignore[return-value]
        taken = bytes(data if self.room is None else memoryview(data)[:self.room])
        self.sent.append(taken)
        return len(taken)

    def buffered(self) -> bytes:
        return bytes(self.dataBuffer[self.offset:]) + b"".join(self._tempDataBuffer)


class WriteThroughTests(TestCase):
    """
    L{writer_for}.
    """

    def test_emptyBufferSendsAtOnce(self) -> None:
        """
        With nothing buffered, the bytes go to the socket at once and the
        reactor is not asked to watch the socket for writing (the system
        calls and the extra wake-up the buffered path costs per message).
        """
        t = _RecordingConnection()
        writer_for(t)(b"record")
        self.assertEqual(t.sent, [b"record"])
        self.assertEqual(t.buffered(), b"")
        self.assertNotIn(t, t.reactor.writers)  # type: ignore[attr-defined]

    def test_restBufferedThenEverythingBehindIt(self) -> None:
        """
        What the socket did not take is buffered, and everything written
        after it goes behind it into the buffer, never past it to the
        socket: bytes leave in the order they were written.
        """
        t = _RecordingConnection()
        write = writer_for(t)
        t.room = 2
        write(b"abcd")
        write(b"ef")
        self.assertEqual(t.sent, [b"ab"])
        self.assertEqual(t.buffered(), b"cdef")
        self.assertIn(t, t.reactor.writers)  # type: ignore[attr-defined]

    def test_nothingTakenIsBuffered(self) -> None:
        """
        A socket that takes nothing (EWOULDBLOCK) leaves all of it to the
        buffered path.
        """
        t = _RecordingConnection()
        t.room = 0
        writer_for(t)(b"abc")
        self.assertEqual(t.buffered(), b"abc")

    def test_socketErrorLeftToTheBufferedPath(self) -> None:
        """
        A failed send (connection lost) buffers the bytes, so Twisted's own
        write path meets the error and closes as it always did; nothing is
        raised to the protocol.
        """
        t = _RecordingConnection()
        t.error = main.CONNECTION_LOST
        writer_for(t)(b"abc")
        self.assertEqual(t.buffered(), b"abc")
        self.assertIn(t, t.reactor.writers)  # type: ignore[attr-defined]

    def test_tlsUsesWrite(self) -> None:
        """
        Once TLS has started, bytes must go through the TLS layer: never to
        the socket directly.
        """
        t = _RecordingConnection()
        t.TLS = True
        written: list[bytes] = []
        t.write = written.append  # type: ignore[method-assign]
        writer_for(t)(b"abc")
        self.assertEqual((t.sent, written), ([], [b"abc"]))

    def test_closingUsesWrite(self) -> None:
        """
        A transport that is closing (or closed, or half-closed) gets the
        bytes through its own C{write}, which knows what to do with them.
        """
        for attribute, value in (("disconnecting", True), ("connected", 0),
                                 ("_writeDisconnected", True)):
            t = _RecordingConnection()
            setattr(t, attribute, value)
            written: list[bytes] = []
            t.write = written.append  # type: ignore[method-assign]
            writer_for(t)(b"abc")
            self.assertEqual((attribute, t.sent, written), (attribute, [], [b"abc"]))

    def test_otherTransportsUseWrite(self) -> None:
        """
        Any transport that is not Twisted's TCP connection (an in-memory one,
        a TLS wrapper) is written with its own C{write}.
        """
        transport = StringTransport()
        self.assertEqual(writer_for(transport), transport.write)

    def test_classWithoutFastPathAttributes(self) -> None:
        """
        A TCP connection class whose instances lack an attribute the fast
        path reads is written with C{write}, its first instance and every
        later one (the check is made once per class); Twisted's own class
        still gets the fast path.
        """
        class Partial(_RecordingConnection):
            def __init__(self) -> None:
                super().__init__()
                del self._tempDataLen

        for _ in range(2):
            t = Partial()
            self.assertEqual(writer_for(t), t.write)
        t2 = _RecordingConnection()
        writer_for(t2)(b"record")
        self.assertEqual(t2.sent, [b"record"])
