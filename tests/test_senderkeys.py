"""
Tests for L{securechat.crypto.senderkeys} and L{securechat.crypto.senderstate}:
sender chains, the distribution, the group message body, and the
receiver's state (docs/protocol.rst, section 16).
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from securechat.crypto.senderkeys import (
    DISTRIBUTION_LENGTH,
    MAX_COUNTER,
    MAX_GROUP_MESSAGE,
    GroupHeader,
    GroupKeyError,
    GroupMessage,
    SenderChain,
    SenderKeyDistribution,
    group_signature_message,
    message_key,
    next_chain_key,
    parse_distribution,
    parse_group_message,
)
from securechat.crypto.senderstate import Held, Opened, SenderKeyState
from tests.vectors import SequenceRandom

GROUP = bytes(range(16))
OTHER_GROUP = bytes(range(1, 17))


def chain(sender: str = "alice", epoch: int = 1, seed: int = 1, counter: int = 0,
          chain_id: int = 7) -> SenderChain:
    return SenderChain(GROUP, sender, epoch, chain_id, counter, bytes([seed]) * 32,
                       Ed25519PrivateKey.from_private_bytes(bytes([seed + 100]) * 32))


def state_for(sender_chain: SenderChain, **kw: int) -> SenderKeyState:
    state = SenderKeyState(GROUP, sender_chain.sender, **kw)
    state.add_chain(sender_chain.distribution())
    return state


def opened(result: Opened | Held) -> Opened:
    assert isinstance(result, Opened), result
    return result


class ChainTests(unittest.TestCase):
    """
    The sender chain (16.1): one key per message, moved forward, the used
    keys not kept.
    """

    def test_distinctLabels(self) -> None:
        """
        The message key, the nonce and the next chain key come from one
        chain key under different labels: none equals another or the chain
        key itself.
        """
        ck = bytes(32)
        key = message_key(ck)
        values = {ck, key.key, key.nonce, next_chain_key(ck)}
        self.assertEqual(len(values), 4)
        self.assertEqual((len(key.key), len(key.nonce), len(next_chain_key(ck))), (32, 12, 32))

    def test_sealMovesChainAndForgets(self) -> None:
        """
        Sealing uses the current chain key once: afterwards the chain is at
        the next counter with the next chain key, and neither the used chain
        key nor its message key is held anywhere in the chain object.
        """
        c = chain()
        used = c.distribution().chain_key
        c.seal(b"hi", epoch=1, sent_at=5)
        dist = c.distribution()
        self.assertEqual((dist.counter, dist.chain_key), (1, next_chain_key(used)))
        held = [v for v in vars(c).values() if isinstance(v, bytes)]
        for secret in (used, message_key(used).key, message_key(used).nonce):
            self.assertNotIn(secret, held)

    def test_createDraws(self) -> None:
        """
        A new chain draws its id (again while it is 0 or the id it
        replaces), then the chain key, then the signing seed; it starts at
        counter 0.
        """
        random = SequenceRandom(bytes(4), (9).to_bytes(4, "big"), (10).to_bytes(4, "big"),
                                b"\x01" * 32, b"\x02" * 32)
        c = SenderChain.create(GROUP, "alice", 3, avoid=9, random=random)
        dist = c.distribution()
        self.assertEqual((dist.chain_id, dist.counter, dist.epoch, dist.chain_key), (10, 0, 3, b"\x01" * 32))

    def test_exhausted(self) -> None:
        """
        A chain at the last counter seals one more message, then refuses
        with C{chain-exhausted} (a new chain must replace it).
        """
        c = chain(counter=MAX_COUNTER)
        c.seal(b"last", epoch=1, sent_at=0)
        e = self.assertRaises(GroupKeyError, c.seal, b"more", epoch=1, sent_at=0)
        self.assertEqual(e.code, "chain-exhausted")
        self.assertEqual(self.assertRaises(GroupKeyError, c.distribution).code, "chain-exhausted")

    def test_sealEarlierEpoch(self) -> None:
        """
        A chain is not used for an epoch before the one it was made in
        (C{wrong-epoch}), and the refusal uses up no counter.
        """
        c = chain(epoch=4)
        self.assertEqual(self.assertRaises(GroupKeyError, c.seal, b"x", epoch=3, sent_at=0).code,
                         "wrong-epoch")
        self.assertEqual(c.counter, 0)

    def test_sealTooLarge(self) -> None:
        """
        A body that would pass MAX_GROUP_MESSAGE is refused with
        C{message-too-large} and uses up no counter.
        """
        c = chain()
        e = self.assertRaises(GroupKeyError, c.seal, b"x" * MAX_GROUP_MESSAGE, epoch=1, sent_at=0)
        self.assertEqual((e.code, c.counter), ("message-too-large", 0))


class DistributionTests(unittest.TestCase):
    """
    The distribution (16.2), parsed exactly.
    """

    def test_roundTrip(self) -> None:
        """
        A distribution parses back to itself and has the fixed length.
        """
        dist = chain(counter=5).distribution()
        raw = dist.encode()
        self.assertEqual(len(raw), DISTRIBUTION_LENGTH)
        self.assertEqual(parse_distribution(raw), dist)

    def test_truncated(self) -> None:
        """
        A distribution cut short is C{malformed}.
        """
        raw = chain().distribution().encode()
        self.assertEqual(self.assertRaises(GroupKeyError, parse_distribution, raw[:-1]).code, "malformed")

    def test_trailing(self) -> None:
        """
        Bytes after the signing key are C{malformed}.
        """
        raw = chain().distribution().encode() + b"\x00"
        self.assertEqual(self.assertRaises(GroupKeyError, parse_distribution, raw).code, "malformed")

    def test_version(self) -> None:
        """
        A version other than 1 is C{unsupported-version}.
        """
        raw = b"\x02" + chain().distribution().encode()[1:]
        self.assertEqual(self.assertRaises(GroupKeyError, parse_distribution, raw).code,
                         "unsupported-version")

    def test_chainIdZero(self) -> None:
        """
        Chain id 0 is C{malformed}.
        """
        raw = bytearray(chain().distribution().encode())
        raw[25:29] = bytes(4)
        self.assertEqual(self.assertRaises(GroupKeyError, parse_distribution, bytes(raw)).code, "malformed")


class MessageFormatTests(unittest.TestCase):
    """
    The group message body (16.3), parsed exactly.
    """

    def setUp(self) -> None:
        self.raw = chain().seal(b"hello", epoch=2, sent_at=99).encode()

    def code(self, data: bytes) -> str:
        return self.assertRaises(GroupKeyError, parse_group_message, data).code

    def test_roundTrip(self) -> None:
        """
        A sealed body parses back to the same bytes and fields.
        """
        message = parse_group_message(self.raw)
        self.assertEqual(message.encode(), self.raw)
        h = message.header
        self.assertEqual((h.group_id, h.sender, h.epoch, h.chain_id, h.counter, h.sent_at),
                         (GROUP, "alice", 2, 7, 0, 99))

    def test_truncated(self) -> None:
        """
        A body cut short (in the signature) is C{malformed}.
        """
        self.assertEqual(self.code(self.raw[:-1]), "malformed")

    def test_trailing(self) -> None:
        """
        Bytes after the signature are C{malformed}.
        """
        self.assertEqual(self.code(self.raw + b"\x00"), "malformed")

    def test_version(self) -> None:
        """
        A version other than 1 is C{unsupported-version}.
        """
        self.assertEqual(self.code(b"\x02" + self.raw[1:]), "unsupported-version")

    def test_badSender(self) -> None:
        """
        A sender that breaks the user-name rule is C{malformed}.
        """
        raw = self.raw[:17] + b"\x05Alice" + self.raw[23:]
        self.assertEqual(self.code(raw), "malformed")

    def test_chainIdZero(self) -> None:
        """
        Chain id 0 is C{malformed}.
        """
        raw = self.raw[:31] + bytes(4) + self.raw[35:]
        self.assertEqual(self.code(raw), "malformed")

    def test_shortCiphertext(self) -> None:
        """
        A ciphertext shorter than a content type and a tag is C{malformed}.
        """
        header = self.raw[:47]
        raw = header + (16).to_bytes(4, "big") + bytes(16) + bytes(64)
        self.assertEqual(self.code(raw), "malformed")

    def test_tooLarge(self) -> None:
        """
        A body over MAX_GROUP_MESSAGE is C{message-too-large}, before
        anything is parsed.
        """
        self.assertEqual(self.code(bytes(MAX_GROUP_MESSAGE + 1)), "message-too-large")


class OpeningTests(unittest.TestCase):
    """
    Sealing and opening (16.4): envelope, epochs, signature before
    decryption, content.
    """

    def setUp(self) -> None:
        self.alice = chain()
        self.bob_view = state_for(self.alice)

    def code(self, message: GroupMessage, state: SenderKeyState | None = None, rekey: int = 0) -> str:
        return self.assertRaises(GroupKeyError, (state or self.bob_view).receive, message,
                                 rekey_epoch=rekey).code

    def test_roundTrip(self) -> None:
        """
        A sealed message opens with the distributed chain: text, header.
        """
        result = opened(self.bob_view.receive(self.alice.seal("h\u00e9".encode(), epoch=1, sent_at=9)))
        self.assertEqual((result.message.text, result.gap, result.late), ("h\u00e9", None, False))

    def test_wrongGroup(self) -> None:
        """
        A body naming another group than the one it came in is
        C{wrong-group}.
        """
        other = SenderChain(OTHER_GROUP, "alice", 1, 7, 0, bytes([1]) * 32,
                            Ed25519PrivateKey.from_private_bytes(bytes([101]) * 32))
        self.assertEqual(self.code(other.seal(b"x", epoch=1, sent_at=0)), "wrong-group")

    def test_wrongSender(self) -> None:
        """
        A body naming another sender than the relay's C{sender} is
        C{wrong-sender}.
        """
        carol = SenderKeyState(GROUP, "carol")
        self.assertEqual(self.code(self.alice.seal(b"x", epoch=1, sent_at=0), carol), "wrong-sender")

    def tampered(self, offset: int) -> GroupMessage:
        raw = bytearray(self.alice.seal(b"hello", epoch=2, sent_at=0).encode())
        raw[offset] ^= 1
        return parse_group_message(bytes(raw))

    def test_tamperedHeader(self) -> None:
        """
        A header changed in transit (epoch, counter or time) is
        C{bad-signature}, and the state does not move.
        """
        for offset in (30, 38, 46):
            self.assertEqual(self.code(self.tampered(offset)), "bad-signature")
        self.assertEqual(self.bob_view.chains[7].next, 0)

    def test_tamperedCiphertext(self) -> None:
        """
        A ciphertext changed in transit is C{bad-signature} (the signature
        is checked before decryption).
        """
        self.assertEqual(self.code(self.tampered(52)), "bad-signature")

    def test_tamperedSignature(self) -> None:
        """
        A signature changed in transit is C{bad-signature}.
        """
        raw = self.alice.seal(b"hello", epoch=1, sent_at=0).encode()
        self.assertEqual(self.code(self.tampered(len(raw) - 1)), "bad-signature")

    def test_signatureBeforeDecryption(self) -> None:
        """
        A message signed by the sender but encrypted under another key is
        C{decrypt-failed}: decryption runs only once the signature verified
        (a bad signature on the same message says C{bad-signature}).
        """
        sealed = self.alice.seal(b"hello", epoch=1, sent_at=0)
        wrong = AESGCM(bytes(32)).encrypt(bytes(12), b"\x01hello", sealed.header.encode())
        signing = Ed25519PrivateKey.from_private_bytes(bytes([101]) * 32)
        unsigned = GroupMessage(sealed.header, wrong, b"")
        resigned = GroupMessage(sealed.header, wrong, signing.sign(group_signature_message(unsigned.signed_part)))
        self.assertEqual(self.code(GroupMessage(sealed.header, wrong, sealed.signature)), "bad-signature")
        self.assertEqual(self.code(resigned), "decrypt-failed")
        self.assertEqual(self.bob_view.chains[7].next, 0)

    def test_forgedAsOtherMember(self) -> None:
        """
        bob holds alice's chain key and signing public key, but not her
        signing private key: a message he makes as alice (her chain key,
        his own signing key, sender "alice") is C{bad-signature} at carol.
        """
        carol_view = state_for(self.alice)
        header = GroupHeader(GROUP, "alice", 1, 7, 0, 0)
        mk = message_key(self.alice.distribution().chain_key)
        ciphertext = AESGCM(mk.key).encrypt(mk.nonce, b"\x01pay mallory", header.encode())
        unsigned = GroupMessage(header, ciphertext, b"")
        bob_signing = Ed25519PrivateKey.from_private_bytes(bytes([150]) * 32)
        forged = GroupMessage(header, ciphertext, bob_signing.sign(group_signature_message(unsigned.signed_part)))
        self.assertEqual(self.code(forged, carol_view), "bad-signature")
        # Signed with his own key, the message can only be his own (sender bob):
        # delivered as alice's, it is wrong-sender.
        as_bob = chain(sender="bob", seed=1).seal(b"pay mallory", epoch=1, sent_at=0)
        self.assertEqual(self.code(as_bob, carol_view), "wrong-sender")

    def test_badContent(self) -> None:
        """
        A text message whose content is not UTF-8 is C{bad-content}.
        """
        self.assertEqual(self.code(self.alice.seal(b"\xff", epoch=1, sent_at=0)), "bad-content")

    def test_otherContentType(self) -> None:
        """
        Content types other than 1 open as bytes (the client decides what
        to show of them).
        """
        result = opened(self.bob_view.receive(self.alice.seal(b"\xff", epoch=1, sent_at=0, content_type=9)))
        self.assertEqual((result.message.content_type, result.message.content), (9, b"\xff"))

    def test_epochBeforeChain(self) -> None:
        """
        A message dated to an epoch before its chain's is C{wrong-epoch}.
        """
        view = state_for(chain(epoch=5))
        backdated = chain(epoch=4)  # the same keys, made to seal at epoch 4
        self.assertEqual(self.code(backdated.seal(b"x", epoch=4, sent_at=0), view), "wrong-epoch")


class RotationTests(unittest.TestCase):
    """
    Rotation (16.5): a removed member cannot read the new chain, a new
    member cannot read earlier messages, and an old chain after a removal
    is refused.
    """

    def test_removedMemberCannotOpenNewChain(self) -> None:
        """
        mallory holds alice's old chain (she was a member).  After her
        removal alice makes a new chain and gives it only to the others:
        mallory's copy of a new-chain message is held (she never gets its
        key), and neither her old chain's keys nor its signing key open it
        even under the new chain's id.
        """
        old = chain(epoch=1, seed=1, chain_id=7)
        mallory = state_for(old)
        opened(mallory.receive(old.seal(b"before", epoch=1, sent_at=0)))
        new = SenderChain.create(GROUP, "alice", 2, avoid=7, random=SequenceRandom(
            (8).to_bytes(4, "big"), b"\x09" * 32, b"\x0a" * 32))
        bob = SenderKeyState(GROUP, "alice")
        bob.add_chain(new.distribution())
        after = new.seal(b"after", epoch=2, sent_at=1)
        self.assertEqual(opened(bob.receive(after, rekey_epoch=2)).message.text, "after")
        self.assertIsInstance(mallory.receive(after, rekey_epoch=2), Held)
        # Her best guess: her old chain (as far as she got) under the new id.
        guess = SenderKeyState(GROUP, "alice")
        d = old.distribution()
        guess.add_chain(SenderKeyDistribution(GROUP, 2, 8, 0, d.chain_key, d.signing_public))
        self.assertEqual(self.assertRaises(GroupKeyError, guess.receive, after).code, "bad-signature")
        # Even skipping the signature, her keys do not decrypt it.
        from securechat.crypto.senderkeys import decrypt_group_message
        self.assertEqual(self.assertRaises(GroupKeyError, decrypt_group_message, after,
                                           message_key(d.chain_key)).code, "decrypt-failed")

    def test_staleChainAfterRemoval(self) -> None:
        """
        A chain made before a removal (epoch 1) used for a message at or
        after it (rekey epoch 2) is C{stale-chain}; a message of that chain
        from before the removal still opens.
        """
        old = chain(epoch=1)
        view = state_for(old)
        before = old.seal(b"before", epoch=1, sent_at=0)
        after = old.seal(b"after", epoch=2, sent_at=0)
        self.assertEqual(self.assertRaises(GroupKeyError, view.receive, after, rekey_epoch=2).code,
                         "stale-chain")
        self.assertEqual(opened(view.receive(before, rekey_epoch=0)).message.text, "before")

    def test_newMemberCannotOpenEarlier(self) -> None:
        """
        A member who joins is given the chain at its current counter: the
        messages sent before are C{before-key}; those after open.
        """
        alice = chain()
        early = [alice.seal(b"%d" % i, epoch=1, sent_at=0) for i in range(3)]
        dave = state_for(alice)
        late = alice.seal(b"3", epoch=2, sent_at=0)
        for message in early:
            self.assertEqual(self.assertRaises(GroupKeyError, dave.receive, message).code, "before-key")
        self.assertEqual(opened(dave.receive(late)).message.text, "3")


class OrderTests(unittest.TestCase):
    """
    Replays, reordering and drops are detected (16.4).
    """

    def setUp(self) -> None:
        self.alice = chain()
        self.view = state_for(self.alice)
        self.sent = [self.alice.seal(b"%d" % i, epoch=1, sent_at=i) for i in range(6)]

    def test_replay(self) -> None:
        """
        A message opened before is C{replayed}.
        """
        opened(self.view.receive(self.sent[0]))
        self.assertEqual(self.assertRaises(GroupKeyError, self.view.receive, self.sent[0]).code, "replayed")

    def test_reorder(self) -> None:
        """
        0, 2, 1: message 2 reports the gap (counter 1, one message); 1
        then opens as late; 1 again is C{replayed}.
        """
        opened(self.view.receive(self.sent[0]))
        two = opened(self.view.receive(self.sent[2]))
        self.assertEqual((two.gap, two.late), ((1, 1), False))
        one = opened(self.view.receive(self.sent[1]))
        self.assertEqual((one.message.text, one.gap, one.late), ("1", None, True))
        self.assertEqual(self.assertRaises(GroupKeyError, self.view.receive, self.sent[1]).code, "replayed")

    def test_drop(self) -> None:
        """
        0 then 4: the gap of three messages (1 to 3) is reported.
        """
        opened(self.view.receive(self.sent[0]))
        self.assertEqual(opened(self.view.receive(self.sent[4])).gap, (1, 3))

    def test_tooFarAhead(self) -> None:
        """
        A counter more than max_skip ahead is C{too-far-ahead}, and the
        state does not move: the next message opens without a gap.
        """
        view = state_for(chain(), max_skip=3)
        self.assertEqual(self.assertRaises(GroupKeyError, view.receive, self.sent[5]).code, "too-far-ahead")
        self.assertEqual(opened(view.receive(self.sent[0])).gap, None)
        self.assertEqual(opened(view.receive(self.sent[4])).gap, (1, 3))

    def test_skippedKeysBounded(self) -> None:
        """
        At most max_skipped skipped keys are kept: the oldest is given up,
        and its message is then C{key-expired}; a newer skipped one still
        opens late.
        """
        alice = chain()
        view = state_for(alice, max_skipped=2)
        sent = [alice.seal(b"%d" % i, epoch=1, sent_at=i) for i in range(5)]
        self.assertEqual(opened(view.receive(sent[4])).gap, (0, 4))
        self.assertEqual(len(view.chains[7].skipped), 2)
        self.assertEqual(self.assertRaises(GroupKeyError, view.receive, sent[0]).code, "key-expired")
        self.assertTrue(opened(view.receive(sent[3])).late)

    def test_refusedChangesNothing(self) -> None:
        """
        A message refused after the signature (here C{bad-content} at
        counter 2) moves nothing: message 0 then opens with no gap.
        """
        alice = chain()
        view = state_for(alice)
        first = alice.seal(b"0", epoch=1, sent_at=0)
        alice.seal(b"1", epoch=1, sent_at=0)
        bad = alice.seal(b"\xff", epoch=1, sent_at=0)
        self.assertEqual(self.assertRaises(GroupKeyError, view.receive, bad).code, "bad-content")
        self.assertEqual(opened(view.receive(first)).gap, None)


class HeldTests(unittest.TestCase):
    """
    A message whose chain has not arrived is held and opened when it
    comes (16.4); never dropped silently.
    """

    def test_heldThenOpened(self) -> None:
        """
        Two messages before the key are held; the distribution releases
        them, opened, in the order they came.
        """
        alice = chain()
        view = SenderKeyState(GROUP, "alice")
        sent = [alice.seal(b"%d" % i, epoch=1, sent_at=i) for i in range(2)]
        for message in sent:
            self.assertIsInstance(view.receive(message), Held)
        self.assertEqual(view.waiting, 2)
        fresh = chain()
        released = view.add_chain(fresh.distribution())
        texts = [r.result.message.text for r in released if isinstance(r.result, Opened)]
        self.assertEqual(texts, ["0", "1"])
        self.assertEqual(view.waiting, 0)

    def test_releasedRefusal(self) -> None:
        """
        A held message that fails once its chain comes is released with
        its error (here C{bad-signature}), not dropped.
        """
        alice = chain()
        view = SenderKeyState(GROUP, "alice")
        raw = bytearray(alice.seal(b"x", epoch=1, sent_at=0).encode())
        raw[-1] ^= 1
        view.receive(parse_group_message(bytes(raw)))
        [released] = view.add_chain(chain().distribution())
        assert isinstance(released.result, GroupKeyError)
        self.assertEqual(released.result.code, "bad-signature")

    def test_heldOnlyForItsChain(self) -> None:
        """
        A message held for chain 7 is not released by chain 8.
        """
        view = SenderKeyState(GROUP, "alice")
        view.receive(chain(chain_id=7).seal(b"x", epoch=1, sent_at=0))
        self.assertEqual(view.add_chain(chain(chain_id=8, seed=3).distribution()), [])
        self.assertEqual(view.waiting, 1)

    def test_heldBounded(self) -> None:
        """
        At most max_held messages are held; the oldest is given up to make
        room, and returned so that it is reported.
        """
        alice = chain()
        view = SenderKeyState(GROUP, "alice", max_held=2)
        sent = [alice.seal(b"%d" % i, epoch=1, sent_at=i) for i in range(3)]
        view.receive(sent[0])
        view.receive(sent[1])
        third = view.receive(sent[2])
        assert isinstance(third, Held)
        self.assertEqual(third.given_up, sent[0])
        self.assertEqual(view.waiting, 2)


class ChainSetTests(unittest.TestCase):
    """
    The chains a receiver keeps per sender.
    """

    def test_duplicateDistribution(self) -> None:
        """
        The same distribution again changes nothing.
        """
        alice = chain()
        view = state_for(alice)
        opened(view.receive(alice.seal(b"x", epoch=1, sent_at=0)))
        self.assertEqual(view.add_chain(chain().distribution()), [])
        self.assertEqual(view.chains[7].next, 1)

    def test_sameChainLaterCounter(self) -> None:
        """
        The same chain sent again at a later counter (same id, signing key
        and epoch) changes nothing: what was held stays, and messages from
        before that counter still open.
        """
        alice = chain()
        view = state_for(alice)
        first = alice.seal(b"0", epoch=1, sent_at=0)
        self.assertEqual(view.add_chain(alice.distribution()), [])
        self.assertEqual(view.chains[7].start, 0)
        self.assertEqual(opened(view.receive(first)).message.text, "0")

    def test_conflictOtherEpoch(self) -> None:
        """
        The same chain id and signing key under another epoch is
        C{chain-conflict}.
        """
        view = state_for(chain(epoch=1))
        e = self.assertRaises(GroupKeyError, view.add_chain, chain(epoch=2).distribution())
        self.assertEqual(e.code, "chain-conflict")

    def test_conflict(self) -> None:
        """
        Another key under a chain id we hold is C{chain-conflict}; the
        first stands.
        """
        view = state_for(chain())
        e = self.assertRaises(GroupKeyError, view.add_chain, chain(seed=5).distribution())
        self.assertEqual(e.code, "chain-conflict")
        self.assertEqual(view.chains[7].chain_key, bytes([1]) * 32)

    def test_wrongGroup(self) -> None:
        """
        A distribution for another group is C{wrong-group}.
        """
        view = SenderKeyState(OTHER_GROUP, "alice")
        self.assertEqual(self.assertRaises(GroupKeyError, view.add_chain, chain().distribution()).code,
                         "wrong-group")

    def test_retired(self) -> None:
        """
        Past max_chains the oldest chain is retired: its messages and its
        distribution are then C{retired-chain}.
        """
        first, second = chain(chain_id=7), chain(chain_id=8, seed=3)
        view = SenderKeyState(GROUP, "alice", max_chains=1)
        view.add_chain(first.distribution())
        view.add_chain(second.distribution())
        self.assertEqual(self.assertRaises(GroupKeyError, view.receive,
                                           first.seal(b"x", epoch=1, sent_at=0)).code, "retired-chain")
        self.assertEqual(self.assertRaises(GroupKeyError, view.add_chain, first.distribution()).code,
                         "retired-chain")
        self.assertEqual(opened(view.receive(second.seal(b"y", epoch=1, sent_at=0))).message.text, "y")



class RecordTests(unittest.TestCase):
    """
    The states the client keeps on disk come back whole.
    """

    def test_receiverStateRoundTrip(self) -> None:
        """
        A receiver state with a skipped key, a held message (with its tag)
        and a retired chain, through JSON and back, behaves the same: the
        late message opens, the held one is released with its tag, the
        retired chain is refused, a replay is refused.
        """
        import json

        alice, later = chain(chain_id=7), chain(chain_id=9, seed=4)
        later_dist = later.distribution()
        view = SenderKeyState(GROUP, "alice", max_chains=1)
        view.add_chain(chain(chain_id=5, seed=6).distribution())
        view.add_chain(alice.distribution())
        sent = [alice.seal(b"%d" % i, epoch=1, sent_at=i) for i in range(3)]
        opened(view.receive(sent[0]))
        opened(view.receive(sent[2]))
        view.receive(later.seal(b"held", epoch=1, sent_at=0), tag=(12, 34))
        again = SenderKeyState.from_record(json.loads(json.dumps(view.to_record())), max_chains=2)
        self.assertTrue(opened(again.receive(sent[1])).late)
        self.assertEqual(self.assertRaises(GroupKeyError, again.receive, sent[2]).code, "replayed")
        self.assertEqual(self.assertRaises(GroupKeyError, again.receive,
                                           chain(chain_id=5, seed=6).seal(b"x", epoch=1, sent_at=0)).code,
                         "retired-chain")
        [released] = again.add_chain(later_dist)
        assert isinstance(released.result, Opened), released.result
        self.assertEqual((released.tag, released.result.message.text), ((12, 34), "held"))

    def test_senderChainRoundTrip(self) -> None:
        """
        Our chain, through its record, seals exactly what it would have.
        """
        a, b = chain(counter=3), chain(counter=3)
        a.seal(b"x", epoch=1, sent_at=0)
        restored = SenderChain.from_record(a.to_record())
        b.seal(b"x", epoch=1, sent_at=0)
        self.assertEqual(restored.seal(b"y", epoch=1, sent_at=0), b.seal(b"y", epoch=1, sent_at=0))


class PropertyTests(unittest.TestCase):
    """
    Properties over arbitrary input (hypothesis): parsing refuses with a
    code and nothing else, and no change to a body opens.
    """

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=300))
    def test_parseArbitraryBytes(self, data: bytes) -> None:
        """
        Any bytes either parse or are refused with a GroupKeyError whose
        code is one of 16.6 (no other exception escapes).
        """
        for parse in (parse_group_message, parse_distribution):
            try:
                parse(data)
            except GroupKeyError as e:
                self.assertIn(e.code, ("malformed", "unsupported-version", "message-too-large"))

    @settings(max_examples=200, deadline=None)
    @given(st.data())
    def test_noChangedBodyOpens(self, data: st.DataObject) -> None:
        """
        A body with any one bit flipped, or cut at any point, never opens:
        it is refused with a code, and the state does not move (the
        original still opens, without a gap).
        """
        alice = chain()
        view = state_for(alice)
        raw = alice.seal(b"the original", epoch=1, sent_at=3).encode()
        if data.draw(st.booleans()):
            bit = data.draw(st.integers(0, len(raw) * 8 - 1))
            changed = bytearray(raw)
            changed[bit // 8] ^= 1 << (bit % 8)
            bad = bytes(changed)
        else:
            bad = raw[:data.draw(st.integers(0, len(raw) - 1))]
        try:
            result = view.receive(parse_group_message(bad))
        except GroupKeyError:
            pass
        else:
            self.assertIsInstance(result, Held)  # a flipped chain id: waits for a chain that never comes
        again = opened(view.receive(parse_group_message(raw)))
        self.assertEqual((again.message.content, again.gap), (b"the original", None))
