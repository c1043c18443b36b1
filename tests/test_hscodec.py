"""
The handshake's hand-written codecs (L{securechat.wire.hscodec}) against
the generic codec they stand for, byte for byte: every well-formed
message gives the same values (or bytes), every malformed one the same
error, with the same words; and the well-formed shapes are taken by the
hand-written path, not handed on.  The AUTH record's one-message shortcut
(L{securechat.crypto.authstep.open_auth}) likewise against the split it
skips.
"""

from __future__ import annotations

import struct
from typing import Any, Callable

from hypothesis import given
from hypothesis import strategies as st
from twisted.python.monkey import MonkeyPatcher
from twisted.trial import unittest

from securechat.crypto.authstep import open_auth
from securechat.crypto.records import RecordOpener, RecordSealer
from securechat.crypto.suites import AES_256_GCM
from securechat.errors import ProtocolError
from securechat.wire import hscodec
from securechat.wire.framing import encode_frame
from securechat.wire.declared import Declared
from securechat.wire.relay import Welcome
from securechat.wire.messages import (
    AUTH,
    HELLO,
    INNER_HEADER,
    PING,
    Auth,
    CertificateIdentity,
    Hello,
    HelloReply,
    Registry,
    UserIdentity,
    encode_frame_message,
    parse_frame,
)

GENERIC_AUTH = Registry([Auth])


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    """
    What C{call} gives: its value, or the error it raises (class, code,
    detail).
    """
    try:
        return "value", call()
    except ProtocolError as e:
        return "error", (type(e), e.code, e.detail)
    except ValueError as e:
        return "error", (type(e), str(e))


def generic_hello(frame: bytes) -> tuple[int, int, bytes, tuple[int, ...]]:
    hello = parse_frame(frame, Hello)
    return hello.version, hello.context, hello.key_share, hello.suites


def generic_auth(body: bytes) -> tuple[Auth, bytes, bytes]:
    auth = GENERIC_AUTH.parse(AUTH, body)
    assert isinstance(auth, Auth)
    return auth, auth.identity_bytes(), auth.signature_bytes()


def hello_frame(suites: tuple[int, ...] = (1, 2), version: int = 1, context: int = 1) -> bytes:
    return encode_frame_message(Hello(version, context, b"n" * 32, b"k" * 32, suites))


def auth_body(identity: Any = UserIdentity("alice"), scheme: int = 0x0807,
              signature: bytes = b"s" * 64, finished: bytes = b"f" * 32) -> bytes:
    return Auth(identity, scheme, signature, finished).encode_body()


def refuse(*args: Any) -> Any:
    raise AssertionError("the generic path was taken")


def altered(data: bytes) -> list[bytes]:
    """
    C{data} cut at every length, with one byte more, and with each byte
    changed to 0x00, 0xff and its value plus one.
    """
    out = [data[:n] for n in range(len(data))] + [data + b"\x00"]
    for i in range(len(data)):
        for value in (0, 0xFF, (data[i] + 1) & 0xFF):
            out.append(data[:i] + bytes((value,)) + data[i + 1:])
    return out


class HelloTests(unittest.TestCase):
    """
    L{hscodec.hello_fields} against L{parse_frame} with L{Hello}.
    """

    def test_wellFormed(self) -> None:
        """
        Offers of 1, 2 and 32 suites, any version and context: the same
        fields, by the hand-written path.
        """
        patcher = MonkeyPatcher((hscodec, "parse_frame", refuse))
        for frame in (hello_frame((1,)), hello_frame((2, 1)), hello_frame(tuple(range(32))),
                      hello_frame((1,), version=7, context=2)):
            self.assertEqual(patcher.runWithPatches(hscodec.hello_fields, frame),
                             generic_hello(frame))

    def test_everyAlteration(self) -> None:
        """
        Every truncation, a trailing byte and every byte changed: the same
        fields or the same error (unsupported counts, cut suites, trailing
        bytes included).
        """
        for frame in altered(hello_frame((1, 2))):
            if len(frame) < 5 or frame[4] != HELLO:
                continue  # the connection dispatches only HELLO frames here
            self.assertEqual(outcome(lambda: hscodec.hello_fields(frame)),
                             outcome(lambda: generic_hello(frame)), frame)

    def test_suiteCounts(self) -> None:
        """
        A count of 0 or above 32, or one that disagrees with the frame's
        length: the generic error.
        """
        good = hello_frame((1, 2))
        for count in (0, 1, 3, 33, 255):
            frame = good[:72] + bytes((count,)) + good[73:]
            result = outcome(lambda: hscodec.hello_fields(frame))
            self.assertEqual(result, outcome(lambda: generic_hello(frame)))
            self.assertEqual(result[0], "error")

    @given(st.binary(min_size=0, max_size=160))
    def test_anyBody(self, body: bytes) -> None:
        """
        Any body in a HELLO frame: the same fields or the same error.
        """
        frame = encode_frame(HELLO, body)
        self.assertEqual(outcome(lambda: hscodec.hello_fields(frame)),
                         outcome(lambda: generic_hello(frame)))


class HelloReplyTests(unittest.TestCase):
    """
    L{hscodec.hello_reply_frame} against L{encode_frame_message} of a
    L{HelloReply}.
    """

    @given(st.integers(0, 0xFFFF), st.binary(min_size=32, max_size=32),
           st.binary(min_size=32, max_size=32), st.integers(0, 0xFFFF))
    def test_sameBytes(self, version: int, nonce: bytes, share: bytes, suite: int) -> None:
        """
        The same frame, byte for byte.
        """
        self.assertEqual(hscodec.hello_reply_frame(version, nonce, share, suite),
                         encode_frame_message(HelloReply(version, nonce, share, suite)))

    def test_otherLengths(self) -> None:
        """
        A nonce or key share of another length goes to the generic encoder:
        the same bytes.
        """
        for nonce, share in ((b"n" * 31, b"k" * 32), (b"n" * 32, b"k" * 33), (b"", b"")):
            self.assertEqual(hscodec.hello_reply_frame(1, nonce, share, 1),
                             encode_frame_message(HelloReply(1, nonce, share, 1)))

    def test_outOfRange(self) -> None:
        """
        A suite or version out of u16 range fails as the generic encoder
        fails (struct.error).
        """
        for version, suite in ((0x10000, 1), (1, -1)):
            with self.assertRaises(struct.error):
                hscodec.hello_reply_frame(version, b"n" * 32, b"k" * 32, suite)
            with self.assertRaises(struct.error):
                encode_frame_message(HelloReply(version, b"n" * 32, b"k" * 32, suite))


class SignatureFieldTests(unittest.TestCase):
    """
    L{hscodec.signature_field} against L{Auth.signature_bytes}.
    """

    def test_sameBytes(self) -> None:
        for scheme, signature in ((0x0807, b"s" * 64), (0x0403, b"d" * 71), (0x0804, b"r" * 512),
                                  (0, b""), (0xFFFF, b"x" * 0xFFFF)):
            self.assertEqual(hscodec.signature_field(scheme, signature),
                             Auth(UserIdentity("a"), scheme, signature, b"").signature_bytes())

    def test_tooLong(self) -> None:
        """
        A signature of more than 65535 bytes: the same ValueError.
        """
        signature = b"x" * 0x10000
        self.assertEqual(
            outcome(lambda: hscodec.signature_field(1, signature)),
            outcome(lambda: Auth(UserIdentity("a"), 1, signature, b"").signature_bytes()))


class AuthTests(unittest.TestCase):
    """
    L{hscodec.parse_auth} against the generic parser, with the encoded
    identity and signature field it hands back against the encoder's.
    """

    def test_wellFormedUser(self) -> None:
        """
        User identities (names of 1 and 32 characters, every character
        class), any scheme and signature length: the same AUTH and parts,
        by the hand-written path.
        """
        patcher = MonkeyPatcher((hscodec, "_parse_auth_generic", refuse))
        for name in ("a", "alice", "z" * 32, "a0._-z"):
            for scheme, signature in ((0x0807, b"s" * 64), (0x0403, b"d" * 70), (1, b"")):
                body = auth_body(UserIdentity(name), scheme, signature)
                self.assertEqual(patcher.runWithPatches(hscodec.parse_auth, body),
                                 generic_auth(body))

    def test_certificate(self) -> None:
        """
        A certificate identity (the relay's, read by a client) goes to the
        generic parser: the same AUTH and parts.
        """
        body = auth_body(CertificateIdentity((b"leaf", b"ca" * 300), b"crl"))
        self.assertEqual(hscodec.parse_auth(body), generic_auth(body))

    def test_badNames(self) -> None:
        """
        Names the rule refuses (empty, too long, upper case, a leading
        digit, non-ASCII UTF-8, not UTF-8 at all): the same error.
        """
        for raw in (b"", b"a" * 33, b"Alice", b"0abc", "al\u00efce".encode(), b"al\xffce",
                    b"a b", b"a\nb"):
            body = bytes((2, len(raw))) + raw + b"\x08\x07\x00\x01s" + b"f" * 32
            result = outcome(lambda: hscodec.parse_auth(body))
            self.assertEqual(result, outcome(lambda: generic_auth(body)), raw)
            self.assertEqual(result[0], "error", raw)

    def test_everyAlteration(self) -> None:
        """
        Every truncation, a trailing byte, every byte changed, of a user's
        and of a certificate's AUTH: the same AUTH and parts or the same
        error.
        """
        for good in (auth_body(UserIdentity("alice"), 0x0807, b"s" * 8),
                     auth_body(CertificateIdentity((b"c",), b"r"), 0x0807, b"s" * 4)):
            for body in altered(good):
                self.assertEqual(outcome(lambda: hscodec.parse_auth(body)),
                                 outcome(lambda: generic_auth(body)), body)

    @given(st.binary(max_size=120))
    def test_anyBody(self, body: bytes) -> None:
        """
        Any body: the same AUTH and parts or the same error.
        """
        self.assertEqual(outcome(lambda: hscodec.parse_auth(body)),
                         outcome(lambda: generic_auth(body)))

    @given(st.text(alphabet="abcxyz019._-", min_size=1, max_size=32),
           st.binary(max_size=300))
    def test_anyUser(self, name: str, signature: bytes) -> None:
        """
        Any name of the rule's characters, any signature: the same AUTH and
        parts (or, for a name the rule refuses, the same error).
        """
        body = auth_body(UserIdentity(name), 0x0807, signature)
        self.assertEqual(outcome(lambda: hscodec.parse_auth(body)),
                         outcome(lambda: generic_auth(body)))


class OpenAuthTests(unittest.TestCase):
    """
    L{open_auth}'s shortcut for a record that is one AUTH against the
    split it skips: the same AUTH, or the same error, for records holding
    one AUTH, an AUTH and more, another message, or a header that lies.
    """

    def opened(self, plaintext: bytes) -> tuple[str, Any]:
        secret = b"\x07" * 32
        record = RecordSealer(AES_256_GCM, secret, 1 << 20).seal(plaintext)
        return outcome(lambda: open_auth(RecordOpener(AES_256_GCM, secret, 1 << 20), record))

    def split(self, plaintext: bytes) -> tuple[str, Any]:
        """
        What open_auth made of it before the shortcut: split_inner, one
        AUTH, the generic parser.
        """
        from securechat.wire.messages import split_inner

        def generic() -> tuple[Auth, bytes, bytes]:
            items = split_inner(plaintext)
            if len(items) != 1 or items[0][0] != AUTH:
                from securechat.errors import RemoteProtocolError
                raise RemoteProtocolError(
                    "unexpected-message", "handshake record must hold exactly one AUTH")
            return generic_auth(items[0][1])
        return outcome(generic)

    def test_cases(self) -> None:
        body = auth_body()
        one = INNER_HEADER.pack(AUTH, len(body)) + body
        ping = INNER_HEADER.pack(PING, 1) + b"\x00"
        cases = {
            "one AUTH": one,
            "AUTH and PING": one + ping,
            "PING and AUTH": ping + one,
            "PING": ping,
            "AUTH, length one short": INNER_HEADER.pack(AUTH, len(body) - 1) + body,
            "AUTH, length one long": INNER_HEADER.pack(AUTH, len(body) + 1) + body,
            "empty AUTH": INNER_HEADER.pack(AUTH, 0),
            "header only, cut": INNER_HEADER.pack(AUTH, 0)[:3],
            "empty record": b"",
            "two AUTHs": one + one,
        }
        for name, plaintext in cases.items():
            self.assertEqual(self.opened(plaintext), self.split(plaintext), name)
        self.assertEqual(self.opened(one)[0], "value")

    def test_badRecord(self) -> None:
        """
        A record that does not open is C{bad-handshake-record}, before any
        parsing.
        """
        record = bytearray(RecordSealer(AES_256_GCM, b"\x07" * 32, 1 << 20).seal(b"\x03"))
        record[-1] ^= 1
        result = outcome(lambda: open_auth(RecordOpener(AES_256_GCM, b"\x07" * 32, 1 << 20),
                                           bytes(record)))
        self.assertEqual(result[1][1], "bad-handshake-record")


class WelcomeTests(unittest.TestCase):
    """
    L{Welcome}'s written-out encoder against its declared layout's.
    """

    @given(st.text(min_size=0, max_size=40), st.integers(0, 2**64 - 1))
    def test_sameBytes(self, user: str, max_payload: int) -> None:
        """
        Any name (the encoder does not check the rule; the parser does) and
        any u64: the same bytes, or the same error (a name over 255 bytes
        of UTF-8).
        """
        welcome = Welcome(user, max_payload)
        self.assertEqual(outcome(welcome.encode_body),
                         outcome(lambda: Declared.encode_body(welcome)))

    def test_tooLong(self) -> None:
        """
        A name of 256 bytes and a value past u64: the same errors.
        """
        for welcome in (Welcome("a" * 256, 1), Welcome("\u00e9" * 128, 1)):
            self.assertEqual(outcome(welcome.encode_body),
                             outcome(lambda: Declared.encode_body(welcome)))
        for value in (2**64, -1):
            with self.assertRaises(struct.error):
                Welcome("a", value).encode_body()
            with self.assertRaises(struct.error):
                Declared.encode_body(Welcome("a", value))
