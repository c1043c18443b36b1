# -*- test-case-name: tests.test_relay_messages -*-
"""
Messages declared by their fields: a frozen dataclass names its C{TYPE} and
the kind of each field in C{FIELDS}, and one generic encoder and parser
serve them all, so each layout is written down exactly once.

Field kinds:

  - C{name}: C{text8}, a user name (docs/protocol.rst, section 2), checked
    when parsed;
  - C{names}: C{u16} count, then that many C{name};
  - C{u8}, C{u32}, C{u64}: integers;
  - C{id}: 16 bytes, fixed (a letter id);
  - C{bytes16}, C{bytes32}: length-prefixed bytes;
  - C{text8}, C{text16}: C{u8}- or C{u16}-length UTF-8;
  - a L{ListOf} an entry class (itself L{Declared}, without a C{TYPE}):
    C{u16} count, then that many entries, each its fields in order.
"""

from __future__ import annotations

import struct
from dataclasses import fields
from typing import Any, Callable, ClassVar

from securechat.errors import RemoteProtocolError
from securechat.wire.codec import Reader, bytes16, bytes32, text8, text16, u8, u16, u32, u64
from securechat.wire.names import read_user_name

MAX_ONLINE_LIST = 10_000
#: The most entries a L{ListOf} field may announce.
MAX_LIST = 10_000
ID_LENGTH = 16


def _parse_names(r: Reader, what: str) -> tuple[str, ...]:
    count = r.u16(what + " count")
    if count > MAX_ONLINE_LIST:
        raise RemoteProtocolError("bad-value", f"{what}: {count} names")
    return tuple(read_user_name(r, what) for _ in range(count))


def _encode_id(value: bytes) -> bytes:
    if len(value) != ID_LENGTH:
        raise ValueError(f"an id is {ID_LENGTH} bytes, not {len(value)}")
    return value


_ENCODE: dict[str, Callable[[Any], bytes]] = {
    "name": text8,
    "u32": u32,
    "id": _encode_id,
    "names": lambda names: u16(len(names)) + b"".join(text8(n) for n in names),
    "u8": u8,
    "u64": u64,
    "bytes16": bytes16,
    "bytes32": bytes32,
    "text8": text8,
    "text16": text16,
}
_PARSE: dict[str, Callable[[Reader, str], Any]] = {
    "name": read_user_name,
    "names": _parse_names,
    "u8": Reader.u8,
    "u32": Reader.u32,
    "u64": Reader.u64,
    "id": lambda r, what: r.fixed(ID_LENGTH, what),
    "bytes16": Reader.bytes16,
    "bytes32": Reader.bytes32,
    "text8": Reader.text8,
    "text16": Reader.text16,
}


_ID_U64_U64 = struct.Struct(">16sQQ")


def encode_name_id_u64_u64(name: str, an_id: bytes, first: int, second: int) -> bytes:
    """
    The body of a message declared C{("name", "id", "u64", "u64")}, byte
    for byte what the generic encoder writes (and refusing what it
    refuses), in one step: LETTER_STORED and LETTER_ARRIVED, one of each
    per letter, use it.
    """
    raw = name.encode("utf-8")
    if len(raw) > 0xFF:
        raise ValueError("field longer than 255 bytes")
    _encode_id(an_id)  # ("16s" alone would pad or cut it)
    return bytes((len(raw),)) + raw + _ID_U64_U64.pack(an_id, first, second)


class ListOf:
    """
    A field kind: C{u16} count, then that many C{entry} values, each
    encoded as its own fields (at most L{MAX_LIST}, else C{bad-value}).
    """

    __slots__ = ("entry",)

    def __init__(self, entry: type[Declared]) -> None:
        self.entry = entry

    def encode(self, items: tuple[Declared, ...]) -> bytes:
        return u16(len(items)) + b"".join(item.encode_body() for item in items)

    def parse(self, r: Reader, what: str) -> tuple[Any, ...]:
        count = r.u16(what + " count")
        if count > MAX_LIST:
            raise RemoteProtocolError("bad-value", f"{what}: {count} entries")
        return tuple(self.entry.parse_body(r) for _ in range(count))


class Declared:
    """
    Base for messages declared by C{TYPE} and C{FIELDS}.  Each class's
    layout (field names with their encoders and parsers) is worked out once,
    on first use, not per message.
    """

    __slots__ = ()

    TYPE: ClassVar[int]
    FIELDS: ClassVar[tuple[str | ListOf, ...]] = ()
    _layout: ClassVar[tuple[tuple[str, Callable[[Any], bytes], Callable[[Reader, str], Any]], ...]]

    @classmethod
    def _get_layout(cls) -> tuple[tuple[str, Callable[[Any], bytes], Callable[[Reader, str], Any]], ...]:
        layout = cls.__dict__.get("_layout")
        if layout is None:
            names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
            if len(names) != len(cls.FIELDS):
                raise TypeError(f"{cls.__name__}: FIELDS does not match its fields")
            layout = tuple(
                (n, k.encode, k.parse) if isinstance(k, ListOf) else (n, _ENCODE[k], _PARSE[k])
                for n, k in zip(names, cls.FIELDS))
            cls._layout = layout
        return layout

    def encode_body(self) -> bytes:
        return b"".join([encode(getattr(self, name)) for name, encode, _ in self._get_layout()])

    @classmethod
    def parse_body(cls, r: Reader) -> Any:
        message = cls(*[parse(r, name) for name, _, parse in cls._get_layout()])
        message.check_parsed()
        return message

    def check_parsed(self) -> None:
        """
        Rules a parsed message must meet beyond its field kinds (none by
        default); raise L{RemoteProtocolError} for one it breaks.
        """
