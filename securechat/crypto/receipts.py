# -*- test-case-name: tests.test_letters -*-
"""
Receipts: a letter's recipient signs that it fetched (delivery) or read it
(docs/protocol.rst, 14.5).

A receipt names the letter by the SHA-256 of the whole sealed letter and by
its id, names the letter's sender and the recipient who signs, the kind and
the recipient's clock, and is signed by the recipient's registered key over
a label of its own.  The sender checks that it is about a letter it sent,
to that recipient, and that the signature verifies.  Pure: no IO, no clock.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

from securechat.crypto import keys
from securechat.crypto.letters import LETTER_ID_LENGTH, SealedLetter
from securechat.crypto.prekeys import MAX_SIGNATURE, LetterError, reader_errors
from securechat.errors import RemoteProtocolError
from securechat.wire.codec import Reader, bytes16, text8, u8, u16, u64
from securechat.wire.names import read_user_name

RECEIPT_VERSION = 1
RECEIPT_SIGNATURE_LABEL = b"securechat/1 receipt signature\x00"


class ReceiptKind(enum.IntEnum):
    """What the recipient did with the letter."""

    DELIVERY = 1
    READ = 2


@dataclass(frozen=True, slots=True)
class Receipt:
    """
    A signed receipt.  C{letter_digest} is SHA-256 of the sealed letter,
    C{letter_sender} the letter's sender, C{signer} its recipient,
    C{signed_at} the signer's clock in Unix seconds.
    """

    kind: int
    letter_digest: bytes
    letter_id: bytes
    letter_sender: str
    signer: str
    signed_at: int
    scheme: int
    signature: bytes
    version: int = RECEIPT_VERSION

    @property
    def signed_part(self) -> bytes:
        """Everything before the scheme: what the signature covers."""
        return (u8(self.version) + u8(self.kind) + self.letter_digest + self.letter_id
                + text8(self.letter_sender) + text8(self.signer) + u64(self.signed_at))

    def encode(self) -> bytes:
        return self.signed_part + u16(self.scheme) + bytes16(self.signature)


def receipt_signature_message(signed_part: bytes) -> bytes:
    """The label, then SHA-256 of the receipt up to its scheme."""
    return RECEIPT_SIGNATURE_LABEL + hashlib.sha256(signed_part).digest()


@dataclass(frozen=True, slots=True)
class ReceiptToSign:
    """
    A receipt before its signature: L{message} is the exact bytes the
    signer's key signs (in memory or on a token), L{signed} assembles the
    receipt once the signature is there.
    """

    kind: int
    letter_digest: bytes
    letter_id: bytes
    letter_sender: str
    signer: str
    signed_at: int

    @property
    def message(self) -> bytes:
        """What the signature covers (L{receipt_signature_message})."""
        return receipt_signature_message(self.signed(0, b"").signed_part)

    def signed(self, scheme: int, signature: bytes) -> Receipt:
        """The receipt, with C{signature} (under C{scheme}) over L{message}."""
        return Receipt(self.kind, self.letter_digest, self.letter_id, self.letter_sender, self.signer,
                       self.signed_at, scheme, signature)


def prepare_receipt(letter: SealedLetter, kind: ReceiptKind, signed_at: int) -> ReceiptToSign:
    """A receipt of C{kind} for C{letter}, as its recipient, not yet signed."""
    header = letter.header
    return ReceiptToSign(int(kind), letter.digest, header.letter_id, header.sender, header.recipient,
                         signed_at)


def make_receipt(
    letter: SealedLetter, kind: ReceiptKind, signer_private: keys.PrivateKey, signed_at: int,
) -> Receipt:
    """
    Sign a receipt of C{kind} for C{letter}, as its recipient, with a key
    in memory: L{prepare_receipt}, then L{ReceiptToSign.signed}.
    """
    to_sign = prepare_receipt(letter, kind, signed_at)
    scheme, signature = keys.sign(signer_private, to_sign.message)
    return to_sign.signed(scheme, signature)


def parse_receipt(data: bytes) -> Receipt:
    """
    Parse a receipt exactly.

    @raise LetterError: C{unsupported-version}, C{malformed} (including a
        kind other than 1 or 2).
    """
    def parse(r: Reader) -> Receipt:
        version = r.u8("version")
        if version != RECEIPT_VERSION:
            raise LetterError("unsupported-version", f"receipt version {version}, only 1 is known")
        kind = r.u8("kind")
        if kind not in (ReceiptKind.DELIVERY, ReceiptKind.READ):
            raise RemoteProtocolError("bad-value", f"receipt kind {kind}")
        digest = r.fixed(32, "letter_digest")
        letter_id = r.fixed(LETTER_ID_LENGTH, "letter_id")
        letter_sender = read_user_name(r, "letter_sender")
        signer = read_user_name(r, "signer")
        signed_at = r.u64("signed_at")
        scheme = r.u16("scheme")
        signature = r.bytes16("signature")
        if len(signature) > MAX_SIGNATURE:
            raise RemoteProtocolError("bad-value", f"signature of {len(signature)} bytes")
        return Receipt(kind, digest, letter_id, letter_sender, signer, signed_at, scheme, signature, version)
    value = reader_errors("receipt", parse, data)
    assert isinstance(value, Receipt)
    return value


def verify_receipt(
    receipt: Receipt | bytes, letter: SealedLetter, signer_key: keys.PublicKey,
) -> Receipt:
    """
    Check a receipt for C{letter} (which we sent), signed by its recipient,
    whose registered (and pinned) key is C{signer_key}.  Checks, in order:
    parsing, the signer, the letter's sender, the letter's id and digest,
    the signature.

    @raise LetterError: see L{parse_receipt}; then C{wrong-signer},
        C{wrong-sender}, C{wrong-letter}, C{bad-signature}.
    """
    if isinstance(receipt, (bytes, bytearray)):
        receipt = parse_receipt(bytes(receipt))
    header = letter.header
    if receipt.signer != header.recipient:
        raise LetterError("wrong-signer", f"a receipt signed by {receipt.signer} for a letter to {header.recipient}")
    if receipt.letter_sender != header.sender:
        raise LetterError("wrong-sender", f"a receipt for a letter from {receipt.letter_sender}, not {header.sender}")
    if receipt.letter_id != header.letter_id or receipt.letter_digest != letter.digest:
        raise LetterError("wrong-letter", "the receipt is for another letter")
    try:
        keys.verify(signer_key, receipt.scheme, receipt.signature, receipt_signature_message(receipt.signed_part))
    except keys.SignatureError as e:
        raise LetterError("bad-signature", f"the receipt is not signed by {receipt.signer}'s key ({e.reason})") from None
    return receipt


def check_posted_receipt(data: bytes, sender: str, letter_id: bytes, poster: str) -> Receipt:
    """
    The relay's check of a POST_RECEIPT from C{poster} about the letter
    C{(sender, letter_id)} (docs/protocol.rst, 14.7): the receipt parses,
    names that letter and sender, and is signed (it says) by C{poster}.
    The relay need not verify the signature; the letter's sender does.

    @raise LetterError: see L{parse_receipt}; C{wrong-letter},
        C{wrong-sender}, C{wrong-signer} (all answered with BAD_RECEIPT).
    """
    receipt = parse_receipt(data)
    if receipt.letter_id != letter_id:
        raise LetterError("wrong-letter", "the receipt names another letter id")
    if receipt.letter_sender != sender:
        raise LetterError("wrong-sender", f"the receipt names {receipt.letter_sender} as the sender")
    if receipt.signer != poster:
        raise LetterError("wrong-signer", f"a receipt by {receipt.signer} posted by {poster}")
    return receipt
