# -*- test-case-name: tests.test_wire -*-
"""
Primitive field codecs: big-endian integers and length-prefixed byte strings.

L{Reader} raises L{RemoteProtocolError} with code C{"truncated"} when a field
runs past the end and C{"trailing-bytes"} when L{Reader.finish} finds bytes
left over, so every message parser gets exact, specific errors for free.
"""

from __future__ import annotations

import struct

from securechat.errors import RemoteProtocolError

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class Reader:
    """
    Reads fields from one message body, front to back.
    """

    __slots__ = ("_data", "_pos", "_what")

    def __init__(self, data: bytes, what: str) -> None:
        self._data = data
        self._pos = 0
        self._what = what

    def _take(self, n: int, field: str) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise RemoteProtocolError(
                "truncated", f"{self._what}: {field} needs {n} bytes, "
                f"{len(self._data) - self._pos} left"
            )
        chunk = self._data[self._pos:end]
        self._pos = end
        return chunk

    def u8(self, field: str) -> int:
        return self._take(1, field)[0]

    def u16(self, field: str) -> int:
        value: int = _U16.unpack(self._take(2, field))[0]
        return value

    def u32(self, field: str) -> int:
        value: int = _U32.unpack(self._take(4, field))[0]
        return value

    def u64(self, field: str) -> int:
        value: int = _U64.unpack(self._take(8, field))[0]
        return value

    def fixed(self, n: int, field: str) -> bytes:
        return self._take(n, field)

    def bytes8(self, field: str) -> bytes:
        return self._take(self.u8(field + " length"), field)

    def bytes16(self, field: str) -> bytes:
        return self._take(self.u16(field + " length"), field)

    def bytes32(self, field: str) -> bytes:
        return self._take(self.u32(field + " length"), field)

    def text8(self, field: str) -> str:
        return self._utf8(self.bytes8(field), field)

    def text16(self, field: str) -> str:
        return self._utf8(self.bytes16(field), field)

    def _utf8(self, raw: bytes, field: str) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise RemoteProtocolError("bad-value", f"{self._what}: {field} is not UTF-8") from None

    def rest(self) -> bytes:
        chunk = self._data[self._pos:]
        self._pos = len(self._data)
        return chunk

    def remaining(self) -> int:
        return len(self._data) - self._pos

    def finish(self) -> None:
        if self._pos != len(self._data):
            raise RemoteProtocolError(
                "trailing-bytes",
                f"{self._what}: {len(self._data) - self._pos} trailing bytes",
            )


def u8(value: int) -> bytes:
    return bytes((value,))


def u16(value: int) -> bytes:
    return _U16.pack(value)


def u32(value: int) -> bytes:
    return _U32.pack(value)


def u64(value: int) -> bytes:
    return _U64.pack(value)


def bytes8(value: bytes) -> bytes:
    if len(value) > 0xFF:
        raise ValueError("field longer than 255 bytes")
    return bytes((len(value),)) + value


def bytes16(value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError("field longer than 65535 bytes")
    return _U16.pack(len(value)) + value


def bytes32(value: bytes) -> bytes:
    return _U32.pack(len(value)) + value


def text8(value: str) -> bytes:
    return bytes8(value.encode("utf-8"))


def text16(value: str) -> bytes:
    return bytes16(value.encode("utf-8"))
