"""
Tests for L{securechat.wire}: framing, field codecs, message round trips and
the errors for malformed input.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from securechat.errors import RemoteProtocolError
from securechat.wire.codec import Reader, bytes8, bytes16, bytes32
from securechat.wire.framing import FrameDecoder, encode_frame
from securechat.wire.messages import (
    CORE_MESSAGES,
    Alert,
    Auth,
    CertificateIdentity,
    Hello,
    HelloReply,
    Ping,
    Pong,
    Registry,
    UserIdentity,
    encode_frame_message,
    encode_inner,
    parse_frame,
    split_inner,
)
from securechat.wire.names import BadUserName, check_user_name


class FrameDecoderTests(unittest.TestCase):
    """
    Tests for L{FrameDecoder}.
    """

    def test_wholeFrame(self) -> None:
        """
        A complete frame comes back whole, length field included, and at
        once nothing is buffered (the count the handshake bounds input by).
        """
        d = FrameDecoder(100)
        self.assertEqual(d.buffered, 0)
        frame = encode_frame(0x01, b"abc")
        d.feed(frame)
        self.assertEqual(d.buffered, len(frame))
        self.assertEqual(d.next_frame(), frame)
        self.assertEqual(d.buffered, 0)
        self.assertIsNone(d.next_frame())
        self.assertEqual(d.buffered, 0)

    def test_byteByByte(self) -> None:
        """
        A frame delivered one byte at a time comes back once it is complete,
        and not before.
        """
        d = FrameDecoder(100)
        frame = encode_frame(0x02, b"hello world")
        for i, b in enumerate(frame):
            self.assertIsNone(d.next_frame())
            d.feed(bytes([b]))
        self.assertEqual(d.next_frame(), frame)

    def test_severalFramesInOneChunk(self) -> None:
        """
        Two frames in one chunk come back one after the other.
        """
        d = FrameDecoder(100)
        f1, f2 = encode_frame(1, b"a"), encode_frame(2, b"bb")
        d.feed(f1 + f2)
        self.assertEqual(d.next_frame(), f1)
        self.assertEqual(d.next_frame(), f2)

    def test_frameSplitAcrossChunks(self) -> None:
        """
        A chunk holding one frame and the start of the next, then the rest:
        both frames come back whole, in order, and nothing stays buffered.
        """
        d = FrameDecoder(100)
        f1, f2, f3 = encode_frame(1, b"first"), encode_frame(2, b"second"), encode_frame(3, b"")
        stream = f1 + f2 + f3
        cut = len(f1) + 3
        d.feed(stream[:cut])
        self.assertEqual(d.next_frame(), f1)
        self.assertEqual(d.buffered, 3)
        self.assertIsNone(d.next_frame())
        self.assertEqual(d.buffered, 3)
        d.feed(stream[cut:cut + 4])
        self.assertIsNone(d.next_frame())
        d.feed(stream[cut + 4:])
        self.assertEqual([d.next_frame(), d.next_frame(), d.next_frame()], [f2, f3, None])
        self.assertEqual(d.buffered, 0)

    def test_everySplitPoint(self) -> None:
        """
        However a stream of frames is cut into two chunks, the same frames
        come back, as C{bytes}.
        """
        frames = [encode_frame(i, bytes([i]) * i) for i in range(1, 6)]
        stream = b"".join(frames)
        for cut in range(len(stream) + 1):
            d = FrameDecoder(100)
            got = []
            for chunk in (stream[:cut], stream[cut:]):
                d.feed(chunk)
                while (frame := d.next_frame()) is not None:
                    got.append(frame)
            self.assertEqual(got, frames, f"cut at {cut}")
            self.assertTrue(all(type(f) is bytes for f in got))

    def test_callerBufferNotKept(self) -> None:
        """
        A C{bytearray} fed in is copied: changing it afterwards does not
        change the frames, and the decoder never grows it.
        """
        d = FrameDecoder(100)
        frame = encode_frame(1, b"abcdef")
        chunk = bytearray(frame[:6])
        d.feed(chunk)
        chunk[5:6] = b"X"
        d.feed(frame[6:])
        self.assertEqual(d.next_frame(), frame)
        self.assertEqual(chunk, bytearray(frame[:5] + b"X"))

    def test_oversizedRejectedBeforeBody(self) -> None:
        """
        A length above the maximum is refused as soon as the four length bytes
        are in, without any of the body having arrived.
        """
        d = FrameDecoder(1000)
        d.feed((1001).to_bytes(4, "big"))
        e = self.assertRaises(RemoteProtocolError, d.next_frame)
        self.assertEqual(e.code, "frame-too-large")

    def test_maximumAccepted(self) -> None:
        """
        A frame of exactly the maximum length is accepted.
        """
        d = FrameDecoder(10)
        frame = encode_frame(1, b"x" * 9)
        d.feed(frame)
        self.assertEqual(d.next_frame(), frame)

    def test_hugeLengths(self) -> None:
        """
        Lengths of 2**31 and 2**32-1 are refused at once.
        """
        for length in (2**31, 2**32 - 1):
            d = FrameDecoder(65536)
            d.feed(length.to_bytes(4, "big"))
            e = self.assertRaises(RemoteProtocolError, d.next_frame)
            self.assertEqual(e.code, "frame-too-large")

    def test_zeroLength(self) -> None:
        """
        A frame of length zero (no type byte) is C{empty-frame}.
        """
        d = FrameDecoder(100)
        d.feed(b"\x00\x00\x00\x00")
        self.assertEqual(self.assertRaises(RemoteProtocolError, d.next_frame).code, "empty-frame")


class ReaderTests(unittest.TestCase):
    """
    Tests for L{Reader}.
    """

    def test_truncatedField(self) -> None:
        """
        A field that runs past the end is C{truncated}.
        """
        r = Reader(b"\x05abc", "test")
        e = self.assertRaises(RemoteProtocolError, r.bytes8, "field")
        self.assertEqual(e.code, "truncated")

    def test_trailingBytes(self) -> None:
        """
        Bytes left after the last field are C{trailing-bytes}.
        """
        r = Reader(bytes8(b"ab") + b"!", "test")
        self.assertEqual(r.bytes8("field"), b"ab")
        self.assertEqual(self.assertRaises(RemoteProtocolError, r.finish).code, "trailing-bytes")

    def test_badUtf8(self) -> None:
        """
        A text field that is not UTF-8 is C{bad-value}.
        """
        r = Reader(b"\x02\xff\xfe", "test")
        self.assertEqual(self.assertRaises(RemoteProtocolError, r.text8, "t").code, "bad-value")

    def test_fixedWidthFields(self) -> None:
        """
        u32 and u64 are big-endian and take exactly 4 and 8 bytes; bytes32
        is a u32 length and that many bytes; C{remaining} counts what is
        left (section 2).
        """
        data = (b"\x01\x02\x03\x04" + bytes(range(10, 18)) + bytes32(b"xyz") + b"!")
        r = Reader(data, "test")
        self.assertEqual(r.u32("a"), 0x01020304)
        self.assertEqual(r.remaining(), len(data) - 4)
        self.assertEqual(r.u64("b"), int.from_bytes(bytes(range(10, 18)), "big"))
        self.assertEqual(r.bytes32("c"), b"xyz")
        self.assertEqual(r.remaining(), 1)
        self.assertEqual(r.u8("d"), ord("!"))
        r.finish()
        self.assertEqual(bytes32(b"xyz"), b"\x00\x00\x00\x03xyz")

    def test_errorDetailsCount(self) -> None:
        """
        The details say how many bytes were left and how many trail (for the
        log): of 6 bytes, 3 read, then a 4-byte field needs 4 with 3 left;
        3 trailing bytes.
        """
        r = Reader(b"abcdef", "test")
        r.u16("first")
        r.u8("second")
        e = self.assertRaises(RemoteProtocolError, r.u32, "third")
        self.assertIn("third needs 4 bytes, 3 left", e.detail)
        e = self.assertRaises(RemoteProtocolError, r.finish)
        self.assertIn("3 trailing bytes", e.detail)

    def test_longBodyFinishes(self) -> None:
        """
        A body of more than 256 bytes read to its end finishes cleanly
        (positions are compared by value).
        """
        r = Reader(bytes16(b"x" * 300) + bytes8(b"y" * 255), "test")
        self.assertEqual(r.bytes16("a"), b"x" * 300)
        self.assertEqual(r.bytes8("b"), b"y" * 255)
        r.finish()

    def test_bytes8Limit(self) -> None:
        """
        A bytes8 field holds at most 255 bytes; one more is refused when
        encoding.
        """
        self.assertEqual(len(bytes8(b"x" * 255)), 256)
        self.assertRaises(ValueError, bytes8, b"x" * 256)

    def test_bytes16Limit(self) -> None:
        """
        A bytes16 field holds at most 65535 bytes; one more is refused when
        encoding (our own mistake, not sent).
        """
        self.assertEqual(len(bytes16(b"x" * 65535)), 65537)
        self.assertRaises(ValueError, bytes16, b"x" * 65536)


HELLO = Hello(1, 1, b"n" * 32, b"k" * 32, (1, 2))


class MessageTests(unittest.TestCase):
    """
    Tests for the handshake and core message codecs.
    """

    def test_helloRoundTrip(self) -> None:
        """
        L{Hello} encodes to the documented layout and parses back.
        """
        frame = encode_frame_message(HELLO)
        self.assertEqual(
            frame,
            (1 + 2 + 1 + 32 + 32 + 1 + 4).to_bytes(4, "big") + b"\x01" + b"\x00\x01\x01"
            + b"n" * 32 + b"k" * 32 + b"\x02\x00\x01\x00\x02",
        )
        self.assertEqual(parse_frame(frame, Hello), HELLO)

    def test_helloTruncated(self) -> None:
        """
        A HELLO one byte short is C{truncated}.
        """
        frame = encode_frame_message(HELLO)[:-1]
        e = self.assertRaises(RemoteProtocolError, parse_frame, frame, Hello)
        self.assertEqual(e.code, "truncated")

    def test_helloTrailing(self) -> None:
        """
        A HELLO with one byte too many is C{trailing-bytes}.
        """
        frame = encode_frame_message(HELLO) + b"\x00"
        e = self.assertRaises(RemoteProtocolError, parse_frame, frame, Hello)
        self.assertEqual(e.code, "trailing-bytes")

    def test_helloNoSuites(self) -> None:
        """
        A HELLO offering no suite at all is C{bad-value}.
        """
        frame = encode_frame_message(Hello(1, 1, b"n" * 32, b"k" * 32, ()))
        e = self.assertRaises(RemoteProtocolError, parse_frame, frame, Hello)
        self.assertEqual(e.code, "bad-value")

    def test_authRoundTrip(self) -> None:
        """
        L{Auth} with either identity kind round-trips.
        """
        for identity in (UserIdentity("alice"), CertificateIdentity((b"c1", b"c2"), b"crl")):
            auth = Auth(identity, 0x0807, b"s" * 64, b"f" * 32)
            self.assertEqual(Registry([Auth]).parse(3, auth.encode_body()), auth)

    def test_authBadUserName(self) -> None:
        """
        An AUTH carrying a user name outside the name rule is C{bad-value}.
        """
        body = b"\x02" + bytes8(b"Alice!") + b"\x08\x07\x00\x00" + b"f" * 32
        e = self.assertRaises(RemoteProtocolError, Registry([Auth]).parse, 3, body)
        self.assertEqual(e.code, "bad-value")

    def test_authUnknownIdentityKind(self) -> None:
        """
        An identity kind other than 1 or 2 is C{bad-value}.
        """
        body = b"\x09" + b"\x08\x07\x00\x00" + b"f" * 32
        e = self.assertRaises(RemoteProtocolError, Registry([Auth]).parse, 3, body)
        self.assertEqual(e.code, "bad-value")

    def test_unknownInnerType(self) -> None:
        """
        An inner message type nobody registered is C{unknown-type}.
        """
        e = self.assertRaises(RemoteProtocolError, CORE_MESSAGES.parse, 0x7F, b"")
        self.assertEqual(e.code, "unknown-type")

    def test_duplicateRegistration(self) -> None:
        """
        Two classes for one type code are refused when the registry is built.
        """
        self.assertRaises(ValueError, Registry, [Ping, Ping])

    def test_innerSplit(self) -> None:
        """
        A record plaintext carrying several messages splits back into them.
        """
        plaintext = encode_inner([Ping(b"a"), Pong(b"b"), Alert(0, "bye")])
        self.assertEqual(
            [CORE_MESSAGES.parse(t, b) for t, b in split_inner(plaintext)],
            [Ping(b"a"), Pong(b"b"), Alert(0, "bye")],
        )

    def test_innerEmpty(self) -> None:
        """
        A record carrying no message is C{empty-record}.
        """
        self.assertEqual(self.assertRaises(RemoteProtocolError, split_inner, b"").code, "empty-record")

    def test_innerTruncated(self) -> None:
        """
        An inner message whose length runs past the record is C{truncated},
        and so is a header cut short.
        """
        plaintext = encode_inner([Ping(b"abc")])
        for cut in (plaintext[:-1], plaintext[:3]):
            e = self.assertRaises(RemoteProtocolError, split_inner, cut)
            self.assertEqual(e.code, "truncated")


class UserNameTests(unittest.TestCase):
    """
    Tests for L{check_user_name}.
    """

    def test_good(self) -> None:
        """
        Lowercase names with digits, dots, dashes and underscores are fine.
        """
        for name in ("alice", "bob.smith", "c-3po", "r2_d2", "a" * 32):
            self.assertEqual(check_user_name(name), name)

    def test_bad(self) -> None:
        """
        Empty, too long, uppercase, leading digit and other characters are
        refused.
        """
        for name in ("", "a" * 33, "Alice", "1bob", "bob smith", "bob/../x", "ålice", "bob\n"):
            self.assertRaises(BadUserName, check_user_name, name)


# -- properties ---------------------------------------------------------------

_b32 = st.binary(min_size=32, max_size=32)
_names = st.from_regex(r"[a-z][a-z0-9._-]{0,31}", fullmatch=True)
_messages = st.one_of(
    st.builds(Hello, st.integers(0, 0xFFFF), st.integers(0, 255), _b32, _b32,
              st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=32).map(tuple)),
    st.builds(HelloReply, st.integers(0, 0xFFFF), _b32, _b32, st.integers(0, 0xFFFF)),
    st.builds(Alert, st.integers(0, 255), st.text(max_size=60)),
    st.builds(Ping, st.binary(max_size=255)),
    st.builds(Pong, st.binary(max_size=255)),
    st.builds(
        Auth,
        st.one_of(
            st.builds(UserIdentity, _names),
            st.builds(CertificateIdentity,
                      st.lists(st.binary(max_size=300), min_size=1, max_size=8).map(tuple),
                      st.binary(max_size=300)),
        ),
        st.integers(0, 0xFFFF), st.binary(max_size=600), st.binary(min_size=32, max_size=32),
    ),
)
_ALL = Registry([Hello, HelloReply, Auth]).extend(CORE_MESSAGES.classes())


class PropertyTests(unittest.TestCase):
    """
    Property-based tests of the codecs.
    """

    @given(_messages)
    def test_roundTrip(self, message: object) -> None:
        """
        Every message parses back to itself, alone in a frame and inside a
        record plaintext.
        """
        body = message.encode_body()  # type: ignore[attr-defined]
        self.assertEqual(_ALL.parse(message.TYPE, body), message)  # type: ignore[attr-defined]
        [(code, inner)] = split_inner(encode_inner([message]))  # type: ignore[list-item]
        self.assertEqual(_ALL.parse(code, inner), message)

    @given(st.integers(0, 255), st.binary(max_size=400))
    def test_randomBodies(self, code: int, body: bytes) -> None:
        """
        Random bytes as any message body either parse or raise the codec's
        own L{RemoteProtocolError}, never anything else.
        """
        try:
            _ALL.parse(code, body)
        except RemoteProtocolError as e:
            self.assertIn(e.code, {"unknown-type", "truncated", "trailing-bytes", "bad-value"})

    @given(st.binary(max_size=600), st.integers(1, 64))
    def test_randomStream(self, data: bytes, chunk: int) -> None:
        """
        Random bytes fed to the frame decoder and the record splitter, in any
        chunking, raise only L{RemoteProtocolError}.
        """
        d = FrameDecoder(256)
        try:
            for i in range(0, len(data), chunk):
                d.feed(data[i:i + chunk])
                while (frame := d.next_frame()) is not None:
                    self.assertLessEqual(len(frame), 256 + 4)
            split_inner(data)
        except RemoteProtocolError as e:
            self.assertIn(e.code, {"frame-too-large", "empty-frame", "empty-record", "truncated"})
