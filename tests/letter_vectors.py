"""
The mailbox test vectors of docs/protocol.rst, 13.3 (a letter) and 13.4 (a
receipt): fixed inputs, and what the implementation makes of them.

C{python -m tests.letter_vectors} prints both in the document's format
(for maintainers, when a deliberate change needs new vectors);
L{tests.test_vectors} checks the document against L{COMPUTE}.
"""

from __future__ import annotations

import hashlib
from typing import Callable

from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from securechat.crypto.letters import (
    letter_keys,
    open_letter,
    parse_letter,
    seal_letter,
)
from securechat.crypto.prekeys import (
    OneTimePrekey,
    PrekeyBundle,
    PrekeyRing,
    generate_signed_prekey,
    x25519_public_bytes,
)
from securechat.crypto.receipts import ReceiptKind, make_receipt
from securechat.crypto.schedule import hkdf_extract
from securechat.crypto.letters import LETTER_KDF_SALT
from securechat.wire.codec import bytes16, bytes32, text8
from securechat.crypto import keys
from tests.vectors import SequenceRandom, Vector, render_vector

LETTER_INPUTS: Vector = {
    "sender.name": b"alice",
    "sender.seed": bytes(range(0x00, 0x20)),
    "recipient.name": b"bob",
    "recipient.seed": bytes(range(0x60, 0x80)),
    "signed_prekey.id": bytes.fromhex("00000007"),
    "signed_prekey.created_at": (1_780_000_000).to_bytes(8, "big"),
    "signed_prekey.private": bytes(range(0xC0, 0xE0)),
    "one_time_prekey.id": bytes.fromhex("0000002a"),
    "one_time_prekey.private": bytes(range(0xE0, 0x100)),
    "suite": bytes.fromhex("0001"),
    "letter_id": bytes(range(0xA0, 0xB0)),
    "ephemeral": bytes(range(0x40, 0x60)),
    "sent_at": (1_780_000_100).to_bytes(8, "big"),
    "reply_to": bytes(range(0xB0, 0xC0)),
    "content_type": bytes.fromhex("01"),
    "content": b"Dear bob, the keys are under the mat.",
}
LETTER_INPUT_FIELDS = tuple(LETTER_INPUTS)
LETTER_OUTPUT_FIELDS = (
    "signed_prekey", "one_time_prekey", "header", "shared", "prk", "binding", "key", "nonce",
    "ciphertext", "signed_hash", "signature", "letter", "letter.digest",
)

RECEIPT_INPUT_FIELDS = ("letter", "recipient.seed", "kind", "signed_at")
RECEIPT_OUTPUT_FIELDS = ("letter.digest", "signed_part", "signed_hash", "receipt")

_TEXT_FIELDS = {"sender.name", "recipient.name", "content"}


def _int(value: bytes) -> int:
    return int.from_bytes(value, "big")


def compute_letter(inputs: Vector) -> Vector:
    """
    Seal the letter of C{inputs}, check that it opens, and return every
    output field.
    """
    sender_key = ed25519.Ed25519PrivateKey.from_private_bytes(inputs["sender.seed"])
    recipient_key = ed25519.Ed25519PrivateKey.from_private_bytes(inputs["recipient.seed"])
    sender, recipient = inputs["sender.name"].decode(), inputs["recipient.name"].decode()
    spk, spk_private = generate_signed_prekey(
        recipient, recipient_key, _int(inputs["signed_prekey.id"]),
        _int(inputs["signed_prekey.created_at"]), random=SequenceRandom(inputs["signed_prekey.private"]))
    opk_private = X25519PrivateKey.from_private_bytes(inputs["one_time_prekey.private"])
    opk = OneTimePrekey(_int(inputs["one_time_prekey.id"]), x25519_public_bytes(opk_private))
    letter = seal_letter(
        sender=sender, sender_private=sender_key, recipient=recipient,
        recipient_key=recipient_key.public_key(), bundle=PrekeyBundle(recipient, spk, opk),
        content=inputs["content"], content_type=inputs["content_type"][0],
        sent_at=_int(inputs["sent_at"]), reply_to=inputs["reply_to"], suite=_int(inputs["suite"]),
        random=SequenceRandom(inputs["letter_id"], inputs["ephemeral"]))

    ring = PrekeyRing()
    ring.signed[spk.prekey_id] = spk_private
    ring.one_time[opk.prekey_id] = opk_private
    opened = open_letter(letter.raw, recipient=recipient, recipient_key=recipient_key.public_key(),
                         sender_key=sender_key.public_key(), prekeys=ring)
    assert opened.content == inputs["content"]

    out: Vector = {"signed_prekey": spk.encode(), "one_time_prekey": opk.encode()}
    header = letter.header.encode()
    out["header"] = header
    eph = X25519PrivateKey.from_private_bytes(inputs["ephemeral"])
    out["shared"] = (eph.exchange(X25519PublicKey.from_public_bytes(spk.public))
                     + eph.exchange(X25519PublicKey.from_public_bytes(opk.public)))
    out["prk"] = hkdf_extract(LETTER_KDF_SALT, out["shared"])
    out["binding"] = hashlib.sha256(
        text8(sender) + bytes16(keys.public_key_der(sender_key.public_key()))
        + text8(recipient) + bytes16(keys.public_key_der(recipient_key.public_key())) + header).digest()
    out["key"], out["nonce"] = letter_keys(
        letter.header.suite, out["shared"], header, sender, sender_key.public_key(),
        recipient, recipient_key.public_key())
    out["ciphertext"] = letter.ciphertext
    out["signed_hash"] = hashlib.sha256(header + bytes32(letter.ciphertext)).digest()
    out["signature"] = letter.signature
    out["letter"] = letter.raw
    out["letter.digest"] = letter.digest
    return out


def compute_receipt(inputs: Vector) -> Vector:
    """
    Sign the receipt of C{inputs} for its letter and return every output
    field.
    """
    letter = parse_letter(inputs["letter"])
    key = ed25519.Ed25519PrivateKey.from_private_bytes(inputs["recipient.seed"])
    receipt = make_receipt(letter, ReceiptKind(inputs["kind"][0]), key, _int(inputs["signed_at"]))
    return {
        "letter.digest": letter.digest,
        "signed_part": receipt.signed_part,
        "signed_hash": hashlib.sha256(receipt.signed_part).digest(),
        "receipt": receipt.encode(),
    }


def receipt_inputs(letter: bytes) -> Vector:
    return {
        "letter": letter,
        "recipient.seed": LETTER_INPUTS["recipient.seed"],
        "kind": bytes([ReceiptKind.READ]),
        "signed_at": (1_780_000_200).to_bytes(8, "big"),
    }


#: Vector name: (input fields, output fields, computation).
COMPUTE: dict[str, tuple[tuple[str, ...], tuple[str, ...], Callable[[Vector], Vector]]] = {
    "letter": (LETTER_INPUT_FIELDS, LETTER_OUTPUT_FIELDS, compute_letter),
    "receipt": (RECEIPT_INPUT_FIELDS, RECEIPT_OUTPUT_FIELDS, compute_receipt),
}


def render(name: str, inputs: Vector, outputs: Vector) -> str:
    """
    The vector as it appears in docs/protocol.rst.
    """
    input_fields, output_fields, _ = COMPUTE[name]
    return render_vector(name, input_fields + output_fields, {**outputs, **inputs}, _TEXT_FIELDS)


if __name__ == "__main__":
    letter_out = compute_letter(LETTER_INPUTS)
    print(render("letter", LETTER_INPUTS, letter_out))
    r_inputs = receipt_inputs(letter_out["letter"])
    print(render("receipt", r_inputs, compute_receipt(r_inputs)))
