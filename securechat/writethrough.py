# -*- test-case-name: tests.test_writethrough -*-
"""
Writing to a plain TCP transport at once when nothing is waiting in its
buffer.

Twisted's C{transport.write} never sends at once: it appends to the
transport's buffer and asks the reactor to watch the socket for writing
(an C{epoll_ctl}), and the next reactor turn wakes up for that, sends, and
stops watching (another C{epoll_ctl}).  Under light load, where every
message is a read of its own and an answer of its own, that is two system
calls, one more wake-up and Twisted's dispatch per message, which cost the
relay about as much as the whole record path in Python.

L{writer_for} returns, for a transport where it is safe, a function that
sends straight to the socket when the transport's buffer is empty (Twisted's
own C{writeSomeData}, which the buffered path also uses) and hands whatever
the socket did not take to C{transport.write}, so bytes still leave in the
order they were written; when anything is buffered, everything goes through
C{transport.write}.  It applies only to Twisted's plain TCP and UNIX socket
connections (L{twisted.internet.tcp.Connection}, TLS not started); any other
transport (TLS, an in-memory one in tests, a future Twisted without these
attributes) gets its own C{write}.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import tcp

#: The transport attributes the fast path reads; all are set by
#: C{FileDescriptor.__init__} in the Twisted versions we support.
_NEEDED = ("dataBuffer", "offset", "_tempDataLen", "connected", "disconnecting",
           "_writeDisconnected", "writeSomeData", "TLS")


#: Whether each transport class has what the fast path reads, found on its
#: first instance (the attributes are set by its C{__init__}): asked once
#: per class, not per connection.
_FAST: dict[type, bool] = {}


def writer_for(transport: Any) -> Callable[[bytes], None]:
    """
    The function to write C{transport}'s bytes with: L{_WriteThrough} for a
    plain TCP (or UNIX) connection, else C{transport.write}.
    """
    kind = type(transport)
    fast = _FAST.get(kind)
    if fast is None:
        fast = _FAST[kind] = isinstance(transport, tcp.Connection) and all(
            hasattr(transport, a) for a in _NEEDED)
    return _WriteThrough(transport) if fast else transport.write


class _WriteThrough:
    """
    Sends at once what an empty, writable, non-TLS TCP transport can take;
    the rest (or everything, when anything is pending) through its C{write}.
    """

    __slots__ = ("_transport",)

    def __init__(self, transport: tcp.Connection) -> None:
        self._transport = transport

    def __call__(self, data: bytes) -> None:
        t = self._transport
        if (t._tempDataLen or len(t.dataBuffer) != t.offset or t.TLS or not t.connected
                or t.disconnecting or t._writeDisconnected):
            t.write(data)
            return
        sent = t.writeSomeData(data)
        if not isinstance(sent, int):
            # The socket failed (ConnectionLost): the buffered path meets
            # the same error on its next attempt and closes as it would.
            t.write(data)
        elif sent < len(data):
            t.write(data[sent:] if sent else data)


__all__ = ["writer_for"]
