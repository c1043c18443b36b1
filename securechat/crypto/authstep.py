# -*- test-case-name: tests.test_handshake -*-
"""
The handshake's AUTH step and the key-schedule steps around it
(docs/protocol.rst, 5): the handshake and application traffic secrets,
what our signature covers, the body of our AUTH with its Finished MAC, and
the peer's AUTH opened from its handshake record with its Finished MAC
checked.

Functions only: the state machine (L{securechat.crypto.handshake}) holds the
transcript, the secrets and the record directions, and makes every
transition.  Each function is called once per handshake, never per record.
No IO, no Twisted.
"""

from __future__ import annotations

import functools
import hmac
from typing import Callable

from securechat.crypto.records import RecordOpener
from securechat.crypto.schedule import (
    HASH_LENGTH,
    expand_label,
    finished_mac,
    handshake_secret,
    signature_content,
)
from securechat.errors import RemoteProtocolError
from securechat.wire.hscodec import parse_auth, signature_field
from securechat.wire.messages import AUTH, INNER_HEADER, Auth, Identity, split_inner

#: SHA-256 of the transcript so far followed by the parts given (which are
#: not added to it): L{securechat.crypto.handshake.Connection._transcript_hash}.
TranscriptHash = Callable[..., bytes]

@functools.lru_cache(maxsize=16)
def encoded_identity(identity: Identity) -> bytes:
    """
    Our own identity's encoding (a certificate chain and CRL for the relay),
    once per identity, not per handshake.
    """
    return identity.encode()


def handshake_keys(
    context: int, shared: bytes, transcript_hash: bytes, is_initiator: bool
) -> tuple[bytes, bytes, bytes]:
    """
    The handshake secret for C{context} from the shared X25519 secret, and
    the two handshake traffic secrets over the transcript through
    HELLO_REPLY.

    @return: the handshake secret, our sending traffic secret, and the
        peer's (our receiving one).
    """
    hs = handshake_secret(context, shared)
    hs_i = expand_label(hs, b"i hs traffic", transcript_hash, HASH_LENGTH)
    hs_r = expand_label(hs, b"r hs traffic", transcript_hash, HASH_LENGTH)
    if is_initiator:
        return hs, hs_i, hs_r
    return hs, hs_r, hs_i


def application_secret(hs_secret: bytes, transcript_hash: bytes, initiator: bool) -> bytes:
    """
    The application traffic secret the initiator (C{ap_i}) or the
    responder (C{ap_r}) sends under, over the whole transcript.
    """
    label = b"i ap traffic" if initiator else b"r ap traffic"
    return expand_label(hs_secret, label, transcript_hash, HASH_LENGTH)


def auth_content(
    context: int, is_initiator: bool, identity: Identity, transcript: TranscriptHash
) -> bytes:
    """
    What our signature in AUTH covers: our role's and the context's labels
    and the transcript followed by our encoded identity.
    """
    role = b"initiator" if is_initiator else b"responder"
    return signature_content(context, role, transcript(encoded_identity(identity)))


def auth_body(
    identity: Identity, scheme: int, signature: bytes, hs_send: bytes, transcript: TranscriptHash
) -> bytes:
    """
    The body of our AUTH (L{Auth.encode_body}), put together from the parts
    already encoded for the signature and the Finished MAC under our
    handshake traffic secret C{hs_send}.
    """
    identity_bytes = encoded_identity(identity)
    signature_bytes = signature_field(scheme, signature)
    finished = finished_mac(hs_send, transcript(identity_bytes, signature_bytes))
    return identity_bytes + signature_bytes + finished


def open_auth(opener: RecordOpener, frame: bytes) -> tuple[Auth, bytes, bytes]:
    """
    The peer's AUTH from its handshake record C{frame}, with its encoded
    identity and signature field as received (L{parse_auth}).

    @raise RemoteProtocolError: C{bad-handshake-record} if the record does
        not open; C{unexpected-message} unless it holds exactly one AUTH.
    """
    try:
        plaintext = opener.open(frame)
    except RemoteProtocolError as e:
        if e.code == "bad-record-mac":
            raise RemoteProtocolError("bad-handshake-record") from None
        raise
    if (len(plaintext) > INNER_HEADER.size and plaintext[0] == AUTH
            and INNER_HEADER.unpack_from(plaintext)[1] == len(plaintext) - INNER_HEADER.size):
        # One AUTH filling the record, the usual case: what split_inner
        # would find, without the list.
        return parse_auth(plaintext[INNER_HEADER.size:])
    items = split_inner(plaintext)
    if len(items) != 1 or items[0][0] != AUTH:
        raise RemoteProtocolError(
            "unexpected-message", "handshake record must hold exactly one AUTH"
        )
    return parse_auth(items[0][1])


def check_finished(hs_recv: bytes, finished: bytes, identity_bytes: bytes, signature_bytes: bytes,
                   transcript: TranscriptHash) -> None:
    """
    The peer's Finished MAC C{finished}, under its handshake traffic secret
    C{hs_recv}, over the transcript followed by its encoded identity and
    signature field.

    @raise RemoteProtocolError: C{bad-finished}.
    """
    expected = finished_mac(hs_recv, transcript(identity_bytes, signature_bytes))
    if not hmac.compare_digest(expected, finished):
        raise RemoteProtocolError("bad-finished")
