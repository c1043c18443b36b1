# -*- test-case-name: tests.test_wire -*-
"""
Length-prefixed frames.

A frame is C{uint32 length | uint8 type | payload}; C{length} counts the type
byte and the payload, so it is at least 1.  L{FrameDecoder} checks the
announced length against its maximum as soon as the four length bytes have
arrived, before buffering any of the body, so an oversized frame is refused
without waiting for (or storing) it.
"""

from __future__ import annotations

import struct

from securechat.errors import RemoteProtocolError

LENGTH = struct.Struct(">I")
LENGTH_SIZE = LENGTH.size


def encode_frame(frame_type: int, payload: bytes) -> bytes:
    """
    The bytes of one frame.
    """
    return LENGTH.pack(1 + len(payload)) + bytes((frame_type,)) + payload


class FrameDecoder:
    """
    Splits a byte stream into whole frames.

    Received chunks are kept as they come while no partial frame is pending
    (the usual case: a read holds whole frames), so a frame costs one copy,
    the slice returned.  Only a partial frame is accumulated, in a
    C{bytearray} that grows in amortised constant time per byte however
    the peer trickles it.

    @ivar max_length: the largest C{length} field accepted; it may be changed
        between frames (the connection raises it after the handshake).
    """

    __slots__ = ("max_length", "_data", "_pos")

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length
        self._data: bytes | bytearray = b""
        self._pos = 0

    def feed(self, data: bytes) -> None:
        """
        Add received bytes.
        """
        if type(data) is not bytes:
            data = bytes(data)  # never keep (and later grow) the caller's buffer
        pos = self._pos
        if pos >= len(self._data):
            self._data = data
            self._pos = 0
            return
        pending = self._data
        if not isinstance(pending, bytearray):
            pending = self._data = bytearray(memoryview(pending)[pos:])
        elif pos:
            del pending[:pos]
        self._pos = 0
        pending += data

    def sole_frame(self, data: bytes) -> bool:
        """
        Whether C{data} is exactly one whole frame, of a length accepted,
        with nothing held before it: exactly what L{feed} then
        L{next_frame} would return, leaving the decoder empty.  The caller
        may then take C{data} as that frame without feeding it (the decoder
        is unchanged).  For anything else (something held, a partial frame,
        several, a length L{next_frame} refuses, a buffer other than
        C{bytes}) the answer is False, and C{data} must be fed.
        """
        if self._pos < len(self._data) or type(data) is not bytes or len(data) <= LENGTH_SIZE:
            return False
        length = LENGTH.unpack_from(data)[0]
        return length + LENGTH_SIZE == len(data) and length <= self.max_length

    @property
    def buffered(self) -> int:
        """
        How many bytes are held, not yet returned as frames.
        """
        return len(self._data) - self._pos

    def next_frame(self) -> bytes | None:
        """
        Return the next whole frame (length field included), or C{None} if it
        has not fully arrived.

        @raise RemoteProtocolError: C{empty-frame} for a zero length,
            C{frame-too-large} for a length above L{max_length}, raised as
            soon as the length field is complete.
        """
        data, pos = self._data, self._pos
        available = len(data) - pos
        if available < LENGTH_SIZE:
            if pos and not isinstance(data, bytearray):
                self._data, self._pos = data[pos:], 0
            return None
        length = LENGTH.unpack_from(data, pos)[0]
        if length == 0:
            raise RemoteProtocolError("empty-frame")
        if length > self.max_length:
            raise RemoteProtocolError(
                "frame-too-large",
                f"frame length {length} exceeds the maximum {self.max_length}",
            )
        end = pos + LENGTH_SIZE + length
        if len(data) < end:
            if pos and not isinstance(data, bytearray):
                self._data, self._pos = data[pos:], 0  # keep the partial frame, not the read
            return None
        if isinstance(data, bytearray):
            frame = bytes(memoryview(data)[pos:end])
        else:
            frame = data[pos:end]
        if end == len(data):
            self._data, self._pos = b"", 0  # an idle connection holds no buffer
        else:
            self._pos = end
        return frame
