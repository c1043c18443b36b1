"""
The signing operations of the mailbox's pure core split in two, so that a
key on a token can sign in between (issue 19): "the bytes to sign"
(L{prepare_signed_prekey}, L{prepare_letter}, L{prepare_receipt} and their
C{message}) and "assemble with the signature" (C{signed}).  The
synchronous functions for keys in memory are built on the same two steps:
these tests show the bytes to sign are exactly what the synchronous path
signs, and that a signature made elsewhere (an L{ISigner}) assembles into
what the other side verifies.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.trial import unittest

from securechat.crypto import keys
from securechat.crypto.letters import prepare_letter, seal_letter, verify_letter
from securechat.crypto.prekeys import (
    LetterError,
    generate_signed_prekey,
    prepare_signed_prekey,
    verify_signed_prekey,
)
from securechat.crypto.receipts import ReceiptKind, make_receipt, prepare_receipt, verify_receipt
from securechat.crypto.signer import MemorySigner
from tests.test_letters import ALICE, Recipient
from tests.test_prekeys import USER_KEYS


def counting_random() -> Callable[[int], bytes]:
    """The same bytes on every run: so both paths draw the same id and keys."""
    state = [0]

    def random(n: int) -> bytes:
        state[0] += 1
        return bytes([state[0]]) * n
    return random


class SignedBytesTests(unittest.TestCase):
    """
    What the synchronous path signs is the C{message} of the split path,
    and both give the same object.
    """

    def record_signing(self) -> list[bytes]:
        signed: list[bytes] = []
        real = keys.sign

        def sign(key: keys.PrivateKey, message: bytes) -> tuple[int, bytes]:
            signed.append(message)
            return real(key, message)
        self.patch(keys, "sign", sign)
        return signed

    def test_prekeyMessageIsWhatIsSigned(self) -> None:
        """
        generate_signed_prekey signs exactly PrekeyToSign.message, and
        assembling that signature gives the same signed prekey (Ed25519 is
        deterministic, so the encodings are equal byte for byte).
        """
        signed = self.record_signing()
        prekey, private = generate_signed_prekey("bob", ALICE, 7, 1_700_000_000, counting_random())
        to_sign, private2 = prepare_signed_prekey("bob", 7, 1_700_000_000, counting_random())
        self.assertEqual(signed, [to_sign.message])
        scheme, signature = keys.ED25519, ALICE.sign(to_sign.message)
        self.assertEqual(to_sign.signed(scheme, signature).encode(), prekey.encode())
        self.assertEqual(private.private_bytes_raw(), private2.private_bytes_raw())

    def test_letterMessageIsWhatIsSigned(self) -> None:
        """
        seal_letter signs exactly LetterToSign.message, and assembling that
        signature gives the same letter, byte for byte.
        """
        bob = Recipient("bob", USER_KEYS["ed25519"])
        bundle = bob.bundle()
        signed = self.record_signing()
        args: dict[str, Any] = dict(sender="alice", recipient="bob",
                                    recipient_key=bob.key.public_key(), bundle=bundle,
                                    content=b"hello", sent_at=1_700_000_100)
        letter = seal_letter(sender_private=ALICE, random=counting_random(), **args)
        to_sign = prepare_letter(sender_key=ALICE.public_key(), random=counting_random(), **args)
        self.assertEqual(signed, [to_sign.message])
        self.assertEqual(to_sign.signed(keys.ED25519, ALICE.sign(to_sign.message)).raw, letter.raw)

    def test_receiptMessageIsWhatIsSigned(self) -> None:
        """
        make_receipt signs exactly ReceiptToSign.message, and assembling
        that signature gives the same receipt, byte for byte.
        """
        bob = Recipient("bob", USER_KEYS["ed25519"])
        letter = seal_letter(sender="alice", sender_private=ALICE, recipient="bob",
                             recipient_key=bob.key.public_key(), bundle=bob.bundle(),
                             content=b"hello", sent_at=1_700_000_100)
        signed = self.record_signing()
        receipt = make_receipt(letter, ReceiptKind.READ, ALICE, 1_700_000_200)
        to_sign = prepare_receipt(letter, ReceiptKind.READ, 1_700_000_200)
        self.assertEqual(signed, [to_sign.message])
        self.assertEqual(to_sign.signed(keys.ED25519, ALICE.sign(to_sign.message)).encode(),
                         receipt.encode())


class SignedElsewhereTests(unittest.TestCase):
    """
    A signature made by an ISigner over C{message} assembles into what the
    other side verifies, for each key type.
    """

    def test_eachKeyTypeVerifies(self) -> None:
        """
        Prekey, letter and receipt signed through a MemorySigner (the
        interface a token key implements) verify for Ed25519, P-256 and
        RSA-PSS; a signature over other bytes is refused with the specific
        code.
        """
        for kind, key in USER_KEYS.items():
            signer = MemorySigner(key)
            to_sign, _ = prepare_signed_prekey("alice", 3, 1_700_000_000)
            prekey = to_sign.signed(signer.scheme, signer.sign_blocking(to_sign.message))
            verify_signed_prekey("alice", prekey, key.public_key())

            bob = Recipient("bob", USER_KEYS["ed25519"])
            letter_to_sign = prepare_letter(sender="alice", sender_key=key.public_key(), recipient="bob",
                                            recipient_key=bob.key.public_key(), bundle=bob.bundle(),
                                            content=b"hi", sent_at=1_700_000_100)
            letter = letter_to_sign.signed(signer.scheme, signer.sign_blocking(letter_to_sign.message))
            verify_letter(letter, key.public_key())
            self.assertEqual(bob.open(letter.raw, key.public_key()).text, "hi", kind)  # type: ignore[attr-defined]

            bob_signer = MemorySigner(bob.key)
            receipt_to_sign = prepare_receipt(letter, ReceiptKind.DELIVERY, 1_700_000_200)
            receipt = receipt_to_sign.signed(bob_signer.scheme,
                                             bob_signer.sign_blocking(receipt_to_sign.message))
            verify_receipt(receipt.encode(), letter, bob.key.public_key())

            wrong = letter_to_sign.signed(signer.scheme, signer.sign_blocking(receipt_to_sign.message))
            with self.assertRaises(LetterError) as e:
                verify_letter(wrong, key.public_key())
            self.assertEqual(e.exception.code, "bad-signature", kind)

    def test_letterTooLargeOnAssembly(self) -> None:
        """
        The size limit is checked when the letter is assembled with its
        signature (the same check for both paths): letter-too-large.
        """
        bob = Recipient("bob", USER_KEYS["ed25519"])
        to_sign = prepare_letter(sender="alice", sender_key=ALICE.public_key(), recipient="bob",
                                 recipient_key=bob.key.public_key(), bundle=bob.bundle(),
                                 content=b"x" * 49100, sent_at=1_700_000_100)
        with self.assertRaises(LetterError) as e:
            to_sign.signed(keys.ED25519, ALICE.sign(to_sign.message))
        self.assertEqual(e.exception.code, "letter-too-large")
