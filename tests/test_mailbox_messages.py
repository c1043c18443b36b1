"""
Tests for L{securechat.wire.mailbox}: the mailbox's relay messages
(docs/protocol.rst, 14.6) and the field kinds they added to
L{securechat.wire.declared}.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from securechat.crypto.prekeys import OneTimePrekey, SignedPrekey
from securechat.errors import RemoteProtocolError
from securechat.wire.declared import ListOf
from securechat.wire.keyhistory import KeyHistory, PreviousKeyEntry
from securechat.wire.mailbox import (
    MAILBOX_CLIENT_MESSAGES,
    MAILBOX_FROM_CLIENT,
    MAILBOX_FROM_SERVER,
    MAILBOX_SERVER_MESSAGES,
    Bundle,
    LetterEntry,
    LetterList,
    ListLetters,
    PostLetter,
    PrekeysLow,
    ReceiptStored,
    UploadPrekeys,
    UserEntry,
    UserKey,
    UserList,
    fit_list,
)
from securechat.wire.relay import CLIENT_MESSAGES, FROM_CLIENT, SERVER_MESSAGES, Reason

_name = st.from_regex(r"[a-z][a-z0-9._-]{0,31}", fullmatch=True)
_signed = st.builds(SignedPrekey, st.integers(1, 2**32 - 1), st.binary(min_size=32, max_size=32),
                    st.integers(0, 2**64 - 1), st.integers(0, 0xFFFF),
                    st.binary(max_size=100)).map(lambda p: p.encode())
_one_time = st.builds(OneTimePrekey, st.integers(0, 2**32 - 1),
                      st.binary(min_size=32, max_size=32)).map(lambda p: p.encode())
_KINDS: dict[str, st.SearchStrategy[Any]] = {
    "name": _name,
    "u8": st.integers(0, 1),
    "u32": st.integers(0, 2**32 - 1),
    "u64": st.integers(0, 2**64 - 1),
    "id": st.binary(min_size=16, max_size=16),
    "bytes16": st.binary(max_size=600),
    "bytes32": st.binary(max_size=2000),
}
#: Fields whose values have rules beyond their kind.
_SPECIAL: dict[type, list[st.SearchStrategy[Any]]] = {
    UploadPrekeys: [st.just(b"") | _signed,
                    st.lists(_one_time, max_size=5, unique_by=lambda b: b[:4]).map(b"".join)],
    Bundle: [_name, st.binary(max_size=100), _signed, st.just(b"") | _one_time],
    ReceiptStored: [_name, _KINDS["id"], st.integers(1, 2)],
    LetterEntry: [_name, _KINDS["id"], _KINDS["u64"], _KINDS["u64"], st.integers(0, 2)],
}
# A previous key's times are ordered: added <= compromised <= replaced.
_SPECIAL[PreviousKeyEntry] = [st.binary(min_size=1, max_size=100)]
_previous_times = st.lists(st.integers(0, 2**64 - 1), min_size=3, max_size=3).map(sorted)


def _message(cls: type) -> st.SearchStrategy[Any]:
    if cls is PreviousKeyEntry:
        return st.builds(lambda key, t, none: PreviousKeyEntry(key, t[0], t[2], 0 if none else t[1]),
                         _SPECIAL[cls][0], _previous_times, st.booleans())
    if cls in _SPECIAL:
        return st.builds(cls, *_SPECIAL[cls])
    args = []
    for kind in cls.FIELDS:  # type: ignore[attr-defined]
        if isinstance(kind, ListOf):
            args.append(st.lists(_message(kind.entry), max_size=4).map(tuple))
        else:
            args.append(_KINDS[kind])
    return st.builds(cls, *args)


class MailboxMessageTests(unittest.TestCase):
    """
    Layouts, type ranges, registries, rules and round trips.
    """

    def test_layout(self) -> None:
        """
        Fields are encoded in order with the documented kinds; a list is
        a u16 count and its entries.
        """
        self.assertEqual(PostLetter("bob", b"i" * 16, b"LL").encode_body(),
                         b"\x03bob" + b"i" * 16 + b"\x00\x00\x00\x02LL")
        self.assertEqual(
            LetterList((LetterEntry("al", b"i" * 16, 1, 2, 0),), 5).encode_body(),
            b"\x00\x01" + b"\x02al" + b"i" * 16 + (1).to_bytes(8, "big") + (2).to_bytes(8, "big")
            + b"\x00" + (5).to_bytes(8, "big"))
        self.assertEqual(UserList((UserEntry("a", 1),), 1).encode_body(),
                         b"\x00\x01\x01a\x01" + (1).to_bytes(8, "big"))
        self.assertEqual(ListLetters(1, 7).encode_body(), b"\x01" + (7).to_bytes(8, "big"))

    def test_typeRanges(self) -> None:
        """
        Client mailbox types are 0x50-0x5f, relay ones 0x60-0x6f, each its
        own.
        """
        for cls in MAILBOX_CLIENT_MESSAGES:
            self.assertTrue(0x50 <= cls.TYPE <= 0x5F, cls.__name__)
        for cls in MAILBOX_SERVER_MESSAGES:
            self.assertTrue(0x60 <= cls.TYPE <= 0x6F, cls.__name__)
        codes = [c.TYPE for c in MAILBOX_CLIENT_MESSAGES + MAILBOX_SERVER_MESSAGES]
        self.assertEqual(len(codes), len(set(codes)))

    def test_registries(self) -> None:
        """
        The mailbox registries hold the chat messages too, each side only
        the other's; the chat registries are unchanged.
        """
        for cls in CLIENT_MESSAGES + MAILBOX_CLIENT_MESSAGES:
            self.assertIn(cls.TYPE, MAILBOX_FROM_CLIENT)
            self.assertNotIn(cls.TYPE, MAILBOX_FROM_SERVER)
        for cls in SERVER_MESSAGES + MAILBOX_SERVER_MESSAGES:
            self.assertIn(cls.TYPE, MAILBOX_FROM_SERVER)
        self.assertNotIn(PostLetter.TYPE, FROM_CLIENT)

    def test_reasonsDoNotClash(self) -> None:
        """
        The mailbox reasons follow the chat ones (16 on) without reusing a
        code.
        """
        self.assertEqual(
            [(r.name, r.value) for r in Reason if 16 <= r.value <= 22],
            [("MAILBOX_FULL", 16), ("TOO_LARGE", 17), ("RATE_LIMITED", 18), ("NO_PREKEYS", 19),
             ("NO_LETTER", 20), ("BAD_PREKEY", 21), ("BAD_RECEIPT", 22)])

    def test_rules(self) -> None:
        """
        Values outside a field's rule are C{bad-value}: a malformed prekey
        upload, a bundle without a signed prekey or with a short one-time
        prekey, flags and kinds out of range.
        """
        signed = SignedPrekey(1, bytes(32), 0, 0x0807, b"s").encode()
        cases = [
            (MAILBOX_FROM_CLIENT, UploadPrekeys(signed[:-1], b"").encode_body()),
            (MAILBOX_FROM_CLIENT, UploadPrekeys(b"", bytes(35)).encode_body()),
            (MAILBOX_FROM_CLIENT, ListLetters(2, 0).encode_body()),
            (MAILBOX_FROM_SERVER, Bundle("bob", b"k", b"", b"").encode_body()),
            (MAILBOX_FROM_SERVER, Bundle("bob", b"k", signed, bytes(35)).encode_body()),
            (MAILBOX_FROM_SERVER, PrekeysLow(0, 2).encode_body()),
            (MAILBOX_FROM_SERVER, UserKey("bob", b"k", 2).encode_body()),
            (MAILBOX_FROM_SERVER, ReceiptStored("bob", bytes(16), 3).encode_body()),
            (MAILBOX_FROM_SERVER, UserList((UserEntry("a", 2),), 1).encode_body()),
            (MAILBOX_FROM_SERVER, b"\xff\xff" + bytes(8)),
        ]
        types = [UploadPrekeys, UploadPrekeys, ListLetters, Bundle, Bundle, PrekeysLow, UserKey,
                 ReceiptStored, UserList, LetterList]
        for (registry, body), cls in zip(cases, types):
            e = self.assertRaises(RemoteProtocolError, registry.parse, cls.TYPE, body)
            self.assertEqual(e.code, "bad-value", cls.__name__)

    def test_truncatedAndTrailing(self) -> None:
        """
        Each mailbox message cut short by one byte is C{truncated}; with
        one byte more, C{trailing-bytes}.
        """
        for registry, classes in ((MAILBOX_FROM_CLIENT, MAILBOX_CLIENT_MESSAGES),
                                  (MAILBOX_FROM_SERVER, MAILBOX_SERVER_MESSAGES)):
            for cls in classes:
                body = _EXAMPLES[cls].encode_body()
                e = self.assertRaises(RemoteProtocolError, registry.parse, cls.TYPE, body[:-1])
                self.assertEqual(e.code, "truncated", cls.__name__)
                e = self.assertRaises(RemoteProtocolError, registry.parse, cls.TYPE, body + b"\x00")
                self.assertEqual(e.code, "trailing-bytes", cls.__name__)

    def test_fitList(self) -> None:
        """
        A list is cut to the longest prefix whose body fits max_payload:
        exactly at the limit it stays, one byte less drops the last entry.
        """
        entries = [UserEntry(name, 1) for name in ("ann", "bob", "cy")]
        body = UserList(tuple(entries), 3).encode_body()
        self.assertEqual(fit_list(entries, 3, len(body)), tuple(entries))
        self.assertEqual(fit_list(entries, 3, len(body) - 1), tuple(entries[:2]))
        self.assertEqual(fit_list(entries, 3, 10), ())
        cut = UserList(fit_list(entries, 3, len(body) - 1), 3)
        self.assertLessEqual(len(cut.encode_body()), len(body) - 1)

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(st.one_of([_message(c) for c in MAILBOX_CLIENT_MESSAGES + MAILBOX_SERVER_MESSAGES]))
    def test_roundTrip(self, message: Any) -> None:
        """
        Every mailbox message parses back to itself.
        """
        registry = MAILBOX_FROM_CLIENT if type(message) in MAILBOX_CLIENT_MESSAGES else MAILBOX_FROM_SERVER
        self.assertEqual(registry.parse(message.TYPE, message.encode_body()), message)

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(st.integers(0x50, 0x6F), st.binary(max_size=200))
    def test_randomBodies(self, code: int, body: bytes) -> None:
        """
        Random bodies for any mailbox type raise only the codec's own
        errors.
        """
        for registry in (MAILBOX_FROM_CLIENT, MAILBOX_FROM_SERVER):
            try:
                registry.parse(code, body)
            except RemoteProtocolError as e:
                self.assertIn(e.code, {"unknown-type", "truncated", "trailing-bytes", "bad-value"})


_ID = bytes(range(16))
_SIGNED = SignedPrekey(1, bytes(32), 0, 0x0807, b"s").encode()
_EXAMPLES: dict[type, Any] = {
    cls: cls(*[{"name": "bob", "u8": 1, "u32": 7, "u64": 9, "id": _ID, "bytes16": b"k",
                "bytes32": b"p"}[k] if isinstance(k, str) else () for k in cls.FIELDS])
    for cls in MAILBOX_CLIENT_MESSAGES + MAILBOX_SERVER_MESSAGES
}
_EXAMPLES[UploadPrekeys] = UploadPrekeys(_SIGNED, OneTimePrekey(3, bytes(32)).encode())
_EXAMPLES[Bundle] = Bundle("bob", b"k", _SIGNED, b"")
_EXAMPLES[LetterList] = LetterList((LetterEntry("al", _ID, 1, 2, 0),), 1)
_EXAMPLES[KeyHistory] = KeyHistory("bob", (PreviousKeyEntry(b"k", 1, 3, 2),))


class LetterPathCodecTests(unittest.TestCase):
    """
    POST_LETTER's parser and LETTER_STORED's and LETTER_ARRIVED's encoders
    are written out for speed (one of each per letter); they must be the
    generic codec of their declared fields, byte for byte and error for
    error.
    """

    @given(_name, st.binary(min_size=16, max_size=16), st.integers(0, 2**64 - 1),
           st.integers(0, 2**64 - 1))
    @settings(max_examples=200, deadline=None)
    def test_encodersAreTheGenericOne(self, name: str, letter_id: bytes, a: int, b: int) -> None:
        from securechat.wire.declared import Declared
        from securechat.wire.mailbox import LetterArrived, LetterStored
        for message in (LetterStored(name, letter_id, a, b), LetterArrived(name, letter_id, a, b)):
            self.assertEqual(message.encode_body(), Declared.encode_body(message))

    def test_encodersRefuseWhatTheGenericOneRefuses(self) -> None:
        """
        An id that is not 16 bytes, a name over 255 bytes and a number over
        u64 are refused as by the generic encoder (never padded or cut).
        """
        from securechat.wire.declared import Declared
        from securechat.wire.mailbox import LetterArrived, LetterStored
        bad = [("a", b"x" * 15, 1, 1), ("a", b"x" * 17, 1, 1), ("a" * 256, b"x" * 16, 1, 1),
               ("a", b"x" * 16, 2**64, 1), ("a", b"x" * 16, 1, -1)]
        for cls in (LetterStored, LetterArrived):
            for fields in bad:
                message = cls(*fields)
                with self.assertRaises(Exception) as theirs:
                    Declared.encode_body(message)
                with self.assertRaises(type(theirs.exception)) as ours:
                    message.encode_body()
                self.assertEqual(str(ours.exception), str(theirs.exception))

    def test_parserIsTheGenericOne(self) -> None:
        """
        POST_LETTER cut at every byte, with a bad recipient name, or with
        trailing bytes gives the generic parser's error, code and detail;
        whole, the same message.
        """
        from securechat.wire.codec import Reader
        from securechat.wire.declared import Declared

        def parsed(parse: Any, body: bytes) -> Any:
            try:
                r = Reader(body, "PostLetter")
                message = parse(r)
                r.finish()
                return message
            except RemoteProtocolError as e:
                return (e.code, str(e))
        body = PostLetter("bob", bytes(range(16)), b"sealed").encode_body()
        bodies = [body[:n] for n in range(len(body) + 1)] + [body + b"\0",
                                                             b"\3B!b" + body[4:]]
        for candidate in bodies:
            self.assertEqual(parsed(PostLetter.parse_body, candidate),
                             parsed(lambda r: Declared.parse_body.__func__(PostLetter, r),
                                    candidate), candidate)
        self.assertEqual(parsed(PostLetter.parse_body, body),
                         PostLetter("bob", bytes(range(16)), b"sealed"))
