"""
Tests for L{securechat.wire.relay}: the relay's message codecs.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from securechat.errors import RemoteProtocolError
from securechat.wire.codec import text8
from securechat.wire.relay import (
    CLIENT_MESSAGES,
    FROM_CLIENT,
    FROM_SERVER,
    SERVER_MESSAGES,
    ChatRequest,
    ChatStarted,
    CommandFailed,
    RequestPending,
    ListOnline,
    OnlineList,
    Relay,
)

_name = st.from_regex(r"[a-z][a-z0-9._-]{0,31}", fullmatch=True)
_KINDS = {
    "name": _name,
    "names": st.lists(_name, max_size=20).map(tuple),
    "u8": st.integers(0, 255),
    "u64": st.integers(0, 2**64 - 1),
    "bytes16": st.binary(max_size=600),
    "bytes32": st.binary(max_size=2000),
    "text16": st.text(max_size=100),
}


def _message(cls: type) -> st.SearchStrategy:
    return st.builds(cls, *[_KINDS[k] for k in cls.FIELDS])  # type: ignore[attr-defined]


class RelayMessageTests(unittest.TestCase):
    """
    Layouts, round trips and malformed input.
    """

    def test_layout(self) -> None:
        """
        Fields are encoded in order with the documented kinds
        (docs/protocol.rst, section 11).
        """
        self.assertEqual(ChatRequest("bob").encode_body(), b"\x03bob")
        self.assertEqual(
            Relay("bob", b"xy").encode_body(), b"\x03bob" + b"\x00\x00\x00\x02xy")
        self.assertEqual(
            OnlineList(("a", "b"), 2).encode_body(),
            b"\x00\x02\x01a\x01b" + (2).to_bytes(8, "big"))
        self.assertEqual(
            ChatStarted("bob", b"K", 1).encode_body(), b"\x03bob\x00\x01K\x01")
        self.assertEqual(
            CommandFailed(0x36, "bob", 13).encode_body(), b"\x36\x00\x03bob\x0d")
        self.assertEqual(ListOnline().encode_body(), b"")
        self.assertEqual((RequestPending.TYPE, RequestPending("bob").encode_body()), (0x49, b"\x03bob"))

    def test_typesDistinct(self) -> None:
        """
        Every message has its own type code, client types in 0x30-0x3f and
        relay types in 0x40-0x4f.
        """
        for cls in CLIENT_MESSAGES:
            self.assertTrue(0x30 <= cls.TYPE <= 0x3F)
        for cls in SERVER_MESSAGES:
            self.assertTrue(0x40 <= cls.TYPE <= 0x4F)

    def test_eachSideParsesOnlyTheOther(self) -> None:
        """
        The relay does not parse relay-to-client messages, nor clients
        client-to-relay ones.
        """
        e = self.assertRaises(RemoteProtocolError, FROM_CLIENT.parse, OnlineList.TYPE, b"\x00\x00" + bytes(8))
        self.assertEqual(e.code, "unknown-type")
        e = self.assertRaises(RemoteProtocolError, FROM_SERVER.parse, ListOnline.TYPE, b"")
        self.assertEqual(e.code, "unknown-type")

    def test_badNameRefused(self) -> None:
        """
        A name field outside the name rule is C{bad-value}.
        """
        e = self.assertRaises(RemoteProtocolError, FROM_CLIENT.parse, ChatRequest.TYPE, text8("Bob!"))
        self.assertEqual(e.code, "bad-value")

    def test_truncatedAndTrailing(self) -> None:
        """
        Each message cut short by one byte is C{truncated}; with one byte
        more, C{trailing-bytes}.
        """
        for registry, classes in ((FROM_CLIENT, CLIENT_MESSAGES), (FROM_SERVER, SERVER_MESSAGES)):
            for cls in classes:
                example = cls(*[{"name": "bob", "names": ("a",), "u8": 1, "u64": 1,
                                 "bytes16": b"k", "bytes32": b"p", "text16": "t"}[k]
                                for k in cls.FIELDS])
                body = example.encode_body()
                if body:
                    e = self.assertRaises(RemoteProtocolError, registry.parse, cls.TYPE, body[:-1])
                    self.assertEqual(e.code, "truncated", cls.__name__)
                e = self.assertRaises(RemoteProtocolError, registry.parse, cls.TYPE, body + b"\x00")
                self.assertEqual(e.code, "trailing-bytes", cls.__name__)

    @given(st.one_of([_message(c) for c in CLIENT_MESSAGES + SERVER_MESSAGES]))
    def test_roundTrip(self, message: object) -> None:
        """
        Every relay message parses back to itself.
        """
        registry = FROM_CLIENT if type(message) in CLIENT_MESSAGES else FROM_SERVER
        parsed = registry.parse(message.TYPE, message.encode_body())  # type: ignore[attr-defined]
        self.assertEqual(parsed, message)

    @given(st.integers(0x30, 0x4F), st.binary(max_size=200))
    def test_randomBodies(self, code: int, body: bytes) -> None:
        """
        Random bodies for any relay type raise only the codec's own error.
        """
        for registry in (FROM_CLIENT, FROM_SERVER):
            try:
                registry.parse(code, body)
            except RemoteProtocolError as e:
                self.assertIn(e.code, {"unknown-type", "truncated", "trailing-bytes", "bad-value"})
