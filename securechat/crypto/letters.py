# -*- test-case-name: tests.test_letters -*-
"""
Letters: end-to-end encrypted, signed messages to a user who may be offline
(docs/protocol.rst, 14.2-14.4).

A sender seals a letter to the recipient's prekey bundle: a fresh ephemeral
X25519 key, X25519 with the signed prekey and (if the relay had one) the
one-time prekey, HKDF-SHA256 bound to both users' names and registered keys
and to the whole header, an AEAD (suite named in the header), and a
signature by the sender's registered key over the header and ciphertext.
The header names the recipient and the prekey ids, so a signed letter
cannot be passed on as if it had been written to someone else.

The recipient parses the letter strictly, checks it is addressed to itself,
verifies the sender's signature I{before} anything else touches the
ciphertext, then derives the key from its prekeys and decrypts.  Every
refusal is a L{LetterError} with a specific code.

Replays: a letter's C{(sender, letter_id)} is unique (the sender draws 16
random bytes); L{SealedLetter.replay_key} is what a client remembers to
refuse a letter seen before.  Pure: no IO, no clock.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Container, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from securechat.crypto import keys
from securechat.crypto.prekeys import (
    MAX_SIGNATURE,
    X25519_LENGTH,
    LetterError,
    PrekeyBundle,
    Random,
    reader_errors,
    verify_signed_prekey,
    x25519_public_bytes,
)
from securechat.crypto.schedule import expand_label, hkdf_extract
from securechat.crypto.senderkeys import GroupKeyError, parse_distribution
from securechat.crypto.suites import AES_256_GCM, SUITES
from securechat.errors import RemoteProtocolError
from securechat.wire.codec import Reader, bytes16, bytes32, text8, u8, u16, u32, u64
from securechat.wire.names import read_user_name

LETTER_VERSION = 1
LETTER_ID_LENGTH = 16
#: The largest sealed letter, in bytes (a relay may set a lower limit).
MAX_LETTER = 49152
#: Content types of a letter's plaintext.
CONTENT_TEXT = 1
#: A group sender key (docs/protocol.rst, 16.2).
CONTENT_GROUP_KEY = 2

LETTER_SIGNATURE_LABEL = b"securechat/1 letter signature\x00"
LETTER_KDF_SALT = hashlib.sha256(b"securechat/1 letter").digest()

_TAG_LENGTH = 16


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@dataclass(frozen=True, slots=True)
class LetterHeader:
    """
    A letter's header, all of it in the clear (the relay could read it, but
    does not parse it) and all of it signed and authenticated.
    """

    suite: int
    letter_id: bytes
    sender: str
    recipient: str
    sent_at: int
    reply_to: bytes | None
    signed_prekey_id: int
    one_time_prekey_id: int | None
    ephemeral: bytes
    version: int = LETTER_VERSION

    def encode(self) -> bytes:
        out = [u8(self.version), u16(self.suite), self.letter_id, text8(self.sender),
               text8(self.recipient), u64(self.sent_at)]
        out.append(b"\x00" if self.reply_to is None else b"\x01" + self.reply_to)
        out.append(u32(self.signed_prekey_id))
        out.append(b"\x00" if self.one_time_prekey_id is None else b"\x01" + u32(self.one_time_prekey_id))
        out.append(self.ephemeral)
        return b"".join(out)

    @classmethod
    def parse_from(cls, r: Reader) -> LetterHeader:
        version = r.u8("version")
        if version != LETTER_VERSION:
            raise LetterError("unsupported-version", f"letter version {version}, only 1 is known")
        suite = r.u16("suite")
        letter_id = r.fixed(LETTER_ID_LENGTH, "letter_id")
        sender = read_user_name(r, "sender")
        recipient = read_user_name(r, "recipient")
        sent_at = r.u64("sent_at")
        reply_to = r.fixed(LETTER_ID_LENGTH, "reply_to") if _flag(r, "reply_to flag") else None
        signed_prekey_id = r.u32("signed_prekey_id")
        one_time = r.u32("one_time_prekey_id") if _flag(r, "one_time flag") else None
        ephemeral = r.fixed(X25519_LENGTH, "ephemeral")
        return cls(suite, letter_id, sender, recipient, sent_at, reply_to, signed_prekey_id,
                   one_time, ephemeral, version)


def _flag(r: Reader, what: str) -> bool:
    flag = r.u8(what)
    if flag > 1:
        raise RemoteProtocolError("bad-value", f"{what} is {flag}, not 0 or 1")
    return flag == 1


@dataclass(frozen=True, slots=True)
class SealedLetter:
    """
    A letter as it travels: header, AEAD ciphertext (tag included), and the
    sender's signature.  C{raw} is the exact bytes (what receipts hash).
    """

    header: LetterHeader
    ciphertext: bytes
    scheme: int
    signature: bytes
    raw: bytes

    @property
    def signed_part(self) -> bytes:
        """Header and C{bytes32} ciphertext: what the signature covers."""
        return self.header.encode() + bytes32(self.ciphertext)

    @property
    def replay_key(self) -> tuple[str, bytes]:
        """C{(sender, letter_id)}: unique per letter; seen twice is a replay."""
        return self.header.sender, self.header.letter_id

    @property
    def digest(self) -> bytes:
        """SHA-256 of the whole sealed letter, as receipts name it."""
        return _sha256(self.raw)


@dataclass(frozen=True, slots=True)
class OpenedLetter:
    """A letter whose signature verified and that decrypted."""

    header: LetterHeader
    content_type: int
    content: bytes

    @property
    def text(self) -> str:
        """The content of a text letter (UTF-8, checked when opened)."""
        return self.content.decode("utf-8")


class PrekeySecrets(Protocol):
    """Where a recipient keeps its prekeys' private halves, by id."""

    def signed_prekey(self, prekey_id: int) -> X25519PrivateKey | None: ...

    def one_time_prekey(self, prekey_id: int) -> X25519PrivateKey | None: ...


def letter_signature_message(signed_part: bytes) -> bytes:
    """The label, then SHA-256 of header || bytes32 ciphertext."""
    return LETTER_SIGNATURE_LABEL + _sha256(signed_part)


def letter_keys(
    suite_code: int, shared: bytes, header: bytes,
    sender: str, sender_key: keys.PublicKey, recipient: str, recipient_key: keys.PublicKey,
) -> tuple[bytes, bytes]:
    """
    The AEAD key and nonce of one letter:

      prk     = HKDF-Extract(SHA-256("securechat/1 letter"), shared)
      binding = SHA-256(text8 sender || bytes16 DER(sender key)
                        || text8 recipient || bytes16 DER(recipient key) || header)
      key     = HKDF-Expand-Label(prk, "letter key", binding, key length)
      nonce   = HKDF-Expand-Label(prk, "letter iv", binding, 12)
    """
    suite = SUITES[suite_code]
    prk = hkdf_extract(LETTER_KDF_SALT, shared)
    binding = _sha256(
        text8(sender) + bytes16(keys.public_key_der(sender_key))
        + text8(recipient) + bytes16(keys.public_key_der(recipient_key)) + header)
    return (expand_label(prk, b"letter key", binding, suite.key_length),
            expand_label(prk, b"letter iv", binding, suite.nonce_length))


def _exchange(private: X25519PrivateKey, public: bytes, what: str) -> bytes:
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:
        # cryptography refuses an all-zero result (a low-order point).
        raise LetterError("bad-key-share", f"X25519 with the {what} gives zero") from None
    if shared == bytes(32):
        raise LetterError("bad-key-share", f"X25519 with the {what} gives zero")
    return shared


@dataclass(frozen=True, slots=True)
class LetterToSign:
    """
    A sealed letter before its signature (header and ciphertext; no
    secret left in it): L{message} is the exact bytes the sender's key
    signs (in memory or on a token), L{signed} assembles the letter once
    the signature is there.
    """

    header: LetterHeader
    ciphertext: bytes

    @property
    def signed_part(self) -> bytes:
        """Header and C{bytes32} ciphertext."""
        return self.header.encode() + bytes32(self.ciphertext)

    @property
    def message(self) -> bytes:
        """What the signature covers (L{letter_signature_message})."""
        return letter_signature_message(self.signed_part)

    def signed(self, scheme: int, signature: bytes) -> SealedLetter:
        """
        The sealed letter, with C{signature} (under C{scheme}) over
        L{message}.

        @raise LetterError: C{letter-too-large}.
        """
        raw = self.signed_part + u16(scheme) + bytes16(signature)
        if len(raw) > MAX_LETTER:
            raise LetterError("letter-too-large", f"the letter is {len(raw)} bytes, the most is {MAX_LETTER}")
        return SealedLetter(self.header, self.ciphertext, scheme, signature, raw)


def prepare_letter(
    *,
    sender: str,
    sender_key: keys.PublicKey,
    recipient: str,
    recipient_key: keys.PublicKey,
    bundle: PrekeyBundle,
    content: bytes,
    sent_at: int,
    content_type: int = CONTENT_TEXT,
    reply_to: bytes | None = None,
    suite: int = AES_256_GCM.code,
    random: Random = os.urandom,
) -> LetterToSign:
    """
    Encrypt C{content} to C{recipient}, whose registered (and pinned) key
    is C{recipient_key}, with the prekeys of C{bundle}, from C{sender},
    whose registered key is C{sender_key}: everything of sealing but the
    signature.  Draws the letter id (16 bytes) first, then the ephemeral
    private key (32 bytes).

    @raise LetterError: C{wrong-recipient} (a bundle for someone else),
        C{bad-prekey-signature} (the signed prekey is not the recipient's:
        a relay substituted it), C{bad-key-share}, C{unknown-suite}.
    """
    if bundle.user != recipient:
        raise LetterError("wrong-recipient", f"a prekey bundle of {bundle.user} for a letter to {recipient}")
    if suite not in SUITES:
        raise LetterError("unknown-suite", f"suite 0x{suite:04x} is not known")
    if reply_to is not None and len(reply_to) != LETTER_ID_LENGTH:
        raise ValueError("reply_to must be 16 bytes")
    verify_signed_prekey(recipient, bundle.signed_prekey, recipient_key)
    letter_id = random(LETTER_ID_LENGTH)
    ephemeral = X25519PrivateKey.from_private_bytes(random(X25519_LENGTH))
    one_time = bundle.one_time_prekey
    header = LetterHeader(
        suite, letter_id, sender, recipient, sent_at, reply_to,
        bundle.signed_prekey.prekey_id, None if one_time is None else one_time.prekey_id,
        x25519_public_bytes(ephemeral))
    shared = _exchange(ephemeral, bundle.signed_prekey.public, "signed prekey")
    if one_time is not None:
        shared += _exchange(ephemeral, one_time.public, "one-time prekey")
    del ephemeral
    header_bytes = header.encode()
    key, nonce = letter_keys(suite, shared, header_bytes, sender, sender_key, recipient, recipient_key)
    ciphertext = SUITES[suite].factory(key).encrypt(nonce, u8(content_type) + content, header_bytes)
    return LetterToSign(header, ciphertext)


def seal_letter(
    *,
    sender: str,
    sender_private: keys.PrivateKey,
    recipient: str,
    recipient_key: keys.PublicKey,
    bundle: PrekeyBundle,
    content: bytes,
    sent_at: int,
    content_type: int = CONTENT_TEXT,
    reply_to: bytes | None = None,
    suite: int = AES_256_GCM.code,
    random: Random = os.urandom,
) -> SealedLetter:
    """
    Seal and sign a letter with a sender's key in memory:
    L{prepare_letter}, then L{LetterToSign.signed}.

    @raise LetterError: see L{prepare_letter}; C{letter-too-large}.
    """
    to_sign = prepare_letter(sender=sender, sender_key=sender_private.public_key(), recipient=recipient,
                             recipient_key=recipient_key, bundle=bundle, content=content, sent_at=sent_at,
                             content_type=content_type, reply_to=reply_to, suite=suite, random=random)
    scheme, signature = keys.sign(sender_private, to_sign.message)
    return to_sign.signed(scheme, signature)


def parse_letter(data: bytes) -> SealedLetter:
    """
    Parse a sealed letter exactly.

    @raise LetterError: C{letter-too-large} (checked first),
        C{unsupported-version}, C{malformed} (a field cut short, trailing
        bytes, a bad name or flag, a ciphertext shorter than a tag and a
        content type, a signature longer than 512 bytes), C{unknown-suite}.
    """
    if len(data) > MAX_LETTER:
        raise LetterError("letter-too-large", f"a letter of {len(data)} bytes, the most is {MAX_LETTER}")

    def parse(r: Reader) -> tuple[LetterHeader, bytes, int, bytes]:
        header = LetterHeader.parse_from(r)
        ciphertext = r.bytes32("ciphertext")
        if len(ciphertext) < _TAG_LENGTH + 1:
            raise RemoteProtocolError("bad-value", f"ciphertext of {len(ciphertext)} bytes")
        scheme = r.u16("scheme")
        signature = r.bytes16("signature")
        if len(signature) > MAX_SIGNATURE:
            raise RemoteProtocolError("bad-value", f"signature of {len(signature)} bytes")
        return header, ciphertext, scheme, signature

    parsed = reader_errors("letter", parse, data)
    assert isinstance(parsed, tuple)
    header: LetterHeader = parsed[0]
    ciphertext: bytes = parsed[1]
    scheme: int = parsed[2]
    signature: bytes = parsed[3]
    if header.suite not in SUITES:
        raise LetterError("unknown-suite", f"suite 0x{header.suite:04x} is not known")
    return SealedLetter(header, ciphertext, scheme, signature, bytes(data))


def verify_letter(letter: SealedLetter, sender_key: keys.PublicKey) -> None:
    """
    Check the sender's signature (anyone holding the letter and the
    sender's key can: this is what makes a letter non-repudiable).

    @raise LetterError: C{bad-signature}.
    """
    try:
        keys.verify(sender_key, letter.scheme, letter.signature, letter_signature_message(letter.signed_part))
    except keys.SignatureError as e:
        raise LetterError(
            "bad-signature", f"the letter is not signed by {letter.header.sender}'s key ({e.reason})",
        ) from None


def open_letter(
    letter: SealedLetter | bytes,
    *,
    recipient: str,
    recipient_key: keys.PublicKey,
    sender_key: keys.PublicKey,
    prekeys: PrekeySecrets,
    envelope: tuple[str, bytes] | None = None,
    opened: Container[tuple[str, bytes]] = (),
) -> OpenedLetter:
    """
    Open a letter addressed to C{recipient} (us; C{recipient_key} is our own
    registered public key), from the sender its header names, whose
    registered (and pinned) key is C{sender_key}.  C{envelope} is the
    C{(sender, letter_id)} the relay delivered it under (the LETTER
    message), when it came from the relay.  C{opened} holds the
    C{(sender, letter_id)} of the letters this client has opened before.
    Checks, in order (docs/protocol.rst, 14.4): parsing (L{parse_letter}),
    the envelope, the recipient, replay, the signature, the prekeys, the
    key shares, decryption, the content.

    @raise LetterError: see L{parse_letter}; then C{wrong-envelope},
        C{wrong-recipient}, C{replayed},
        C{bad-signature}, C{unknown-prekey}, C{bad-key-share},
        C{decrypt-failed}, C{bad-content} (a text letter that is not
        UTF-8, a group sender key that does not parse).
    """
    if isinstance(letter, (bytes, bytearray)):
        letter = parse_letter(bytes(letter))
    header = letter.header
    if envelope is not None and envelope != letter.replay_key:
        raise LetterError("wrong-envelope", "the relay delivered the letter under another sender or id")
    if header.recipient != recipient:
        raise LetterError("wrong-recipient", f"the letter is addressed to {header.recipient}, not {recipient}")
    if letter.replay_key in opened:
        raise LetterError("replayed", f"a letter from {header.sender} with an id already opened")
    verify_letter(letter, sender_key)
    signed_private = prekeys.signed_prekey(header.signed_prekey_id)
    if signed_private is None:
        raise LetterError("unknown-prekey", f"no signed prekey {header.signed_prekey_id}")
    one_time_private = None
    if header.one_time_prekey_id is not None:
        one_time_private = prekeys.one_time_prekey(header.one_time_prekey_id)
        if one_time_private is None:
            raise LetterError("unknown-prekey", f"no one-time prekey {header.one_time_prekey_id}")
    shared = _exchange(signed_private, header.ephemeral, "ephemeral key")
    if one_time_private is not None:
        shared += _exchange(one_time_private, header.ephemeral, "ephemeral key")
    header_bytes = header.encode()
    key, nonce = letter_keys(header.suite, shared, header_bytes, header.sender, sender_key,
                             recipient, recipient_key)
    try:
        plaintext = SUITES[header.suite].factory(key).decrypt(nonce, letter.ciphertext, header_bytes)
    except InvalidTag:
        raise LetterError("decrypt-failed", "the letter does not decrypt with our prekeys") from None
    content_type, content = plaintext[0], plaintext[1:]
    if content_type == CONTENT_TEXT:
        try:
            content.decode("utf-8")
        except UnicodeDecodeError:
            raise LetterError("bad-content", "a text letter that is not UTF-8") from None
    elif content_type == CONTENT_GROUP_KEY:
        try:
            parse_distribution(content)
        except GroupKeyError as e:
            raise LetterError("bad-content", f"a group sender key that does not parse ({e.code})") from None
    return OpenedLetter(header, content_type, content)
