# -*- test-case-name: tests.test_hscodec -*-
"""
Hand-written codecs for the handshake's own messages (docs/protocol.rst,
5): the HELLO a responder reads, the HELLO_REPLY it writes, the body of
the AUTH each side writes and reads.  Each handshake runs them once, and
the generic codec (L{securechat.wire.codec.Reader} with a message class)
built a reader, a dataclass and several field calls for each.

Every reader here takes only the exact well-formed shape with
C{struct}; anything else goes to the generic parser, which gives the
same answer or raises the same error with the same words
(L{tests.test_hscodec} compares both, byte for byte, well-formed and
not).  Every writer gives exactly the bytes the generic encoder gives.
No IO.
"""

from __future__ import annotations

import struct

from securechat.wire.codec import Reader
from securechat.wire.messages import (
    FINISHED_LENGTH,
    HELLO,
    HELLO_REPLY,
    MAX_SUITES,
    USER_IDENTITY,
    Auth,
    Hello,
    HelloReply,
    UserIdentity,
    encode_frame_message,
    parse_frame,
)
from securechat.wire.names import MAX_NAME_LENGTH, _NAME

#: A HELLO frame up to its suite list: length, type, version, context,
#: nonce, key share, suite count.
_HELLO_HEAD = struct.Struct(">IBHB32s32sB")
#: The suite lists of 1 to MAX_SUITES code points.
_SUITE_LISTS = [struct.Struct(f">{n}H") for n in range(MAX_SUITES + 1)]
#: A whole HELLO_REPLY frame: length, type, version, nonce, key share, suite.
_HELLO_REPLY = struct.Struct(">IBH32s32sH")
_REPLY_LENGTH = _HELLO_REPLY.size - 4
#: An AUTH's signature field: scheme, signature length.
_SIGNATURE_HEAD = struct.Struct(">HH")


def hello_fields(frame: bytes) -> tuple[int, int, bytes, tuple[int, ...]]:
    """
    The version, context, key share and suite offer of a whole HELLO
    frame (length field included), as L{parse_frame} with L{Hello} reads
    them.

    @raise RemoteProtocolError: as L{parse_frame} raises it.
    """
    size = len(frame)
    if size > _HELLO_HEAD.size and frame[4] == HELLO:
        _, _, version, context, _, share, count = _HELLO_HEAD.unpack_from(frame)
        if 1 <= count <= MAX_SUITES and size == _HELLO_HEAD.size + 2 * count:
            suites = _SUITE_LISTS[count].unpack_from(frame, _HELLO_HEAD.size)
            return version, context, share, suites
    hello = parse_frame(frame, Hello)
    return hello.version, hello.context, hello.key_share, hello.suites


def hello_reply_frame(version: int, nonce: bytes, key_share: bytes, suite: int) -> bytes:
    """
    The whole HELLO_REPLY frame, as L{encode_frame_message} of a
    L{securechat.wire.messages.HelloReply} gives it (a nonce or key share
    of another length than 32 bytes is the generic encoder's to write).
    """
    if len(nonce) == 32 and len(key_share) == 32:
        return _HELLO_REPLY.pack(_REPLY_LENGTH, HELLO_REPLY, version, nonce, key_share, suite)
    return encode_frame_message(HelloReply(version, nonce, key_share, suite))


def signature_field(scheme: int, signature: bytes) -> bytes:
    """
    The signature part of an AUTH body (scheme, then the signature with its
    u16 length): L{Auth.signature_bytes}.
    """
    if len(signature) > 0xFFFF:
        raise ValueError("field longer than 65535 bytes")
    return _SIGNATURE_HEAD.pack(scheme, len(signature)) + signature


def parse_auth(body: bytes) -> tuple[Auth, bytes, bytes]:
    """
    An AUTH body parsed, as L{securechat.wire.messages.Registry.parse}
    parses it, with the encoded identity and signature field it was read
    from (what the transcript, the signature and the Finished MAC cover:
    the bytes received, which are the canonical encoding of the values).

    @raise RemoteProtocolError: as the generic parser raises it.
    """
    size = len(body)
    if size > 2 and body[0] == USER_IDENTITY:
        end = 2 + body[1]
        if size >= end + 4 and body[1] <= MAX_NAME_LENGTH:
            scheme, length = _SIGNATURE_HEAD.unpack_from(body, end)
            signature_end = end + 4 + length
            if size == signature_end + FINISHED_LENGTH:
                raw_name = body[2:end]
                # Names are ASCII by rule: whatever is not is the generic
                # parser's to refuse, with its words.
                if raw_name.isascii():
                    name = raw_name.decode("ascii")
                    if _NAME.match(name):
                        auth = Auth(UserIdentity(name), scheme, body[end + 4:signature_end],
                                    body[signature_end:])
                        return auth, body[:end], body[end:signature_end]
    return _parse_auth_generic(body)


def _parse_auth_generic(body: bytes) -> tuple[Auth, bytes, bytes]:
    r = Reader(body, Auth.__name__)
    auth = Auth.parse_body(r)
    r.finish()
    # What follows the identity: scheme, signature length, signature, Finished.
    identity_end = len(body) - FINISHED_LENGTH - 4 - len(auth.signature)
    return auth, body[:identity_end], body[identity_end:len(body) - FINISHED_LENGTH]


__all__ = ["hello_fields", "hello_reply_frame", "parse_auth", "signature_field"]
