"""
Tests that docs/protocol.rst's section 16 is exact, using
L{tests.independent_groups}: group messages and their distributions written
from the document alone.

  - L{GroupVectorTests}: the clean-room code reproduces the group message
    vector (13.6) from its inputs, and opens it.
  - L{GroupInteropTests}: a distribution letter and group messages made by
    either implementation are opened by the other (gaps, late messages,
    held messages the same), and tampering, replays and a new member's
    earlier messages are refused by both with the same code.
"""

from __future__ import annotations

import pathlib

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.trial import unittest

from securechat.crypto.letters import CONTENT_GROUP_KEY, open_letter, seal_letter
from securechat.crypto.prekeys import LetterError, PrekeyBundle, PrekeyRing, generate_signed_prekey
from securechat.crypto.senderkeys import (
    GroupKeyError,
    SenderChain,
    parse_distribution,
    parse_group_message,
)
from securechat.crypto.senderstate import Held, Opened, SenderKeyState
from tests import independent_groups as clean
from tests import independent_mailbox as clean_mail
from tests.vectors import parse

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "protocol.rst"

ALICE = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(0x00, 0x20)))
BOB = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(0x60, 0x80)))
GROUP = bytes(range(0x10, 0x20))
SEED = bytes(range(0x80, 0xA0))
CHAIN_KEY = bytes(range(0x20, 0x40))


def _int(b: bytes) -> int:
    return int.from_bytes(b, "big")


def our_chain(counter: int = 0, epoch: int = 1) -> SenderChain:
    return SenderChain(GROUP, "alice", epoch, 77, counter, CHAIN_KEY,
                       ed25519.Ed25519PrivateKey.from_private_bytes(SEED))


class CleanSender:
    """alice's chain in the clean-room code: seals in order."""

    def __init__(self, counter: int = 0, epoch: int = 1) -> None:
        self.counter, self.ck, self.epoch = counter, CHAIN_KEY, epoch

    def distribution(self) -> bytes:
        return clean.distribution(GROUP, self.epoch, 77, self.counter, self.ck, SEED)

    def seal(self, text: bytes, epoch: int = 1) -> bytes:
        body, self.ck = clean.seal(GROUP, "alice", epoch, 77, self.counter, self.ck, SEED, 5, text)
        self.counter += 1
        return body


class GroupVectorTests(unittest.TestCase):
    """
    The clean-room code, given 13.6's inputs, produces its bytes.
    """

    def test_vector(self) -> None:
        """
        From 13.6's inputs the clean-room code makes the same distribution,
        keys and body, and its receiver opens the body.
        """
        v = parse(DOC.read_text())["group-message"]
        dist = clean.distribution(v["group_id"], _int(v["chain.epoch"]), _int(v["chain_id"]),
                                  _int(v["counter"]), v["chain_key"], v["signing.seed"])
        self.assertEqual(dist.hex(), v["distribution"].hex())
        key, nonce, next_ck = clean.chain_step(v["chain_key"])
        self.assertEqual((key.hex(), nonce.hex(), next_ck.hex()),
                         (v["message_key"].hex(), v["nonce"].hex(), v["next_chain_key"].hex()))
        body, _ = clean.seal(v["group_id"], v["sender.name"].decode(), _int(v["epoch"]), _int(v["chain_id"]),
                             _int(v["counter"]), v["chain_key"], v["signing.seed"], _int(v["sent_at"]),
                             v["content"], v["content_type"][0])
        self.assertEqual(body.hex(), v["body"].hex())
        receiver = clean.Receiver(v["group_id"])
        receiver.add("alice", clean.parse_distribution(dist))
        self.assertEqual(receiver.open(body, v["group_id"], "alice"), ("opened", 1, v["content"], None, False))


class GroupInteropTests(unittest.TestCase):
    """
    Each implementation opens what the other seals, and refuses the same
    things with the same codes.
    """

    def test_distributionLetterBothWays(self) -> None:
        """
        A content type 2 letter sealed by either side opens on the other,
        and the distribution in it parses to the same chain.
        """
        spk, spk_private = generate_signed_prekey("bob", BOB, 3, 1000)
        ring = PrekeyRing()
        ring.signed[3] = spk_private
        dist = our_chain(counter=4).distribution().encode()
        letter = seal_letter(sender="alice", sender_private=ALICE, recipient="bob",
                             recipient_key=BOB.public_key(), bundle=PrekeyBundle("bob", spk, None),
                             content=dist, content_type=CONTENT_GROUP_KEY, sent_at=5)
        content_type, content = clean_mail.open_letter(
            letter.raw, ("alice", letter.header.letter_id), "bob", BOB.public_key(), ALICE.public_key(),
            {3: spk_private}, {})
        self.assertEqual((content_type, clean.parse_distribution(content)["counter"]), (2, 4))

        theirs = clean_mail.seal("alice", ALICE, "bob", BOB.public_key(), spk.encode(), b"",
                                 CleanSender(counter=4).distribution(), 77, b"g" * 16,
                                 bytes(range(1, 33)), content_type=2)
        opened = open_letter(theirs, recipient="bob", recipient_key=BOB.public_key(),
                             sender_key=ALICE.public_key(), prekeys=ring)
        self.assertEqual(opened.content_type, CONTENT_GROUP_KEY)
        self.assertEqual(parse_distribution(opened.content), our_chain(counter=4).distribution())

    def test_badDistributionLetterBothWays(self) -> None:
        """
        A content type 2 letter whose content is not a distribution is
        C{bad-content} on both sides.
        """
        spk, spk_private = generate_signed_prekey("bob", BOB, 3, 1000)
        ring = PrekeyRing()
        ring.signed[3] = spk_private
        theirs = clean_mail.seal("alice", ALICE, "bob", BOB.public_key(), spk.encode(), b"",
                                 CleanSender().distribution()[:-1], 77, b"g" * 16,
                                 bytes(range(1, 33)), content_type=2)
        e = self.assertRaises(clean.Refused, clean_mail.open_letter, theirs, ("alice", b"g" * 16), "bob",
                              BOB.public_key(), ALICE.public_key(), {3: spk_private}, {})
        e2 = self.assertRaises(LetterError, open_letter, theirs, recipient="bob",
                               recipient_key=BOB.public_key(), sender_key=ALICE.public_key(), prekeys=ring)
        self.assertEqual((e.code, e2.code), ("bad-content", "bad-content"))

    def test_cleanSealsWeOpen(self) -> None:
        """
        Messages sealed by the clean-room code open in securechat's
        receiver, with the same gap and late reports: 0, 2, 1.
        """
        sender = CleanSender()
        state = SenderKeyState(GROUP, "alice")
        state.add_chain(parse_distribution(sender.distribution()))
        bodies = [sender.seal(b"m%d" % i) for i in range(3)]
        results = [state.receive(parse_group_message(bodies[i])) for i in (0, 2, 1)]
        summary = [(r.message.content, r.gap, r.late) for r in results if isinstance(r, Opened)]
        self.assertEqual(summary, [(b"m0", None, False), (b"m2", (1, 1), False), (b"m1", None, True)])

    def test_weSealCleanOpens(self) -> None:
        """
        Messages sealed by securechat open in the clean-room receiver, with
        the same gap and late reports: 0, 2, 1.
        """
        chain = our_chain()
        receiver = clean.Receiver(GROUP)
        receiver.add("alice", clean.parse_distribution(chain.distribution().encode()))
        bodies = [chain.seal(b"m%d" % i, epoch=1, sent_at=5).encode() for i in range(3)]
        results = [receiver.open(bodies[i], GROUP, "alice") for i in (0, 2, 1)]
        self.assertEqual(results, [("opened", 1, b"m0", None, False), ("opened", 1, b"m2", (1, 1), False),
                                   ("opened", 1, b"m1", None, True)])

    def test_sameBytes(self) -> None:
        """
        The same chain and inputs give the same body from both (the whole
        process is deterministic: no random draw in sealing).
        """
        self.assertEqual(our_chain().seal(b"same", epoch=1, sent_at=5).encode(), CleanSender().seal(b"same"))

    def test_heldBothWays(self) -> None:
        """
        A message before its key is held by both, and opened by both when
        the distribution comes.
        """
        chain = our_chain()
        dist = chain.distribution().encode()
        body = chain.seal(b"early", epoch=1, sent_at=5).encode()
        receiver = clean.Receiver(GROUP)
        self.assertEqual(receiver.open(body, GROUP, "alice"), ("held",))
        self.assertEqual(receiver.add("alice", clean.parse_distribution(dist)),
                         [("opened", 1, b"early", None, False)])
        state = SenderKeyState(GROUP, "alice")
        self.assertIsInstance(state.receive(parse_group_message(body)), Held)
        [released] = state.add_chain(parse_distribution(dist))
        assert isinstance(released.result, Opened)
        self.assertEqual(released.result.message.content, b"early")

    def test_sameRefusalCodes(self) -> None:
        """
        A tampered header, ciphertext or signature (C{bad-signature}), a
        replay (C{replayed}), another sender (C{wrong-sender}), a message
        before the key a new member was given (C{before-key}), an old chain
        after a removal (C{stale-chain}) and a jump of more than 1000
        (C{too-far-ahead}): the same code from both implementations.
        """
        chain = our_chain()
        first = chain.seal(b"0", epoch=1, sent_at=5).encode()
        second = chain.seal(b"1", epoch=2, sent_at=5).encode()
        late_dist = chain.distribution().encode()

        def flip(data: bytes, at: int) -> bytes:
            raw = bytearray(data)
            raw[at] ^= 1
            return bytes(raw)

        far = SenderChain(GROUP, "alice", 1, 77, 1002, CHAIN_KEY,
                          ed25519.Ed25519PrivateKey.from_private_bytes(SEED)).seal(b"x", epoch=1, sent_at=5)
        cases = [
            # (distribution, opened first, body, sender, rekey, code)
            (None, None, flip(first, 38), "alice", 0, "bad-signature"),
            (None, None, flip(first, 60), "alice", 0, "bad-signature"),
            (None, None, flip(first, len(first) - 3), "alice", 0, "bad-signature"),
            (None, first, first, "alice", 0, "replayed"),
            (None, None, first, "bob", 0, "wrong-sender"),
            (late_dist, None, first, "alice", 0, "before-key"),
            (None, None, second, "alice", 2, "stale-chain"),
            (None, None, far.encode(), "alice", 0, "too-far-ahead"),
        ]
        start = our_chain().distribution().encode()
        for dist, before, body, sender, rekey, code in cases:
            receiver = clean.Receiver(GROUP)
            receiver.add("alice", clean.parse_distribution(dist or start))
            state = SenderKeyState(GROUP, sender)
            if sender == "alice":
                state.add_chain(parse_distribution(dist or start))
            if before is not None:
                receiver.open(before, GROUP, "alice")
                state.receive(parse_group_message(before))
            e = self.assertRaises(clean.Refused, receiver.open, body, GROUP, sender, rekey)
            e2 = self.assertRaises(GroupKeyError, state.receive, parse_group_message(body), rekey_epoch=rekey)
            self.assertEqual((e.code, e2.code), (code, code), (code, e.code, e2.code))
