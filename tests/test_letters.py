"""
Tests for L{securechat.crypto.letters} and L{securechat.crypto.receipts}:
sealing, opening and every named refusal (docs/protocol.rst, 14.2-14.5).
"""

from __future__ import annotations

import dataclasses

from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from securechat.crypto import keys
from securechat.crypto.letters import (
    CONTENT_GROUP_KEY,
    CONTENT_TEXT,
    MAX_LETTER,
    LetterHeader,
    OpenedLetter,
    SealedLetter,
    letter_signature_message,
    open_letter,
    parse_letter,
    seal_letter,
    verify_letter,
)
from securechat.crypto.prekeys import (
    LetterError,
    OneTimePrekey,
    PrekeyBundle,
    PrekeyRing,
    generate_one_time_prekeys,
    generate_signed_prekey,
)
from securechat.crypto.receipts import (
    Receipt,
    ReceiptKind,
    check_posted_receipt,
    make_receipt,
    parse_receipt,
    verify_receipt,
)
from securechat.crypto.senderkeys import SenderKeyDistribution, parse_distribution
from securechat.crypto.suites import CHACHA20_POLY1305
from securechat.wire.codec import bytes16, bytes32, u16
from tests.test_prekeys import USER_KEYS

ALICE = ed25519.Ed25519PrivateKey.generate()
BOB = ed25519.Ed25519PrivateKey.generate()
CAROL = ed25519.Ed25519PrivateKey.generate()


class Recipient:
    """
    A user with a registered key, a signed prekey, one-time prekeys and
    the private halves of them all.
    """

    def __init__(self, name: str, key: keys.PrivateKey, one_time: int = 3) -> None:
        self.name = name
        self.key = key
        self.ring = PrekeyRing()
        self.signed, private = generate_signed_prekey(name, key, 1, 1_700_000_000)
        self.ring.signed[1] = private
        self.one_time: list[OneTimePrekey] = []
        for prekey, private in generate_one_time_prekeys(10, one_time):
            self.one_time.append(prekey)
            self.ring.one_time[prekey.prekey_id] = private

    def bundle(self, one_time: bool = True) -> PrekeyBundle:
        return PrekeyBundle(self.name, self.signed, self.one_time.pop(0) if one_time else None)

    def open(self, letter: bytes | SealedLetter, sender_key: keys.PublicKey = ALICE.public_key()) -> object:
        return open_letter(letter, recipient=self.name, recipient_key=self.key.public_key(),
                           sender_key=sender_key, prekeys=self.ring)


def seal(to: Recipient, text: str = "hello bob", sender: str = "alice",
         sender_key: keys.PrivateKey = ALICE, one_time: bool = True, **kw: object) -> SealedLetter:
    return seal_letter(sender=sender, sender_private=sender_key, recipient=to.name,
                       recipient_key=to.key.public_key(), bundle=to.bundle(one_time),
                       content=text.encode(), sent_at=1_700_000_100, **kw)  # type: ignore[arg-type]


def resign(header: LetterHeader, ciphertext: bytes, key: keys.PrivateKey = ALICE) -> bytes:
    """A letter with this header and ciphertext, properly signed by C{key}."""
    signed = header.encode() + bytes32(ciphertext)
    scheme, signature = keys.sign(key, letter_signature_message(signed))
    return signed + u16(scheme) + bytes16(signature)


class SealOpenTests(unittest.TestCase):
    """
    Letters that should open, do.
    """

    def test_roundTripEachKeyType(self) -> None:
        """
        For senders and recipients with Ed25519, P-256 and RSA-PSS keys,
        with and without a one-time prekey, a letter opens to its text.
        """
        for kind, key in USER_KEYS.items():
            bob = Recipient("bob", key)
            for one_time in (True, False):
                letter = seal(bob, f"hi {kind}", sender_key=key, one_time=one_time)
                opened = open_letter(letter.raw, recipient="bob", recipient_key=key.public_key(),
                                     sender_key=key.public_key(), prekeys=bob.ring)
                self.assertEqual((opened.text, opened.content_type), (f"hi {kind}", CONTENT_TEXT))
                self.assertEqual(opened.header.one_time_prekey_id is None, not one_time)

    def test_chachaAndReplyTo(self) -> None:
        """
        The suite is the sender's choice (ChaCha20-Poly1305 here) and a
        reply-to id travels in the signed header.
        """
        bob = Recipient("bob", BOB)
        letter = seal(bob, suite=CHACHA20_POLY1305.code, reply_to=b"r" * 16)
        opened = bob.open(letter.raw)
        self.assertEqual(opened.header.suite, CHACHA20_POLY1305.code)  # type: ignore[attr-defined]
        self.assertEqual(opened.header.reply_to, b"r" * 16)  # type: ignore[attr-defined]

    def test_freshIdAndEphemeral(self) -> None:
        """
        Two letters of the same text have different ids, ephemeral keys and
        ciphertexts.
        """
        bob = Recipient("bob", BOB)
        one, two = seal(bob, one_time=False), seal(bob, one_time=False)
        self.assertNotEqual(one.header.letter_id, two.header.letter_id)
        self.assertNotEqual(one.header.ephemeral, two.header.ephemeral)
        self.assertNotEqual(one.ciphertext, two.ciphertext)

    def test_thirdPartyVerifies(self) -> None:
        """
        Non-repudiation: anyone with the letter and the sender's key can
        verify who wrote it, without any prekey.
        """
        letter = seal(Recipient("bob", BOB))
        verify_letter(parse_letter(letter.raw), ALICE.public_key())


class RefusalTests(unittest.TestCase):
    """
    Every way a letter is refused, by its code.
    """

    def setUp(self) -> None:
        self.bob = Recipient("bob", BOB)
        self.letter = seal(self.bob)

    def assertRefused(self, code: str, letter: bytes | SealedLetter,
                      sender_key: keys.PublicKey = ALICE.public_key()) -> None:
        e = self.assertRaises(LetterError, self.bob.open, letter, sender_key)
        self.assertEqual(e.code, code, str(e))

    def test_forgedSignature(self) -> None:
        """
        A letter signed by someone other than the named sender is
        C{bad-signature}.
        """
        forged = resign(self.letter.header, self.letter.ciphertext, CAROL)
        self.assertRefused("bad-signature", forged)

    def test_missingSignature(self) -> None:
        """
        An empty signature is C{bad-signature}; so is one under another
        scheme than the sender key's.
        """
        signed = self.letter.signed_part
        self.assertRefused("bad-signature", signed + u16(0x0807) + bytes16(b""))
        self.assertRefused("bad-signature", signed + u16(0x0403) + bytes16(self.letter.signature))

    def test_tamperedCiphertext(self) -> None:
        """
        A ciphertext with one bit changed fails the signature, which is
        checked before decryption: C{bad-signature}.
        """
        c = bytearray(self.letter.ciphertext)
        c[0] ^= 1
        self.assertRefused("bad-signature", dataclasses.replace(self.letter, ciphertext=bytes(c)))

    def test_tamperedHeaderEachField(self) -> None:
        """
        Changing any signed header field is refused: the recipient (passed
        on to someone else) as C{wrong-recipient} for that someone, the
        version as C{unsupported-version}, everything else as
        C{bad-signature}.
        """
        h = self.letter.header
        changes = {
            "suite": CHACHA20_POLY1305.code, "letter_id": b"x" * 16, "sender": "mallory",
            "sent_at": 1, "reply_to": b"y" * 16, "signed_prekey_id": 2,
            "one_time_prekey_id": None, "ephemeral": b"\x09" + bytes(31),
        }
        for field, value in changes.items():
            changed = dataclasses.replace(h, **{field: value})
            raw = changed.encode() + bytes32(self.letter.ciphertext) + u16(self.letter.scheme) + bytes16(self.letter.signature)
            self.assertRefused("bad-signature", raw)
        to_carol = dataclasses.replace(h, recipient="carol")
        raw = to_carol.encode() + bytes32(self.letter.ciphertext) + u16(self.letter.scheme) + bytes16(self.letter.signature)
        carol = Recipient("carol", CAROL)
        e = self.assertRaises(LetterError, carol.open, raw)
        self.assertEqual(e.code, "bad-signature")
        e = self.assertRaises(LetterError, self.bob.open, raw)
        self.assertEqual(e.code, "wrong-recipient")
        self.assertRefused("unsupported-version", b"\x02" + self.letter.raw[1:])

    def test_wrongRecipient(self) -> None:
        """
        A letter to bob that bob passes on to carol, unchanged, is
        C{wrong-recipient} for carol: it cannot pass as written to her.
        """
        carol = Recipient("carol", CAROL)
        e = self.assertRaises(LetterError, carol.open, self.letter.raw)
        self.assertEqual(e.code, "wrong-recipient")

    def test_substitutedSignedPrekeyRefusedBySigner(self) -> None:
        """
        A relay that hands out its own signed prekey for bob is caught when
        sealing: C{bad-prekey-signature}, nothing is sealed.
        """
        relay_key = ed25519.Ed25519PrivateKey.generate()
        fake, _ = generate_signed_prekey("bob", relay_key, 1, 5)
        bundle = PrekeyBundle("bob", fake, None)
        e = self.assertRaises(LetterError, seal_letter, sender="alice", sender_private=ALICE,
                              recipient="bob", recipient_key=BOB.public_key(), bundle=bundle,
                              content=b"x", sent_at=1)
        self.assertEqual(e.code, "bad-prekey-signature")

    def test_substitutedOneTimePrekeyDoesNotOpen(self) -> None:
        """
        One-time prekeys are not signed; a relay that substitutes its own
        still lacks the signed prekey's private half, so it cannot open
        the letter (C{decrypt-failed} with every key but bob's signed one).
        """
        [(fake, fake_private)] = generate_one_time_prekeys(10, 1)
        bob = self.bob
        letter = seal_letter(sender="alice", sender_private=ALICE, recipient="bob",
                             recipient_key=BOB.public_key(),
                             bundle=PrekeyBundle("bob", bob.signed, fake), content=b"secret", sent_at=1)
        relay = PrekeyRing()
        relay.signed[1] = generate_signed_prekey("bob", BOB, 1, 5)[1]
        relay.one_time[10] = fake_private
        e = self.assertRaises(LetterError, open_letter, letter.raw, recipient="bob",
                              recipient_key=BOB.public_key(), sender_key=ALICE.public_key(), prekeys=relay)
        self.assertEqual(e.code, "decrypt-failed")

    def test_unknownPrekey(self) -> None:
        """
        A signed or one-time prekey id the recipient does not hold is
        C{unknown-prekey}.
        """
        del self.bob.ring.one_time[self.letter.header.one_time_prekey_id]  # type: ignore[arg-type]
        self.assertRefused("unknown-prekey", self.letter.raw)
        plain = seal(self.bob, one_time=False)
        self.bob.ring.signed.clear()
        self.assertRefused("unknown-prekey", plain.raw)

    def test_replayDetectableById(self) -> None:
        """
        A replayed letter carries the same C{(sender, id)}; given the ids
        already opened it is C{replayed}, and once its one-time prekey is
        used up it no longer opens anyway (C{unknown-prekey}).
        """
        self.bob.open(self.letter.raw)
        replay = parse_letter(self.letter.raw)
        self.assertEqual(replay.replay_key, ("alice", self.letter.header.letter_id))
        e = self.assertRaises(
            LetterError, open_letter, replay, recipient="bob", recipient_key=BOB.public_key(),
            sender_key=ALICE.public_key(), prekeys=self.bob.ring, opened={replay.replay_key})
        self.assertEqual(e.code, "replayed")
        self.bob.ring.forget_one_time(self.letter.header.one_time_prekey_id)  # type: ignore[arg-type]
        self.assertRefused("unknown-prekey", replay)

    def test_decryptFailed(self) -> None:
        """
        A letter properly signed by its sender whose ciphertext does not
        decrypt (a broken or malicious sender) is C{decrypt-failed}.
        """
        c = bytearray(self.letter.ciphertext)
        c[-1] ^= 1
        self.assertRefused("decrypt-failed", resign(self.letter.header, bytes(c)))

    def test_tooLarge(self) -> None:
        """
        A letter over the maximum is C{letter-too-large}, checked before
        parsing; sealing one is refused the same way.
        """
        self.assertRefused("letter-too-large", self.letter.raw + bytes(MAX_LETTER))
        e = self.assertRaises(LetterError, seal, self.bob, "x" * MAX_LETTER)
        self.assertEqual(e.code, "letter-too-large")

    def test_malformed(self) -> None:
        """
        Cut short, trailing bytes, a presence flag other than 0/1, or a
        ciphertext shorter than tag + content type: C{malformed}; an
        unknown suite: C{unknown-suite}.
        """
        raw = self.letter.raw
        self.assertRefused("malformed", raw[:-1])
        self.assertRefused("malformed", raw + b"\x00")
        h = self.letter.header.encode()
        flag_at = 1 + 2 + 16 + 6 + 4 + 8
        self.assertEqual(h[flag_at], 0)
        self.assertRefused("malformed", raw[:flag_at] + b"\x02" + raw[flag_at + 1:])
        self.assertRefused("malformed", h + bytes32(b"\x00" * 16) + u16(0x0807) + bytes16(b""))
        self.assertRefused("unknown-suite", raw[:1] + b"\x00\x09" + raw[3:])

    def test_wrongEnvelope(self) -> None:
        """
        A letter the relay delivers under another sender or id than its
        signed header's (carol re-posting alice's letter, or a relay
        mixing letters up) is C{wrong-envelope}.
        """
        for envelope in (("carol", self.letter.header.letter_id), ("alice", b"z" * 16)):
            e = self.assertRaises(
                LetterError, open_letter, self.letter.raw, recipient="bob", recipient_key=BOB.public_key(),
                sender_key=ALICE.public_key(), prekeys=self.bob.ring, envelope=envelope)
            self.assertEqual(e.code, "wrong-envelope")
        opened = open_letter(self.letter.raw, recipient="bob", recipient_key=BOB.public_key(),
                             sender_key=ALICE.public_key(), prekeys=self.bob.ring,
                             envelope=("alice", self.letter.header.letter_id))
        self.assertEqual(opened.text, "hello bob")

    def test_bundleForSomeoneElse(self) -> None:
        """
        Sealing a letter to bob with carol's bundle is C{wrong-recipient}.
        """
        carol = Recipient("carol", CAROL)
        e = self.assertRaises(LetterError, seal_letter, sender="alice", sender_private=ALICE,
                              recipient="bob", recipient_key=BOB.public_key(), bundle=carol.bundle(),
                              content=b"x", sent_at=1)
        self.assertEqual(e.code, "wrong-recipient")

    def test_badTextContent(self) -> None:
        """
        A text letter whose content is not UTF-8 is C{bad-content}, never
        shown.
        """
        letter = seal_letter(sender="alice", sender_private=ALICE, recipient="bob",
                             recipient_key=BOB.public_key(), bundle=self.bob.bundle(),
                             content=b"\xff\xfe", sent_at=1)
        self.assertRefused("bad-content", letter.raw)

    def group_key_letter(self, content: bytes) -> SealedLetter:
        return seal_letter(sender="alice", sender_private=ALICE, recipient="bob",
                           recipient_key=BOB.public_key(), bundle=self.bob.bundle(),
                           content=content, content_type=CONTENT_GROUP_KEY, sent_at=1)

    def test_groupKeyContent(self) -> None:
        """
        Content type 2 is a group sender key (16.2): a letter carrying one
        that parses opens, with its content as sent.
        """
        dist = SenderKeyDistribution(bytes(16), 1, 9, 0, bytes(32), bytes(32))
        opened = self.bob.open(self.group_key_letter(dist.encode()).raw)
        assert isinstance(opened, OpenedLetter)
        self.assertEqual((opened.content_type, parse_distribution(opened.content)), (CONTENT_GROUP_KEY, dist))

    def test_badGroupKeyContent(self) -> None:
        """
        A letter of content type 2 whose content is not a distribution
        (here one byte short) is C{bad-content}.
        """
        dist = SenderKeyDistribution(bytes(16), 1, 9, 0, bytes(32), bytes(32))
        self.assertRefused("bad-content", self.group_key_letter(dist.encode()[:-1]).raw)


class ReceiptTests(unittest.TestCase):
    """
    Receipts verify for their letter, sender and signer only.
    """

    def setUp(self) -> None:
        self.bob = Recipient("bob", BOB)
        self.letter = seal(self.bob)

    def test_roundTripEachKeyType(self) -> None:
        """
        Delivery and read receipts by Ed25519, P-256 and RSA-PSS recipients
        verify for the letter they name.
        """
        for kind, key in USER_KEYS.items():
            for receipt_kind in ReceiptKind:
                receipt = make_receipt(self.letter, receipt_kind, key, 1_700_000_200)
                parsed = parse_receipt(receipt.encode())
                self.assertEqual(parsed, receipt, kind)
                verify_receipt(receipt.encode(), self.letter, key.public_key())

    def test_otherLetterRefused(self) -> None:
        """
        A receipt for another letter (same sender and recipient) is
        C{wrong-letter}.
        """
        other = seal(self.bob)
        receipt = make_receipt(other, ReceiptKind.READ, BOB, 1)
        e = self.assertRaises(LetterError, verify_receipt, receipt.encode(), self.letter, BOB.public_key())
        self.assertEqual(e.code, "wrong-letter")

    def test_otherSenderRefused(self) -> None:
        """
        A receipt for a letter from someone else is C{wrong-sender}.
        """
        from_carol = seal(self.bob, sender="carol", sender_key=CAROL)
        receipt = make_receipt(from_carol, ReceiptKind.READ, BOB, 1)
        forged = dataclasses.replace(receipt, letter_digest=self.letter.digest,
                                     letter_id=self.letter.header.letter_id)
        e = self.assertRaises(LetterError, verify_receipt, forged.encode(), self.letter, BOB.public_key())
        self.assertEqual(e.code, "wrong-sender")

    def test_otherSignerRefused(self) -> None:
        """
        A receipt naming a signer other than the letter's recipient is
        C{wrong-signer}; one naming bob but signed by carol is
        C{bad-signature}.
        """
        receipt = make_receipt(self.letter, ReceiptKind.DELIVERY, CAROL, 1)
        e = self.assertRaises(LetterError, verify_receipt,
                              dataclasses.replace(receipt, signer="carol").encode(), self.letter,
                              CAROL.public_key())
        self.assertEqual(e.code, "wrong-signer")
        e = self.assertRaises(LetterError, verify_receipt, receipt.encode(), self.letter, BOB.public_key())
        self.assertEqual(e.code, "bad-signature")

    def test_tamperedKindOrTime(self) -> None:
        """
        Turning a delivery receipt into a read receipt, or changing its
        time, breaks the signature: C{bad-signature}.
        """
        receipt = make_receipt(self.letter, ReceiptKind.DELIVERY, BOB, 1)
        for changed in (dataclasses.replace(receipt, kind=2), dataclasses.replace(receipt, signed_at=2)):
            e = self.assertRaises(LetterError, verify_receipt, changed.encode(), self.letter, BOB.public_key())
            self.assertEqual(e.code, "bad-signature")

    def test_relayCheckOfPostedReceipt(self) -> None:
        """
        The relay's check (14.7): a receipt posted by bob for alice's letter
        passes; one naming another id, another sender, or posted by someone
        other than its signer is refused with the specific code
        (BAD_RECEIPT on the wire).
        """
        raw = make_receipt(self.letter, ReceiptKind.DELIVERY, BOB, 1).encode()
        letter_id = self.letter.header.letter_id
        self.assertEqual(check_posted_receipt(raw, "alice", letter_id, "bob").kind, ReceiptKind.DELIVERY)
        for args, code in (((raw, "alice", b"q" * 16, "bob"), "wrong-letter"),
                           ((raw, "carol", letter_id, "bob"), "wrong-sender"),
                           ((raw, "alice", letter_id, "carol"), "wrong-signer"),
                           ((raw[:-1], "alice", letter_id, "bob"), "malformed")):
            e = self.assertRaises(LetterError, check_posted_receipt, *args)
            self.assertEqual(e.code, code)

    def test_malformed(self) -> None:
        """
        A kind other than 1 or 2, a cut or padded receipt: C{malformed};
        another version: C{unsupported-version}.
        """
        raw = make_receipt(self.letter, ReceiptKind.READ, BOB, 1).encode()
        for bad in (raw[:1] + b"\x03" + raw[2:], raw[:-1], raw + b"\x00"):
            e = self.assertRaises(LetterError, parse_receipt, bad)
            self.assertEqual(e.code, "malformed")
        e = self.assertRaises(LetterError, parse_receipt, b"\x02" + raw[1:])
        self.assertEqual(e.code, "unsupported-version")


_names = st.from_regex(r"[a-z][a-z0-9._-]{0,31}", fullmatch=True)
_ids = st.binary(min_size=16, max_size=16)


class CodecPropertyTests(unittest.TestCase):
    """
    The letter and receipt encodings parse back to themselves.
    """

    @settings(max_examples=150, deadline=None, derandomize=True)
    @given(st.sampled_from([1, 2]), _ids, _names, _names, st.integers(0, 2**64 - 1),
           st.none() | _ids, st.integers(0, 2**32 - 1), st.none() | st.integers(0, 2**32 - 1),
           st.binary(min_size=32, max_size=32), st.binary(min_size=17, max_size=300),
           st.integers(0, 0xFFFF), st.binary(max_size=512))
    def test_letterRoundTrip(self, suite: int, letter_id: bytes, sender: str, recipient: str,
                             sent_at: int, reply_to: bytes | None, spk: int, opk: int | None,
                             ephemeral: bytes, ciphertext: bytes, scheme: int, signature: bytes) -> None:
        """
        Any well-formed sealed letter parses back to the same fields.
        """
        header = LetterHeader(suite, letter_id, sender, recipient, sent_at, reply_to, spk, opk, ephemeral)
        raw = header.encode() + bytes32(ciphertext) + u16(scheme) + bytes16(signature)
        self.assertEqual(parse_letter(raw), SealedLetter(header, ciphertext, scheme, signature, raw))

    @settings(max_examples=150, deadline=None, derandomize=True)
    @given(st.sampled_from([1, 2]), st.binary(min_size=32, max_size=32), _ids, _names, _names,
           st.integers(0, 2**64 - 1), st.integers(0, 0xFFFF), st.binary(max_size=512))
    def test_receiptRoundTrip(self, kind: int, digest: bytes, letter_id: bytes, sender: str,
                              signer: str, at: int, scheme: int, signature: bytes) -> None:
        """
        Any well-formed receipt parses back to itself.
        """
        receipt = Receipt(kind, digest, letter_id, sender, signer, at, scheme, signature)
        self.assertEqual(parse_receipt(receipt.encode()), receipt)

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(st.binary(max_size=400))
    def test_randomBytes(self, data: bytes) -> None:
        """
        Random bytes as a letter or a receipt raise only L{LetterError}.
        """
        for parse in (parse_letter, parse_receipt):
            try:
                parse(data)
            except LetterError as e:
                self.assertIn(e.code, {"malformed", "unsupported-version", "unknown-suite"})
