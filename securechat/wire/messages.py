# -*- test-case-name: tests.test_wire -*-
"""
The typed messages of the protocol, each a frozen dataclass with paired
C{encode_body} / C{parse_body}.

Two kinds:

  - I{frames} travel in the clear, each in its own length-prefixed frame:
    L{Hello}, L{HelloReply}, and L{Alert} before any key exists.  Records
    (type 0x17) are handled by L{securechat.crypto.records}.
  - I{inner messages} travel inside records.  A record's plaintext is one or
    more inner messages, each C{uint8 type | uint32 length | body}.  The
    handshake's L{Auth}, L{Alert}, L{Ping} and L{Pong} are inner messages;
    the relay and the end-to-end layer register theirs in a L{Registry}.

docs/protocol.rst, "Messages", gives every layout.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Iterable, Protocol, TypeVar, Union

from securechat.errors import RemoteProtocolError
from securechat.wire.codec import Reader, bytes8, bytes16, text8, u8, u16, u32
from securechat.wire.names import BadUserName, check_user_name

PROTOCOL_VERSION = 1

# Frame types
HELLO = 0x01
HELLO_REPLY = 0x02
ALERT = 0x15
RECORD = 0x17

# Inner message types
AUTH = 0x03
PING = 0x20
PONG = 0x21

# Identity kinds
CERTIFICATE_IDENTITY = 1
USER_IDENTITY = 2

NONCE_LENGTH = 32
KEY_SHARE_LENGTH = 32
FINISHED_LENGTH = 32
MAX_SUITES = 32
MAX_CHAIN = 8

#: An inner message's header: type, body length (docs/protocol.rst, 4.4).
INNER_HEADER = struct.Struct(">BI")


class Message(Protocol):
    TYPE: ClassVar[int]

    def encode_body(self) -> bytes: ...


M = TypeVar("M", bound="Message")
B = TypeVar("B", bytes, memoryview)


@dataclass(frozen=True, slots=True)
class Hello:
    """
    The initiator's first message.
    """

    TYPE: ClassVar[int] = HELLO
    version: int
    context: int
    nonce: bytes
    key_share: bytes
    suites: tuple[int, ...]

    def encode_body(self) -> bytes:
        return (
            u16(self.version) + u8(self.context) + self.nonce + self.key_share
            + u8(len(self.suites)) + b"".join(u16(s) for s in self.suites)
        )

    @classmethod
    def parse_body(cls, r: Reader) -> Hello:
        version = r.u16("version")
        context = r.u8("context")
        nonce = r.fixed(NONCE_LENGTH, "nonce")
        key_share = r.fixed(KEY_SHARE_LENGTH, "key share")
        count = r.u8("suite count")
        if not 1 <= count <= MAX_SUITES:
            raise RemoteProtocolError("bad-value", f"HELLO: suite count {count}")
        suites = tuple(r.u16("suite") for _ in range(count))
        return cls(version, context, nonce, key_share, suites)


@dataclass(frozen=True, slots=True)
class HelloReply:
    """
    The responder's answer to L{Hello}.
    """

    TYPE: ClassVar[int] = HELLO_REPLY
    version: int
    nonce: bytes
    key_share: bytes
    suite: int

    def encode_body(self) -> bytes:
        return u16(self.version) + self.nonce + self.key_share + u16(self.suite)

    @classmethod
    def parse_body(cls, r: Reader) -> HelloReply:
        return cls(
            r.u16("version"),
            r.fixed(NONCE_LENGTH, "nonce"),
            r.fixed(KEY_SHARE_LENGTH, "key share"),
            r.u16("suite"),
        )


@dataclass(frozen=True, slots=True)
class Alert:
    """
    Why a connection is being closed.  C{reason} is a short text for people;
    it is empty for L{securechat.errors.Alert.HANDSHAKE_FAILED}.
    """

    TYPE: ClassVar[int] = ALERT
    code: int
    reason: str = ""

    def encode_body(self) -> bytes:
        return u8(self.code) + text8(self.reason[:255])

    @classmethod
    def parse_body(cls, r: Reader) -> Alert:
        return cls(r.u8("code"), r.text8("reason"))


@dataclass(frozen=True, slots=True)
class CertificateIdentity:
    """
    A server's identity: its certificate chain (DER, leaf first) and the CA's
    current CRL (DER), stapled.
    """

    KIND: ClassVar[int] = CERTIFICATE_IDENTITY
    chain: tuple[bytes, ...]
    crl: bytes

    def encode(self) -> bytes:
        return (
            u8(self.KIND) + u8(len(self.chain)) + b"".join(bytes16(c) for c in self.chain)
            + bytes16(self.crl)
        )


@dataclass(frozen=True, slots=True)
class UserIdentity:
    """
    A user's identity: the registered user name.
    """

    KIND: ClassVar[int] = USER_IDENTITY
    name: str

    def encode(self) -> bytes:
        return u8(self.KIND) + text8(self.name)


Identity = Union[CertificateIdentity, UserIdentity]


def parse_identity(r: Reader) -> Identity:
    kind = r.u8("identity kind")
    if kind == CERTIFICATE_IDENTITY:
        count = r.u8("certificate count")
        if not 1 <= count <= MAX_CHAIN:
            raise RemoteProtocolError("bad-value", f"AUTH: certificate count {count}")
        chain = tuple(r.bytes16("certificate") for _ in range(count))
        return CertificateIdentity(chain, r.bytes16("CRL"))
    if kind == USER_IDENTITY:
        name = r.text8("user name")
        try:
            check_user_name(name)
        except BadUserName as e:
            raise RemoteProtocolError("bad-value", f"AUTH: {e}") from None
        return UserIdentity(name)
    raise RemoteProtocolError("bad-value", f"AUTH: unknown identity kind {kind}")


@dataclass(frozen=True, slots=True)
class Auth:
    """
    A side's authentication, sent inside the first record of its handshake
    keys: identity, signature over the transcript, and Finished MAC.
    """

    TYPE: ClassVar[int] = AUTH
    identity: Identity
    scheme: int
    signature: bytes
    finished: bytes

    def identity_bytes(self) -> bytes:
        return self.identity.encode()

    def signature_bytes(self) -> bytes:
        return u16(self.scheme) + bytes16(self.signature)

    def encode_body(self) -> bytes:
        return self.identity_bytes() + self.signature_bytes() + self.finished

    @classmethod
    def parse_body(cls, r: Reader) -> Auth:
        identity = parse_identity(r)
        scheme = r.u16("signature scheme")
        signature = r.bytes16("signature")
        finished = r.fixed(FINISHED_LENGTH, "finished")
        return cls(identity, scheme, signature, finished)


@dataclass(frozen=True, slots=True)
class Ping:
    """
    Keepalive; the peer answers with a L{Pong} carrying the same data.
    """

    TYPE: ClassVar[int] = PING
    data: bytes = b""

    def encode_body(self) -> bytes:
        return bytes8(self.data)

    @classmethod
    def parse_body(cls, r: Reader) -> Ping:
        return cls(r.bytes8("data"))


@dataclass(frozen=True, slots=True)
class Pong:
    """
    Answer to L{Ping}.
    """

    TYPE: ClassVar[int] = PONG
    data: bytes = b""

    def encode_body(self) -> bytes:
        return bytes8(self.data)

    @classmethod
    def parse_body(cls, r: Reader) -> Pong:
        return cls(r.bytes8("data"))


class Registry:
    """
    Maps inner message types to their classes, for parsing.
    """

    def __init__(self, classes: Iterable[type]) -> None:
        self._by_type: dict[int, type] = {}
        for cls in classes:
            code = cls.TYPE  # type: ignore[attr-defined]
            if code in self._by_type:
                raise ValueError(f"two message classes for type 0x{code:02x}")
            self._by_type[code] = cls

    def classes(self) -> list[type]:
        return list(self._by_type.values())

    def extend(self, classes: Iterable[type]) -> Registry:
        """
        A new registry with C{classes} added; a class already present is
        skipped, another class for a taken type is an error.
        """
        mine = self.classes()
        return Registry(mine + [cls for cls in classes if cls not in mine])

    def __contains__(self, code: int) -> bool:
        return code in self._by_type

    def parse(self, code: int, body: bytes) -> Message:
        """
        Parse one inner message body of type C{code}.

        @raise RemoteProtocolError: unknown type, truncated, trailing bytes,
            or a bad field value.
        """
        cls = self._by_type.get(code)
        if cls is None:
            raise RemoteProtocolError("unknown-type", f"unknown message type 0x{code:02x}")
        r = Reader(body, cls.__name__)
        message: Message = cls.parse_body(r)  # type: ignore[attr-defined]
        r.finish()
        return message


#: The inner messages every connection understands.
CORE_MESSAGES = Registry([Alert, Ping, Pong])


def encode_inner(messages: Iterable[Message]) -> bytes:
    """
    The plaintext of one record carrying C{messages}, in order.
    """
    parts = []
    for m in messages:
        body = m.encode_body()
        parts.append(INNER_HEADER.pack(m.TYPE, len(body)))
        parts.append(body)
    return b"".join(parts)


def split_inner(plaintext: B) -> list[tuple[int, B]]:
    """
    Split a record's plaintext into C{(type, body)} pairs; the bodies are
    slices of C{plaintext} (views, for a C{memoryview}).

    @raise RemoteProtocolError: C{empty-record} when there is no message,
        C{truncated} when one runs past the end.
    """
    if not plaintext:
        raise RemoteProtocolError("empty-record")
    out = []
    pos = 0
    end = len(plaintext)
    while pos < end:
        if end - pos < INNER_HEADER.size:
            raise RemoteProtocolError("truncated", "inner message header cut short")
        code, length = INNER_HEADER.unpack_from(plaintext, pos)
        pos += INNER_HEADER.size
        if length > end - pos:
            raise RemoteProtocolError(
                "truncated", f"inner message of {length} bytes, {end - pos} left"
            )
        out.append((code, plaintext[pos:pos + length]))
        pos += length
    return out


def parse_frame(frame: bytes, cls: type[M]) -> M:
    """
    Parse a whole plaintext frame (length field included) as C{cls}.
    """
    r = Reader(frame[5:], cls.__name__)
    message: M = cls.parse_body(r)  # type: ignore[attr-defined]
    r.finish()
    return message


def encode_frame_message(message: Message) -> bytes:
    """
    The whole plaintext frame for C{message}.
    """
    body = message.encode_body()
    return u32(1 + len(body)) + u8(message.TYPE) + body
