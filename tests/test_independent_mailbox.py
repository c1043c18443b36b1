"""
Tests that docs/protocol.rst's section 14 is exact, using
L{tests.independent_mailbox}: letters, prekeys and receipts written from
the document alone.

  - L{MailboxVectorTests}: the clean-room code reproduces the letter and
    receipt vectors (13.3, 13.4) from their inputs.
  - L{MailboxInteropTests}: a letter, a signed prekey and a receipt made by
    either implementation are accepted by the other, and a tampered one is
    refused by both with the same code.
"""

from __future__ import annotations

import pathlib

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.trial import unittest

from securechat.crypto.letters import open_letter, parse_letter, seal_letter
from securechat.crypto.prekeys import (
    LetterError,
    OneTimePrekey,
    PrekeyBundle,
    PrekeyRing,
    SignedPrekey,
    generate_one_time_prekeys,
    generate_signed_prekey,
    verify_signed_prekey,
)
from securechat.crypto.receipts import ReceiptKind, make_receipt, verify_receipt
from tests import independent_mailbox as clean
from tests.vectors import parse

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "protocol.rst"

ALICE = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(0x00, 0x20)))
BOB = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(0x60, 0x80)))


def _int(b: bytes) -> int:
    return int.from_bytes(b, "big")


class MailboxVectorTests(unittest.TestCase):
    """
    The clean-room code, given the vectors' inputs, produces their bytes.
    """

    def setUp(self) -> None:
        vectors = parse(DOC.read_text())
        self.letter, self.receipt = vectors["letter"], vectors["receipt"]

    def test_letterVector(self) -> None:
        """
        From 13.3's inputs the clean-room code makes the same prekeys and
        the same sealed letter, and opens it.
        """
        v = self.letter
        alice = clean.ed25519_from_seed(v["sender.seed"])
        bob = clean.ed25519_from_seed(v["recipient.seed"])
        spk, spk_private = clean.signed_prekey(
            "bob", bob, _int(v["signed_prekey.id"]), v["signed_prekey.private"],
            _int(v["signed_prekey.created_at"]))
        opk, opk_private = clean.one_time_prekey(_int(v["one_time_prekey.id"]), v["one_time_prekey.private"])
        self.assertEqual(spk.hex(), v["signed_prekey"].hex())
        self.assertEqual(opk.hex(), v["one_time_prekey"].hex())
        letter = clean.seal(
            "alice", alice, "bob", bob.public_key(), spk, opk, v["content"].decode(),
            _int(v["sent_at"]), v["letter_id"], v["ephemeral"], reply_to=v["reply_to"],
            suite=_int(v["suite"]))
        self.assertEqual(letter.hex(), v["letter"].hex())
        content = clean.open_letter(
            letter, ("alice", v["letter_id"]), "bob", bob.public_key(), alice.public_key(),
            {_int(v["signed_prekey.id"]): spk_private}, {_int(v["one_time_prekey.id"]): opk_private})
        self.assertEqual(content, (1, v["content"]))

    def test_receiptVector(self) -> None:
        """
        From 13.4's inputs the clean-room code makes the same receipt, and
        accepts it for the letter.
        """
        v = self.receipt
        bob = clean.ed25519_from_seed(v["recipient.seed"])
        made = clean.receipt(v["letter"], v["kind"][0], bob, _int(v["signed_at"]))
        self.assertEqual(made.hex(), v["receipt"].hex())
        self.assertEqual(clean.check_receipt(made, v["letter"], bob.public_key()), 2)


class MailboxInteropTests(unittest.TestCase):
    """
    Each implementation accepts what the other makes, and both refuse the
    same tampering with the same code.
    """

    def setUp(self) -> None:
        self.spk, self.spk_private = generate_signed_prekey("bob", BOB, 3, 1000)
        [(self.opk, self.opk_private)] = generate_one_time_prekeys(40, 1)

    def test_cleanRoomSealsWeOpen(self) -> None:
        """
        A letter sealed by the clean-room code (from our bundle) opens with
        securechat, with and without a one-time prekey, in each suite.
        """
        ring = PrekeyRing()
        ring.signed[3] = self.spk_private
        ring.one_time[40] = self.opk_private
        for suite in (0x0001, 0x0002):
            for opk in (self.opk.encode(), b""):
                letter = clean.seal("alice", ALICE, "bob", BOB.public_key(), self.spk.encode(), opk,
                                    "from the clean room", 77, b"i" * 16, bytes(range(1, 33)),
                                    suite=suite)
                opened = open_letter(letter, recipient="bob", recipient_key=BOB.public_key(),
                                     sender_key=ALICE.public_key(), prekeys=ring,
                                     envelope=("alice", b"i" * 16))
                self.assertEqual(opened.text, "from the clean room")

    def test_weSealCleanRoomOpens(self) -> None:
        """
        A letter sealed by securechat opens in the clean-room code.
        """
        for opk in (self.opk, None):
            letter = seal_letter(sender="alice", sender_private=ALICE, recipient="bob",
                                 recipient_key=BOB.public_key(), bundle=PrekeyBundle("bob", self.spk, opk),
                                 content="to the clean room".encode(), sent_at=5, reply_to=b"r" * 16)
            content = clean.open_letter(
                letter.raw, ("alice", letter.header.letter_id), "bob", BOB.public_key(), ALICE.public_key(),
                {3: self.spk_private}, {40: self.opk_private})
            self.assertEqual(content, (1, "to the clean room".encode()))

    def test_signedPrekeysBothWays(self) -> None:
        """
        A signed prekey made by either side verifies on the other; one
        signed by another key is C{bad-prekey-signature} on both.
        """
        clean.read_signed_prekey(self.spk.encode(), "bob", BOB.public_key())
        theirs, _ = clean.signed_prekey("bob", BOB, 9, bytes(range(32)), 123)
        verify_signed_prekey("bob", SignedPrekey.parse(theirs), BOB.public_key())
        forged, _ = clean.signed_prekey("bob", ALICE, 9, bytes(range(32)), 123)
        e = self.assertRaises(clean.Refused, clean.read_signed_prekey, forged, "bob", BOB.public_key())
        self.assertEqual(e.code, "bad-prekey-signature")
        e2 = self.assertRaises(LetterError, verify_signed_prekey, "bob", SignedPrekey.parse(forged), BOB.public_key())
        self.assertEqual(e2.code, "bad-prekey-signature")

    def test_receiptsBothWays(self) -> None:
        """
        A receipt signed by either side verifies on the other, for the
        right letter only (C{wrong-letter} on both for another).
        """
        letter = seal_letter(sender="alice", sender_private=ALICE, recipient="bob",
                             recipient_key=BOB.public_key(), bundle=PrekeyBundle("bob", self.spk, None),
                             content=b"x", sent_at=5)
        other = seal_letter(sender="alice", sender_private=ALICE, recipient="bob",
                            recipient_key=BOB.public_key(), bundle=PrekeyBundle("bob", self.spk, None),
                            content=b"y", sent_at=5)
        ours = make_receipt(letter, ReceiptKind.DELIVERY, BOB, 9).encode()
        self.assertEqual(clean.check_receipt(ours, letter.raw, BOB.public_key()), 1)
        theirs = clean.receipt(letter.raw, 2, BOB, 10)
        self.assertEqual(verify_receipt(theirs, letter, BOB.public_key()).kind, ReceiptKind.READ)
        e = self.assertRaises(clean.Refused, clean.check_receipt, ours, other.raw, BOB.public_key())
        self.assertEqual(e.code, "wrong-letter")
        e2 = self.assertRaises(LetterError, verify_receipt, theirs, other, BOB.public_key())
        self.assertEqual(e2.code, "wrong-letter")

    def test_sameRefusalCodes(self) -> None:
        """
        A flipped ciphertext bit is C{bad-signature}, a letter to someone
        else C{wrong-recipient}, a missing one-time prekey
        C{unknown-prekey}: the same code from both implementations.
        """
        letter = seal_letter(sender="alice", sender_private=ALICE, recipient="bob",
                             recipient_key=BOB.public_key(),
                             bundle=PrekeyBundle("bob", self.spk, OneTimePrekey(40, self.opk.public)),
                             content=b"z", sent_at=5)
        raw = bytearray(letter.raw)
        raw[len(letter.header.encode()) + 6] ^= 1
        cases = [
            (bytes(raw), "bob", {40: self.opk_private}, "bad-signature"),
            (letter.raw, "carol", {40: self.opk_private}, "wrong-recipient"),
            (letter.raw, "bob", {}, "unknown-prekey"),
        ]
        for data, me, one_time, code in cases:
            e = self.assertRaises(
                clean.Refused, clean.open_letter, data, ("alice", letter.header.letter_id), me,
                BOB.public_key(), ALICE.public_key(), {3: self.spk_private}, one_time)
            self.assertEqual(e.code, code)
            ring = PrekeyRing()
            ring.signed[3] = self.spk_private
            ring.one_time.update(one_time)
            e2 = self.assertRaises(LetterError, open_letter, parse_letter(data), recipient=me,
                                   recipient_key=BOB.public_key(), sender_key=ALICE.public_key(),
                                   prekeys=ring)
            self.assertEqual(e2.code, code)
