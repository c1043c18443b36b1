# -*- test-case-name: tests.test_handshake -*-
"""
The ephemeral X25519 key share of a handshake: making one, and the single
exchange it is used for (after which the secret is dropped, for forward
secrecy).  No IO, no Twisted.
"""

from __future__ import annotations

import hmac
import os
from typing import Callable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from securechat.errors import RemoteProtocolError


def new_key_share(random: Callable[[int], bytes]) -> tuple[X25519PrivateKey, bytes]:
    """
    A fresh ephemeral key and its public share; from C{random} when that is
    a fixed source (to reproduce the vectors), else generated.
    """
    if random is os.urandom:
        ephemeral = X25519PrivateKey.generate()
    else:  # a fixed source, to reproduce the vectors
        ephemeral = X25519PrivateKey.from_private_bytes(random(32))
    share = ephemeral.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return ephemeral, share


def exchange(ephemeral: X25519PrivateKey, own_share: bytes, peer_share: bytes) -> bytes:
    """
    The shared secret of C{ephemeral} and the peer's C{peer_share}.  The
    caller drops C{ephemeral} afterwards, whatever the outcome.

    @raise RemoteProtocolError: C{reflected-key-share} when the peer sent
        our own share back; C{bad-key-share} when its share is not a key.
    """
    if hmac.compare_digest(peer_share, own_share):
        raise RemoteProtocolError("reflected-key-share")
    try:
        return ephemeral.exchange(X25519PublicKey.from_public_bytes(peer_share))
    except ValueError:
        raise RemoteProtocolError("bad-key-share") from None


__all__ = ["exchange", "new_key_share"]
