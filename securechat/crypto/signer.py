# -*- test-case-name: tests.test_handshake_signing -*-
"""
Who makes our signatures: a private key in memory, or a key held elsewhere
(a PKCS#11 token) that signs slowly and may not answer at all.

L{ExternalKey} is what L{securechat.crypto.config.Config.private_key} holds
when the key is not in memory.  The handshake never calls it: it emits
L{securechat.crypto.events.SignatureNeeded} with the exact bytes to sign and
waits (state C{WAIT_SIGN}, input held back) until the application gives the
signature to L{securechat.crypto.handshake.Connection.signature_ready} or
gives up with L{securechat.crypto.handshake.Connection.signing_failed}.  A
key in memory keeps the synchronous path: L{keys.sign}, no event, no
extra step.

L{ISigner} is the one signing interface for everything that signs with the
user's key outside the handshake too (letters, receipts, prekeys): a
L{MemorySigner} signs at once; an external key's C{sign_blocking} does IO
and must run off the reactor thread (L{securechat.signing.sign_later}).
No IO, no Twisted here.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from securechat.crypto import keys


class SigningError(Exception):
    """
    A key held elsewhere could not sign.  The message is one line a user
    can act on (wrong PIN, token removed, mechanism missing...).
    """


@runtime_checkable
class ISigner(Protocol):
    """
    Signs with one long-term key under the scheme of L{keys.scheme_for}.
    """

    def public_key(self) -> keys.PublicKey:
        """The public half of the key."""

    @property
    def scheme(self) -> int:
        """The signature scheme (L{keys.ED25519} and so on)."""

    def sign_blocking(self, message: bytes) -> bytes:
        """
        The signature of C{message}, in the encoding docs/protocol.rst
        section 7 requires.  May block (IO to a token): call it off the
        reactor thread unless L{is_external} is false.

        @raise SigningError: the key could not sign; the message says why.
        """


class MemorySigner:
    """
    A private key in memory: signs at once, never blocks.
    """

    is_external = False

    def __init__(self, private_key: keys.PrivateKey) -> None:
        self._key = private_key
        self.scheme = keys.scheme_for(private_key.public_key())

    def public_key(self) -> keys.PublicKey:
        return self._key.public_key()

    def sign_blocking(self, message: bytes) -> bytes:
        return keys.sign(self._key, message)[1]


class ExternalKey:
    """
    Base of keys held outside this process (L{ISigner} implementations whose
    C{sign_blocking} does IO).  A L{Config} holding one makes the handshake
    ask for its signature (L{securechat.crypto.events.SignatureNeeded})
    instead of signing itself.
    """

    is_external = True
    scheme: int
    #: Why this key signs no more (removed, stopped answering), or None:
    #: once set, every request fails at once with this line.
    broken: str | None = None

    def public_key(self) -> keys.PublicKey:  # pragma: no cover - abstract
        raise NotImplementedError

    def sign_blocking(self, message: bytes) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError


def as_signer(key: keys.PrivateKey | ExternalKey) -> ISigner:
    """
    The L{ISigner} for C{key}, whichever kind it is.
    """
    if isinstance(key, ExternalKey):
        return key
    return MemorySigner(key)


def check_signature(key: ExternalKey, message: bytes, signature: bytes) -> None:
    """
    Check a signature an external key made before it is sent: a token that
    signs with another key than it reports, or mangles a signature, is told
    here in one line rather than as the peer's C{bad-signature}.

    @raise SigningError: it does not verify.
    """
    try:
        keys.verify(key.public_key(), key.scheme, signature, message)
    except keys.SignatureError as e:
        raise SigningError(f"the token's signature does not verify with its public key ({e})") from None


__all__ = ["ExternalKey", "ISigner", "MemorySigner", "SigningError", "as_signer", "check_signature"]
