# -*- test-case-name: tests.test_handshake -*-
"""
The key schedule: HKDF-SHA256 with labels, as in TLS 1.3 but with our own
label prefix so no key here can be confused with a TLS key.

  HKDF-Expand-Label(Secret, Label, Context, Length) =
      HKDF-Expand(Secret, HkdfLabel, Length)
  HkdfLabel = uint16 Length || uint8 len(L) || L || uint8 len(Context) || Context
  where L = "sc1 " + Label

docs/protocol.rst, "Key schedule", lists every label and where it is used.
"""

from __future__ import annotations

import functools
import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from securechat.crypto.suites import Suite

HASH_LENGTH = 32
LABEL_PREFIX = b"sc1 "

#: The context names that domain-separate every key and signature.
CONTEXT_NAMES = {1: b"client-server", 2: b"end-to-end"}

_SHA256 = hashes.SHA256()


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    """
    HKDF-Extract with SHA-256 (RFC 5869 section 2.2): HMAC(salt, IKM).
    """
    return HKDF.extract(_SHA256, salt, ikm)


@functools.lru_cache(maxsize=64)
def _label_head(label: bytes, length: int, context_length: int) -> bytes:
    # The labels are the constants of this module and the handshake, and
    # the contexts are empty or a hash: the HkdfLabel up to the context is
    # built once for each, not per derivation.
    full = LABEL_PREFIX + label
    return length.to_bytes(2, "big") + bytes((len(full),)) + full + bytes((context_length,))


def expand_label(secret: bytes, label: bytes, context: bytes, length: int) -> bytes:
    """
    HKDF-Expand-Label as defined in this module's docstring.
    """
    info = _label_head(label, length, len(context)) + context
    return HKDFExpand(_SHA256, length, info).derive(secret)


#: The HKDF-Extract salt of each context's handshake secret.
_SALTS = {context: hashlib.sha256(b"securechat/1 " + name).digest()
          for context, name in CONTEXT_NAMES.items()}


def handshake_secret(context: int, shared: bytes) -> bytes:
    """
    The handshake secret: HKDF-Extract(salt=SHA-256("securechat/1 " + context
    name), IKM=X25519 shared secret).
    """
    return hkdf_extract(_SALTS[context], shared)


def traffic_keys(suite: Suite, secret: bytes) -> tuple[bytes, bytes]:
    """
    The AEAD key and IV for one direction from its traffic secret:
    L{expand_label} with the labels C{key} and C{iv} and an empty context
    (their HkdfLabels built once per suite shape; a handshake derives four
    pairs).
    """
    key_length, nonce_length = suite.key_length, suite.nonce_length
    key_info, iv_info = _traffic_infos(key_length, nonce_length)
    return (HKDFExpand(_SHA256, key_length, key_info).derive(secret),
            HKDFExpand(_SHA256, nonce_length, iv_info).derive(secret))


@functools.lru_cache(maxsize=16)
def _traffic_infos(key_length: int, nonce_length: int) -> tuple[bytes, bytes]:
    return _label_head(b"key", key_length, 0), _label_head(b"iv", nonce_length, 0)


def next_traffic_secret(secret: bytes) -> bytes:
    """
    The next traffic secret after a key update (one-way: the old secret cannot
    be computed from the new one).
    """
    return expand_label(secret, b"traffic upd", b"", HASH_LENGTH)


def finished_mac(base_secret: bytes, transcript_hash: bytes) -> bytes:
    """
    The Finished value: HMAC-SHA256(HKDF-Expand-Label(base, "finished", "",
    32), transcript hash).
    """
    key = HKDFExpand(_SHA256, HASH_LENGTH, _FINISHED_INFO).derive(base_secret)
    return hmac.digest(key, transcript_hash, "sha256")


#: The HkdfLabel of the Finished key (L{expand_label} with the label
#: C{finished} and an empty context).
_FINISHED_INFO = _label_head(b"finished", HASH_LENGTH, 0)


def signature_content(context: int, role: bytes, transcript_hash: bytes) -> bytes:
    """
    What a handshake signature covers: "securechat/1 ", the context name, a
    space, the signer's role ("initiator" or "responder"), " signature", a zero
    byte, and the transcript hash.
    """
    return (
        b"securechat/1 " + CONTEXT_NAMES[context] + b" " + role + b" signature\x00"
        + transcript_hash
    )
