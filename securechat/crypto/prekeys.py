# -*- test-case-name: tests.test_prekeys -*-
"""
Prekeys: the X25519 keys a user publishes through the relay so that others
can seal letters to it while it is offline (docs/protocol.rst, 14.1).

  - A I{signed prekey} is an X25519 key signed by the user's registered
    long-term key, over a message with a context label of its own (so no
    handshake, letter or receipt signature can be taken for one).  The user
    rotates it; the previous one is kept for a grace period.
  - I{One-time prekeys} are unsigned X25519 keys, each handed out by the
    relay to one sender and then deleted.

Also L{LetterError}, the one error type of the mailbox's pure core: its
C{code} names the failure exactly (C{bad-prekey-signature}, C{malformed},
...), its message is one line for a user and holds no key material.

Pure: no IO, no clock (times are arguments), randomness injectable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from securechat.crypto import keys
from securechat.errors import RemoteProtocolError
from securechat.wire.codec import Reader, bytes16, text8, u16, u32, u64

#: Every signed prekey signature is over this label first.
SIGNED_PREKEY_LABEL = b"securechat/1 signed prekey\x00"

X25519_LENGTH = 32
#: The length of an encoded one-time prekey (u32 id, 32-byte key).
ONE_TIME_PREKEY_LENGTH = 4 + X25519_LENGTH
#: The most one-time prekeys one upload may carry.
MAX_ONE_TIME_UPLOAD = 100
#: The largest signature of section 7 (RSA-4096).
MAX_SIGNATURE = 512

Random = Callable[[int], bytes]


class LetterError(ValueError):
    """
    A prekey, letter or receipt was refused.  C{code} is the specific
    reason (docs/protocol.rst, 14.7); the message is one line without key
    material or plaintext.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def reader_errors(what: str, parse: Callable[[Reader], object], data: bytes) -> object:
    """
    Run C{parse} over all of C{data} with a L{Reader}, turning the codec's
    errors (truncated, trailing bytes, bad value) into C{malformed}.
    """
    r = Reader(data, what)
    try:
        value = parse(r)
        r.finish()
    except RemoteProtocolError as e:
        raise LetterError("malformed", f"{what}: {e.code}: {e.detail}") from None
    return value


def x25519_public_bytes(key: X25519PrivateKey) -> bytes:
    """The 32-byte public key of C{key}."""
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _check_id(prekey_id: int) -> None:
    if not 0 <= prekey_id <= 0xFFFFFFFF:
        raise ValueError(f"prekey id {prekey_id} is not a u32")


@dataclass(frozen=True, slots=True)
class SignedPrekey:
    """
    A signed prekey as published: C{public} is the raw X25519 key,
    C{created_at} the owner's clock (Unix seconds), C{scheme} and
    C{signature} the owner's signature over L{signed_prekey_message}.
    """

    prekey_id: int
    public: bytes
    created_at: int
    scheme: int
    signature: bytes

    def encode(self) -> bytes:
        """u32 id, 32 bytes public, u64 created_at, u16 scheme, bytes16 signature."""
        return (u32(self.prekey_id) + self.public + u64(self.created_at) + u16(self.scheme)
                + bytes16(self.signature))

    @classmethod
    def parse(cls, data: bytes) -> SignedPrekey:
        """Parse exactly one encoded signed prekey (C{malformed} otherwise)."""
        def parse(r: Reader) -> SignedPrekey:
            prekey_id = r.u32("prekey_id")
            if prekey_id == 0:
                raise RemoteProtocolError("bad-value", "signed prekey id 0 (it means none)")
            public = r.fixed(X25519_LENGTH, "public")
            created_at = r.u64("created_at")
            scheme = r.u16("scheme")
            signature = r.bytes16("signature")
            if len(signature) > MAX_SIGNATURE:
                raise RemoteProtocolError("bad-value", f"signature of {len(signature)} bytes")
            return cls(prekey_id, public, created_at, scheme, signature)
        value = reader_errors("signed prekey", parse, data)
        assert isinstance(value, SignedPrekey)
        return value


@dataclass(frozen=True, slots=True)
class OneTimePrekey:
    """A one-time prekey as published: its id and raw X25519 key."""

    prekey_id: int
    public: bytes

    def encode(self) -> bytes:
        """u32 id, 32 bytes public."""
        return u32(self.prekey_id) + self.public

    @classmethod
    def parse(cls, data: bytes) -> OneTimePrekey:
        """Parse exactly one encoded one-time prekey (C{malformed} otherwise)."""
        def parse(r: Reader) -> OneTimePrekey:
            return cls(r.u32("prekey_id"), r.fixed(X25519_LENGTH, "public"))
        value = reader_errors("one-time prekey", parse, data)
        assert isinstance(value, OneTimePrekey)
        return value


def encode_one_time_prekeys(prekeys: list[OneTimePrekey] | tuple[OneTimePrekey, ...]) -> bytes:
    """One-time prekeys back to back, as UPLOAD_PREKEYS carries them."""
    return b"".join(p.encode() for p in prekeys)


def parse_one_time_prekeys(data: bytes) -> tuple[OneTimePrekey, ...]:
    """
    The one-time prekeys of an upload: a whole number of 36-byte encodings,
    at most L{MAX_ONE_TIME_UPLOAD}, no id twice (C{malformed} otherwise).
    """
    if len(data) % ONE_TIME_PREKEY_LENGTH:
        raise LetterError("malformed", f"one-time prekeys: {len(data)} bytes is not a multiple of 36")
    count = len(data) // ONE_TIME_PREKEY_LENGTH
    if count > MAX_ONE_TIME_UPLOAD:
        raise LetterError("malformed", f"{count} one-time prekeys, the most is {MAX_ONE_TIME_UPLOAD}")
    out = tuple(OneTimePrekey.parse(data[i:i + ONE_TIME_PREKEY_LENGTH])
                for i in range(0, len(data), ONE_TIME_PREKEY_LENGTH))
    if len({p.prekey_id for p in out}) != len(out):
        raise LetterError("malformed", "one-time prekeys: an id appears twice")
    return out


def signed_prekey_message(user: str, prekey_id: int, public: bytes, created_at: int) -> bytes:
    """
    What a signed prekey's signature covers: the label, the owner's name
    (text8), the id (u32), the public key (32 bytes), created_at (u64).
    """
    return SIGNED_PREKEY_LABEL + text8(user) + u32(prekey_id) + public + u64(created_at)


@dataclass(frozen=True, slots=True)
class PrekeyToSign:
    """
    A signed prekey before its signature: L{message} is the exact bytes
    the owner's key signs (in memory or on a token), L{signed} assembles
    the prekey once the signature is there.
    """

    user: str
    prekey_id: int
    public: bytes
    created_at: int

    @property
    def message(self) -> bytes:
        """What the signature covers (L{signed_prekey_message})."""
        return signed_prekey_message(self.user, self.prekey_id, self.public, self.created_at)

    def signed(self, scheme: int, signature: bytes) -> SignedPrekey:
        """The signed prekey, with C{signature} (under C{scheme}) over L{message}."""
        return SignedPrekey(self.prekey_id, self.public, self.created_at, scheme, signature)


def prepare_signed_prekey(
    user: str, prekey_id: int, created_at: int, random: Random = os.urandom,
) -> tuple[PrekeyToSign, X25519PrivateKey]:
    """
    A new signed prekey for C{user}, not yet signed, and its private half
    (which the owner keeps and never sends).  Draws 32 random bytes.
    """
    _check_id(prekey_id)
    if prekey_id == 0:
        raise ValueError("a signed prekey's id is 1 or more (0 means none)")
    private = X25519PrivateKey.from_private_bytes(random(X25519_LENGTH))
    return PrekeyToSign(user, prekey_id, x25519_public_bytes(private), created_at), private


def generate_signed_prekey(
    user: str, identity_key: keys.PrivateKey, prekey_id: int, created_at: int,
    random: Random = os.urandom,
) -> tuple[SignedPrekey, X25519PrivateKey]:
    """
    A new signed prekey for C{user}, signed with its registered key (in
    memory), and its private half: L{prepare_signed_prekey}, then
    L{PrekeyToSign.signed}.
    """
    to_sign, private = prepare_signed_prekey(user, prekey_id, created_at, random)
    scheme, signature = keys.sign(identity_key, to_sign.message)
    return to_sign.signed(scheme, signature), private


def generate_one_time_prekeys(
    first_id: int, count: int, random: Random = os.urandom,
) -> list[tuple[OneTimePrekey, X25519PrivateKey]]:
    """
    C{count} new one-time prekeys with ids C{first_id}, C{first_id + 1}, ...
    and their private halves.
    """
    _check_id(first_id)
    _check_id(first_id + count - 1 if count else first_id)
    out = []
    for i in range(count):
        private = X25519PrivateKey.from_private_bytes(random(X25519_LENGTH))
        out.append((OneTimePrekey(first_id + i, x25519_public_bytes(private)), private))
    return out


def verify_signed_prekey(user: str, prekey: SignedPrekey, user_key: keys.PublicKey) -> None:
    """
    Check that C{prekey} was signed by C{user}'s registered key.

    @raise LetterError: C{bad-prekey-signature}.
    """
    message = signed_prekey_message(user, prekey.prekey_id, prekey.public, prekey.created_at)
    try:
        keys.verify(user_key, prekey.scheme, prekey.signature, message)
    except keys.SignatureError as e:
        raise LetterError(
            "bad-prekey-signature",
            f"the signed prekey {prekey.prekey_id} of {user} is not signed by its key ({e.reason})",
        ) from None


@dataclass(frozen=True, slots=True)
class PrekeyBundle:
    """
    What a sender needs to seal a letter to C{user}: its current signed
    prekey and, while the relay has any, one one-time prekey.
    """

    user: str
    signed_prekey: SignedPrekey
    one_time_prekey: OneTimePrekey | None

    @classmethod
    def parse(cls, user: str, signed_prekey: bytes, one_time_prekey: bytes) -> PrekeyBundle:
        """
        A bundle from the fields of a BUNDLE message (C{one_time_prekey}
        empty when the relay had none left); C{malformed} otherwise.
        Parsing checks no signature: L{seal_letter} does.
        """
        return cls(user, SignedPrekey.parse(signed_prekey),
                   OneTimePrekey.parse(one_time_prekey) if one_time_prekey else None)


class PrekeyRing:
    """
    The private halves of one user's prekeys, by id, for opening letters.
    A one-time prekey is forgotten once a letter that used it has been
    opened (L{forget_one_time}), so a replay of that letter cannot be
    opened again.  An in-memory implementation; the client keeps its own
    copy on disk.
    """

    def __init__(self) -> None:
        self.signed: dict[int, X25519PrivateKey] = {}
        self.one_time: dict[int, X25519PrivateKey] = {}

    def signed_prekey(self, prekey_id: int) -> X25519PrivateKey | None:
        return self.signed.get(prekey_id)

    def one_time_prekey(self, prekey_id: int) -> X25519PrivateKey | None:
        return self.one_time.get(prekey_id)

    def forget_one_time(self, prekey_id: int) -> None:
        self.one_time.pop(prekey_id, None)


def check_upload(
    user: str, user_key: keys.PublicKey, signed_prekey: bytes, one_time_prekeys: bytes,
) -> tuple[SignedPrekey | None, tuple[OneTimePrekey, ...]]:
    """
    The relay's check of an UPLOAD_PREKEYS from C{user}, whose registered
    key is C{user_key} (docs/protocol.rst, 14.7): the prekeys it carries,
    the signed one (if any) verified for C{user}.

    @raise LetterError: C{malformed}, C{bad-prekey-signature} (answered
        with BAD_PREKEY).
    """
    signed = SignedPrekey.parse(signed_prekey) if signed_prekey else None
    one_time = parse_one_time_prekeys(one_time_prekeys)
    if signed is not None:
        verify_signed_prekey(user, signed, user_key)
    return signed, one_time
