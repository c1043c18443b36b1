"""
The relay's side of the mailbox (L{securechat.server.mailbox};
docs/protocol.rst 14.6, 14.7): real clients logged in to a real relay in
memory (L{tests.relay_harness}), on the in-memory store, a held store (to
show acknowledgement after commit) and the SQLite store (durability).
"""

from __future__ import annotations

import os
from typing import Any, Generator

from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial import unittest

from securechat.crypto import keys
from securechat.crypto.prekeys import (
    OneTimePrekey, SignedPrekey, encode_one_time_prekeys, generate_signed_prekey)
from securechat.crypto.receipts import Receipt, receipt_signature_message
from cryptography.hazmat.primitives.asymmetric import ed25519

from securechat.server.directory import UserEntry as DirectoryEntry
from securechat.server.limits import Limits
from securechat.server.mailbox import mailbox_limits
from securechat.server.store import mailbox_store
from securechat.server.store.interface import DAY, IMailboxStore
from securechat.server.store.memory import MemoryMailboxStore
from securechat.wire.mailbox import (
    Bundle, DeleteLetter, FetchBundle, FetchLetter, GetUserKey, Letter, LetterArrived,
    LetterDeleted, LetterEntry, LetterList, LetterRefused, LetterStored, ListLetters, ListUsers,
    NewLetters, PostLetter, PostReceipt, PrekeysLow, PrekeysStored, ReceiptMessage,
    ReceiptStored, SentStatus, StatusList, UploadPrekeys, UserEntry, UserKey, UserList)
from securechat.wire.relay import CommandFailed, Reason
from tests.attack_tools import Canary, assert_fail_closed, connect_raw
from tests.relay_harness import Harness, RecordingClient, user_key


def lid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def signed(user: str, prekey_id: int = 1, key: Any = None) -> SignedPrekey:
    prekey, _ = generate_signed_prekey(user, key or user_key(user), prekey_id, 1000)
    return prekey


def one_time(first: int, count: int) -> bytes:
    return encode_one_time_prekeys(
        [OneTimePrekey(i, bytes([i % 256]) * 32) for i in range(first, first + count)])


def receipt(kind: int, sender: str, letter_id: bytes, signer: str, key: Any = None) -> bytes:
    unsigned = Receipt(kind, b"\x11" * 32, letter_id, sender, signer, 5000, 0, b"")
    scheme, signature = keys.sign(key or user_key(signer),
                                  receipt_signature_message(unsigned.signed_part))
    return Receipt(kind, unsigned.letter_digest, letter_id, sender, signer, 5000, scheme,
                   signature).encode()


class MailboxCase(unittest.TestCase):
    """A harness on the in-memory store, with helpers."""

    limits = Limits()

    def setUp(self) -> None:
        self.h = Harness(self.limits, store=self.make_store())

    def make_store(self) -> Any:
        return None  # the relay's own in-memory store

    def ask(self, client: RecordingClient, *messages: Any) -> list[Any]:
        client.send(*messages)
        self.h.pump()
        return client.take()

    def upload(self, user: str, client: RecordingClient, count: int = 20, prekey_id: int = 1) -> None:
        answer = self.ask(client, UploadPrekeys(signed(user, prekey_id).encode(), one_time(1, count)))
        self.assertEqual(answer, [PrekeysStored(prekey_id, count)])

    def post(self, client: RecordingClient, to: str, n: int, body: bytes = b"sealed") -> Any:
        answer = self.ask(client, PostLetter(to, lid(n), body))
        self.assertEqual(len(answer), 1, answer)
        return answer[0]


class PrekeyTests(MailboxCase):
    """UPLOAD_PREKEYS, FETCH_BUNDLE, GET_USER_KEY and PREKEYS_LOW (14.7)."""

    limits = Limits(max_one_time_prekeys=30, prekey_low_mark=2)

    def test_uploadBadSignature(self) -> None:
        """
        A signed prekey not signed by the uploader's registered key is
        refused whole with BAD_PREKEY, and nothing of the upload is stored.
        """
        bob = self.h.login("bob")
        forged = signed("bob", key=user_key("mallory"))
        answer = self.ask(bob, UploadPrekeys(forged.encode(), one_time(1, 3)))
        self.assertEqual(answer, [CommandFailed(0x50, "bob", Reason.BAD_PREKEY)])
        alice = self.h.login("alice")
        self.assertEqual(self.ask(alice, FetchBundle("bob")),
                         [CommandFailed(0x51, "bob", Reason.NO_PREKEYS)])

    def test_prekeySignedForAnotherUser(self) -> None:
        """
        A prekey signed by the uploader's key but for another owner name is
        BAD_PREKEY (the signature covers the owner).
        """
        bob = self.h.login("bob")
        other = signed("carol", key=user_key("bob"))
        self.assertEqual(self.ask(bob, UploadPrekeys(other.encode(), b"")),
                         [CommandFailed(0x50, "bob", Reason.BAD_PREKEY)])

    def test_uploadOverStock(self) -> None:
        """
        An upload that would leave more than max_one_time_prekeys one-time
        prekeys is refused whole with TOO_LARGE.
        """
        bob = self.h.login("bob")
        self.upload("bob", bob, count=25)
        answer = self.ask(bob, UploadPrekeys(b"", one_time(100, 6)))
        self.assertEqual(answer, [CommandFailed(0x50, "bob", Reason.TOO_LARGE)])
        self.assertEqual(self.ask(bob, UploadPrekeys(b"", one_time(100, 5))),
                         [PrekeysStored(1, 30)])

    def test_uploadWithoutSignedPrekey(self) -> None:
        """One-time prekeys alone, with no signed prekey yet: id 0."""
        bob = self.h.login("bob")
        self.assertEqual(self.ask(bob, UploadPrekeys(b"", one_time(1, 4))), [PrekeysStored(0, 4)])

    def test_bundleClaimsEachOneTimePrekeyOnce(self) -> None:
        """
        Each bundle carries the signed prekey and a different one-time
        prekey; when none is left the bundle carries the signed prekey alone
        (the fallback), and the owner, online, is told its stock is low.
        """
        bob = self.h.login("bob")
        self.upload("bob", bob, count=3)
        alice = self.h.login("alice")
        carol = self.h.login("carol")
        got = []
        for client in (alice, carol, alice, carol):
            [bundle] = self.ask(client, FetchBundle("bob"))
            self.assertIsInstance(bundle, Bundle)
            self.assertEqual(bundle.signed_prekey, signed_bytes := signed_of(bob, self))
            self.assertEqual(bundle.user_key, keys.public_key_der(user_key("bob").public_key()))
            got.append(bundle.one_time_prekey)
        self.assertEqual(len(set(got[:3])), 3)
        self.assertEqual(got[3], b"")
        self.assertTrue(signed_bytes)
        self.assertEqual(bob.of_type(PrekeysLow)[-1], PrekeysLow(0, 1))
        self.assertEqual([m.one_time_count for m in bob.of_type(PrekeysLow)], [1, 0, 0])

    def test_bundleRefusals(self) -> None:
        """FETCH_BUNDLE of an unknown user, a revoked one, one with no prekeys."""
        alice = self.h.login("alice")
        self.h.directory.revoke("carol")
        self.assertEqual(self.ask(alice, FetchBundle("nobody"), FetchBundle("carol"),
                                  FetchBundle("dave")),
                         [CommandFailed(0x51, "nobody", Reason.UNKNOWN_USER),
                          CommandFailed(0x51, "carol", Reason.REVOKED),
                          CommandFailed(0x51, "dave", Reason.NO_PREKEYS)])

    def test_userKeyRevokedFlag(self) -> None:
        """GET_USER_KEY: the key, revoked 1 for a revoked user, UNKNOWN_USER."""
        alice = self.h.login("alice")
        self.h.directory.revoke("carol")
        der = keys.public_key_der(user_key("carol").public_key())
        self.assertEqual(self.ask(alice, GetUserKey("carol"), GetUserKey("nobody")),
                         [UserKey("carol", der, 1),
                          CommandFailed(0x52, "nobody", Reason.UNKNOWN_USER)])

    def test_lowStockAtLogin(self) -> None:
        """
        At login, a user with fewer than prekey_low_mark one-time prekeys
        gets PREKEYS_LOW; a user with none at all (no mailbox) gets nothing.
        """
        bob = self.h.login("bob")
        self.upload("bob", bob, count=1)
        bob.protocol.transport.loseConnection()
        self.h.pump()
        again, _ = self.h.connect("bob")
        self.h.pump()
        self.assertEqual(again.messages[1:], [PrekeysLow(1, 1)])
        carol, _ = self.h.connect("carol")
        self.h.pump()
        self.assertEqual(len(carol.messages), 1)  # WELCOME only

    def test_signedPrekeyRotatedWithLettersInFlight(self) -> None:
        """
        A letter sealed to the previous signed prekey, posted after the
        owner rotated it, is still stored and served; new bundles carry the
        new signed prekey; the store keeps the previous one for its grace.
        """
        bob = self.h.login("bob")
        self.upload("bob", bob, count=2, prekey_id=1)
        alice = self.h.login("alice")
        [old] = self.ask(alice, FetchBundle("bob"))
        self.assertEqual(SignedPrekey.parse(old.signed_prekey).prekey_id, 1)
        self.assertEqual(bob.take(), [PrekeysLow(1, 1)])
        self.assertEqual(self.ask(bob, UploadPrekeys(signed("bob", 2).encode(), b"")),
                         [PrekeysStored(2, 1)])
        self.assertIsInstance(self.post(alice, "bob", 1), LetterStored)
        [new] = self.ask(alice, FetchBundle("bob"))
        self.assertEqual(SignedPrekey.parse(new.signed_prekey).prekey_id, 2)
        kept = self.successResultOf(self.h.relay.mailbox.store.signed_prekeys("bob"))
        self.assertEqual([p.prekey_id for p in kept], [2, 1])
        bob.take()
        [letter] = self.ask(bob, FetchLetter("alice", lid(1)))
        self.assertEqual(letter.letter, b"sealed")


    def test_reusedSignedPrekeyIdReplaces(self) -> None:
        """
        14.7: a signed prekey with the current one's id but another key (a
        client that lost its data and starts its ids at 1 again) is not
        refused: it takes the current one's place and bundles carry it, so
        the client is not locked out; the same upload again changes nothing.
        """
        bob = self.h.login("bob")
        self.upload("bob", bob, count=3, prekey_id=1)
        other = signed("bob", prekey_id=1)
        self.assertEqual(self.ask(bob, UploadPrekeys(other.encode(), b"")), [PrekeysStored(1, 3)])
        self.assertEqual(signed_of(bob, self), other.encode())
        self.assertEqual(self.ask(bob, UploadPrekeys(other.encode(), b"")), [PrekeysStored(1, 3)])
        alice = self.h.login("alice")
        [bundle] = self.ask(alice, FetchBundle("bob"))
        self.assertEqual(bundle.signed_prekey, other.encode())

    def rekey(self, name: str) -> ed25519.Ed25519PrivateKey:
        """What C{securechat-admin rekey} does to the relay's directory."""
        new = ed25519.Ed25519PrivateKey.generate()
        self.h.directory.add(DirectoryEntry(name, new.public_key()))
        return new

    def test_rekeyedUserPrekeysNotHandedOut(self) -> None:
        """
        14.7, re-keyed users: prekeys signed by a user's old key are never
        handed out; the first FETCH_BUNDLE after the change drops them all
        (one-time ones too) and answers NO_PREKEYS.  Prekeys the user then
        uploads, signed by its new key, are handed out.
        """
        bob = self.h.login("bob")
        self.upload("bob", bob, count=3)
        bob.protocol.transport.loseConnection()
        self.h.pump()
        new = self.rekey("bob")
        alice = self.h.login("alice")
        self.assertEqual(self.ask(alice, FetchBundle("bob")),
                         [CommandFailed(0x51, "bob", Reason.NO_PREKEYS)])
        store = self.h.relay.mailbox.store
        self.assertEqual(self.successResultOf(store.prekey_count("bob")), 0)
        self.assertEqual(self.successResultOf(store.signed_prekeys("bob")), [])
        again, _ = self.h.connect("bob", key=new)
        self.h.pump()
        again.take()
        fresh = signed("bob", prekey_id=2, key=new)
        self.assertEqual(self.ask(again, UploadPrekeys(fresh.encode(), one_time(1, 3))),
                         [PrekeysStored(2, 3)])
        [bundle] = self.ask(alice, FetchBundle("bob"))
        self.assertEqual(bundle.signed_prekey, fresh.encode())
        self.assertEqual(bundle.user_key, keys.public_key_der(new.public_key()))

    def test_rekeyedUserToldAtLogin(self) -> None:
        """
        14.7, re-keyed users: a user logging in with its new key while the
        relay holds prekeys signed by the old one has them dropped and gets
        PREKEYS_LOW(0, 0) (it had prekeys, so it has a mailbox client).
        """
        bob = self.h.login("bob")
        self.upload("bob", bob, count=20)
        bob.protocol.transport.loseConnection()
        self.h.pump()
        new = self.rekey("bob")
        again, _ = self.h.connect("bob", key=new)
        self.h.pump()
        self.assertTrue(again.logged_in)
        self.assertEqual(again.messages[1:], [PrekeysLow(0, 0)])
        store = self.h.relay.mailbox.store
        self.assertEqual(self.successResultOf(store.prekey_count("bob")), 0)
        self.assertEqual(self.successResultOf(store.signed_prekeys("bob")), [])

    def test_signedPrekeyVerifiedOnceAcrossLogins(self) -> None:
        """
        The signed prekey is verified at a user's first login, not again
        while the record and the user's key are the same; a re-key is still
        caught at the next login (prekeys dropped, PREKEYS_LOW(0, 0)).
        """
        import securechat.server.prekeycheck as prekeycheck_module
        checked: list[str] = []
        real = prekeycheck_module.verify_signed_prekey

        def counting(user: str, *args: Any) -> None:
            checked.append(user)
            real(user, *args)
        self.patch(prekeycheck_module, "verify_signed_prekey", counting)
        bob = self.h.login("bob")
        self.upload("bob", bob, count=20)
        for _ in range(3):
            bob.protocol.transport.loseConnection()
            self.h.pump()
            bob, _ = self.h.connect("bob")
            self.h.pump()
            self.assertEqual(bob.messages[1:], [])
        self.assertEqual(checked, ["bob"])
        bob.protocol.transport.loseConnection()
        self.h.pump()
        new = self.rekey("bob")
        again, _ = self.h.connect("bob", key=new)
        self.h.pump()
        self.assertEqual(again.messages[1:], [PrekeysLow(0, 0)])
        self.assertEqual(checked, ["bob", "bob"])


def signed_of(client: RecordingClient, test: MailboxCase) -> bytes:
    """The signed prekey the relay holds for C{client}, as encoded."""
    store = test.h.relay.mailbox.store
    [record] = test.successResultOf(store.signed_prekeys(client.name))
    from securechat.server.prekeycheck import uploaded_encoding
    return uploaded_encoding(record)


class NoCyclicGarbageTests(MailboxCase):
    """
    An answered command is freed by reference counting, not left to the
    cyclic garbage collector (which cost the relay a fifth of its CPU
    under the mailbox benchmark, issue 20).
    """

    limits = Limits(letter_rate=1e6, letter_burst=10**6)

    def test_answeredLettersLeaveNoCycles(self) -> None:
        """
        Ten POST_LETTERs answered (and their LETTER_ARRIVED notices) leave
        nothing for C{gc.collect} to find: the answer order lets go of a
        command's start function once it runs, breaking the cycle slot ->
        start -> answered -> slot.
        """
        import gc
        alice, bob = self.h.login("alice"), self.h.login("bob")
        self.ask(alice, *[PostLetter("bob", lid(n), b"x") for n in range(3)])  # warm-up
        gc.collect()
        gc.disable()
        self.addCleanup(gc.enable)
        answers = self.ask(alice, *[PostLetter("bob", lid(n), b"x") for n in range(3, 13)])
        self.assertEqual([type(a) for a in answers], [LetterStored] * 10)
        self.assertEqual(len(bob.take()), 13)
        del answers
        self.assertEqual(gc.collect(), 0)


class LetterTests(MailboxCase):
    """POST_LETTER in the order of 14.7, and reading."""

    limits = Limits(max_letter=1000, mailbox_letters=3, mailbox_bytes=2500, letter_rate=0.1,
                    letter_burst=5, expiry_days=2)

    def test_recipientOfflineThenOnline(self) -> None:
        """
        A letter to an offline user is stored and acknowledged with its
        times; at login the recipient is told how many letters are new,
        lists them, fetches one (now state fetched), and lists none new.
        """
        alice = self.h.login("alice")
        self.h.clock.advance(100)
        self.assertEqual(self.post(alice, "bob", 1, b"x" * 10),
                         LetterStored("bob", lid(1), 100, 100 + 2 * DAY))
        bob, _ = self.h.connect("bob")
        self.h.pump()
        self.assertEqual(bob.messages[1:], [NewLetters(1)])
        bob.take()
        self.assertEqual(self.ask(bob, ListLetters(0, 0)),
                         [LetterList((LetterEntry("alice", lid(1), 100, 10, 0),), 1)])
        self.assertEqual(self.ask(bob, FetchLetter("alice", lid(1))),
                         [Letter("alice", lid(1), 100, 100 + 2 * DAY, b"x" * 10)])
        self.assertEqual(self.ask(bob, ListLetters(0, 0)), [LetterList((), 0)])
        self.assertEqual(self.ask(bob, ListLetters(1, 0)),
                         [LetterList((LetterEntry("alice", lid(1), 100, 10, 1),), 1)])

    def test_letterArrivedWhileOnline(self) -> None:
        """An online recipient gets LETTER_ARRIVED once the letter is stored."""
        alice, bob = self.h.login("alice"), self.h.login("bob")
        self.post(alice, "bob", 1, b"abc")
        self.assertEqual(bob.take(), [LetterArrived("alice", lid(1), 0, 3)])

    def test_duplicateStoredOnceSameAnswer(self) -> None:
        """
        A resend with the same (sender, id) is answered with the first
        stored and expiry times, and the mailbox holds one letter.
        """
        alice = self.h.login("alice")
        first = self.post(alice, "bob", 1, b"first")
        self.h.clock.advance(50)
        self.assertEqual(self.post(alice, "bob", 1, b"other bytes"), first)
        bob = self.h.login("bob")
        [listing] = self.ask(bob, ListLetters(1, 0))
        self.assertEqual(listing.total, 1)
        [letter] = self.ask(bob, FetchLetter("alice", lid(1)))
        self.assertEqual(letter.letter, b"first")

    def test_duplicateNeverRefusedByLaterChecks(self) -> None:
        """
        A resend of a stored letter is LETTER_STORED even when the
        recipient was revoked since, or the sender is over its rate.
        """
        alice = self.h.login("alice")
        first = self.post(alice, "bob", 1)
        for n, to in enumerate(("carol", "dave", "eve", "frank"), start=2):
            self.assertIsInstance(self.post(alice, to, n), LetterStored)
        self.assertEqual(self.post(alice, "carol", 6), LetterRefused("carol", lid(6),
                                                                     Reason.RATE_LIMITED))
        self.assertEqual(self.post(alice, "bob", 1), first)
        self.h.directory.revoke("bob")
        self.assertEqual(self.post(alice, "bob", 1), first)

    def test_reusedIdToAnotherRecipientAnsweredAsFirst(self) -> None:
        """
        14.7 step 2: a POST_LETTER reusing a stored ``(sender, letter_id)``
        is answered with the first answer, naming the first recipient,
        whether or not the sender is over its rate; nothing reaches the
        other recipient (the relay does not claim a letter to it stored).
        """
        alice, carol = self.h.login("alice"), self.h.login("carol")
        first = self.post(alice, "bob", 1)
        self.assertEqual(self.post(alice, "carol", 1, b"other"), first)
        for n in range(2, 5):
            self.post(alice, "dave", n)
        self.assertEqual(self.post(alice, "eve", 9), LetterRefused("eve", lid(9), Reason.RATE_LIMITED))
        self.assertEqual(self.post(alice, "carol", 1, b"other"), first)
        self.assertEqual(carol.take(), [])
        [listing] = self.ask(carol, ListLetters(1, 0))
        self.assertEqual(listing.total, 0)

    def test_unknownAndRevokedRecipient(self) -> None:
        """UNKNOWN_USER for a name never registered, REVOKED for a revoked one."""
        alice = self.h.login("alice")
        self.h.directory.revoke("bob")
        self.assertEqual(self.post(alice, "nobody", 1),
                         LetterRefused("nobody", lid(1), Reason.UNKNOWN_USER))
        self.assertEqual(self.post(alice, "bob", 2), LetterRefused("bob", lid(2), Reason.REVOKED))
        self.assertEqual(self.h.relay.metrics.letters_refused.labels("revoked")._value.get(), 1)

    def test_recipientRevokedAfterStored(self) -> None:
        """
        A letter stored before its recipient was revoked stays in the
        sender's status; the recipient is no longer listed, and its key
        still answers with revoked 1.
        """
        alice = self.h.login("alice")
        self.post(alice, "bob", 1)
        self.h.directory.revoke("bob")
        [status] = self.ask(alice, SentStatus(0))
        self.assertEqual([e.recipient for e in status.letters], ["bob"])
        [users] = self.ask(alice, ListUsers(0))
        self.assertNotIn("bob", [u.user for u in users.users])
        [key] = self.ask(alice, GetUserKey("bob"))
        self.assertEqual(key.revoked, 1)

    def test_tooLarge(self) -> None:
        """A letter over --max-letter is TOO_LARGE; one of exactly that size is stored."""
        alice = self.h.login("alice")
        self.assertEqual(self.post(alice, "bob", 1, b"x" * 1001),
                         LetterRefused("bob", lid(1), Reason.TOO_LARGE))
        self.assertIsInstance(self.post(alice, "bob", 2, b"x" * 1000), LetterStored)

    def test_rateExceeded(self) -> None:
        """
        Past its burst a sender is RATE_LIMITED, and may post again once
        its rate allows.
        """
        alice = self.h.login("alice")
        for n, to in enumerate(("bob", "carol", "dave", "eve", "frank")):
            self.assertIsInstance(self.post(alice, to, n), LetterStored)
        self.assertEqual(self.post(alice, "dave", 9),
                         LetterRefused("dave", lid(9), Reason.RATE_LIMITED))
        self.h.clock.advance(10)
        self.assertIsInstance(self.post(alice, "dave", 9), LetterStored)

    def test_mailboxFullSpendsRateToken(self) -> None:
        """
        14.7 step 4: every letter that reaches the rate check spends a
        token, whatever follows: letters refused as MAILBOX_FULL count
        (each cost the relay a transaction); letters refused earlier
        (TOO_LARGE, UNKNOWN_USER) do not.
        """
        alice = self.h.login("alice")
        for n in range(3):
            self.assertIsInstance(self.post(alice, "bob", n), LetterStored)
        self.post(alice, "nobody", 7)
        self.post(alice, "carol", 8, b"x" * 1001)
        self.assertEqual(self.post(alice, "bob", 3),
                         LetterRefused("bob", lid(3), Reason.MAILBOX_FULL))
        self.assertEqual(self.post(alice, "bob", 4),
                         LetterRefused("bob", lid(4), Reason.MAILBOX_FULL))
        self.assertEqual(self.post(alice, "carol", 5),
                         LetterRefused("carol", lid(5), Reason.RATE_LIMITED))

    def test_deliveredAtIsTheReceiptsTime(self) -> None:
        """
        14.6: SENT_STATUS's ``delivered_at`` is the relay's clock when the
        delivery receipt was stored, not when the letter was fetched; 0
        after a fetch with no receipt yet.
        """
        alice, bob = self.h.login("alice"), self.h.login("bob")
        self.post(alice, "bob", 1)
        self.h.clock.advance(10)
        self.ask(bob, FetchLetter("alice", lid(1)))
        [status] = self.ask(alice, SentStatus(0))
        self.assertEqual(status.letters[0].delivered_at, 0)
        self.h.clock.advance(15)
        self.ask(bob, PostReceipt("alice", lid(1), receipt(1, "alice", lid(1), "bob")))
        alice.take()
        [status] = self.ask(alice, SentStatus(0))
        self.assertEqual(status.letters[0].delivered_at, 25)

    def test_mailboxFullLetters(self) -> None:
        """A recipient at its letter quota: MAILBOX_FULL."""
        alice = self.h.login("alice")
        for n in range(3):
            self.post(alice, "bob", n)
        self.assertEqual(self.post(alice, "bob", 3),
                         LetterRefused("bob", lid(3), Reason.MAILBOX_FULL))

    def test_mailboxFullBytes(self) -> None:
        """A recipient whose bytes quota the new letter would pass: MAILBOX_FULL."""
        alice = self.h.login("alice")
        self.post(alice, "bob", 1, b"x" * 1000)
        self.post(alice, "bob", 2, b"x" * 1000)
        self.assertEqual(self.post(alice, "bob", 3, b"x" * 501),
                         LetterRefused("bob", lid(3), Reason.MAILBOX_FULL))
        self.assertIsInstance(self.post(alice, "bob", 4, b"x" * 500), LetterStored)

    def test_expiry(self) -> None:
        """
        Past expires_at a letter is neither listed, fetched nor in the
        sender's status.
        """
        alice = self.h.login("alice")
        self.post(alice, "bob", 1)
        self.h.clock.advance(2 * DAY - 1)
        bob = self.h.login("bob")
        self.assertEqual(self.ask(bob, ListLetters(1, 0))[0].total, 1)
        self.h.clock.advance(1)
        self.assertEqual(self.ask(bob, ListLetters(1, 0)), [LetterList((), 0)])
        self.assertEqual(self.ask(bob, FetchLetter("alice", lid(1))),
                         [CommandFailed(0x55, "alice", Reason.NO_LETTER)])
        self.assertEqual(self.ask(bob, SentStatus(0)), [StatusList((), 0)])
        alice = self.h.login("alice")  # its session timed out meanwhile
        self.assertEqual(self.ask(alice, SentStatus(0)), [StatusList((), 0)])

    def test_deleteKeepsSenderStatus(self) -> None:
        """
        DELETE_LETTER removes the letter (a second delete is NO_LETTER);
        the sender's status stays.
        """
        alice, bob = self.h.login("alice"), self.h.login("bob")
        self.post(alice, "bob", 1)
        bob.take()
        self.assertEqual(self.ask(bob, DeleteLetter("alice", lid(1)), DeleteLetter("alice", lid(1)),
                                  FetchLetter("alice", lid(1))),
                         [LetterDeleted("alice", lid(1)),
                          CommandFailed(0x56, "alice", Reason.NO_LETTER),
                          CommandFailed(0x55, "alice", Reason.NO_LETTER)])
        [status] = self.ask(alice, SentStatus(0))
        self.assertEqual(status.total, 1)

    def test_lettersOfOthersNotServed(self) -> None:
        """A user cannot fetch or delete a letter addressed to someone else."""
        alice, carol = self.h.login("alice"), self.h.login("carol")
        self.post(alice, "bob", 1)
        self.assertEqual(self.ask(carol, FetchLetter("alice", lid(1)), DeleteLetter("alice", lid(1))),
                         [CommandFailed(0x55, "alice", Reason.NO_LETTER),
                          CommandFailed(0x56, "alice", Reason.NO_LETTER)])

    def test_listNewestFirstAndPaged(self) -> None:
        """Letters are listed newest first; offset skips; total counts all."""
        alice = self.h.login("alice")
        for n in range(3):
            self.h.clock.advance(1)
            self.post(alice, "bob", n)
        bob = self.h.login("bob")
        [listing] = self.ask(bob, ListLetters(1, 1))
        self.assertEqual([e.letter_id for e in listing.letters], [lid(1), lid(0)])
        self.assertEqual(listing.total, 3)


class ReceiptTests(MailboxCase):
    """POST_RECEIPT, RECEIPT and SENT_STATUS."""

    def test_receiptsStoredForwardedAndInStatus(self) -> None:
        """
        A delivery and a read receipt are stored with the letter's status,
        passed to the online sender as posted, and shown in SENT_STATUS
        with the relay's times; a repeat changes nothing.
        """
        alice, bob = self.h.login("alice"), self.h.login("bob")
        self.post(alice, "bob", 1)
        bob.take()
        self.h.clock.advance(10)
        self.ask(bob, FetchLetter("alice", lid(1)))
        delivery = receipt(1, "alice", lid(1), "bob")
        self.assertEqual(self.ask(bob, PostReceipt("alice", lid(1), delivery)),
                         [ReceiptStored("alice", lid(1), 1)])
        self.assertEqual(alice.take(), [ReceiptMessage("bob", lid(1), delivery)])
        self.h.clock.advance(10)
        read = receipt(2, "alice", lid(1), "bob")
        self.assertEqual(self.ask(bob, PostReceipt("alice", lid(1), read)),
                         [ReceiptStored("alice", lid(1), 2)])
        self.ask(bob, PostReceipt("alice", lid(1), receipt(2, "alice", lid(1), "bob",
                                                          key=user_key("bob"))))
        self.assertEqual(len(alice.take()), 2)  # the read receipt, and its repeat
        [status] = self.ask(alice, SentStatus(0))
        [entry] = status.letters
        self.assertEqual((entry.delivered_at, entry.read_at), (10, 20))
        self.assertEqual((entry.delivery_receipt, entry.read_receipt), (delivery, read))
        [listing] = self.ask(bob, ListLetters(1, 0))
        self.assertEqual(listing.letters[0].state, 2)

    def test_badReceipts(self) -> None:
        """
        A receipt signed (it says) by someone else, naming another letter,
        or unparsable is BAD_RECEIPT; one for a letter the poster never got
        is NO_LETTER.
        """
        alice, bob = self.h.login("alice"), self.h.login("bob")
        self.post(alice, "bob", 1)
        bob.take()
        self.assertEqual(self.ask(
            bob,
            PostReceipt("alice", lid(1), receipt(1, "alice", lid(1), "carol")),
            PostReceipt("alice", lid(1), receipt(1, "alice", lid(2), "bob")),
            PostReceipt("alice", lid(1), b"\x01\x01junk"),
            PostReceipt("alice", lid(7), receipt(1, "alice", lid(7), "bob"))),
            [CommandFailed(0x57, "alice", Reason.BAD_RECEIPT),
             CommandFailed(0x57, "alice", Reason.BAD_RECEIPT),
             CommandFailed(0x57, "alice", Reason.BAD_RECEIPT),
             CommandFailed(0x57, "alice", Reason.NO_LETTER)])
        self.assertEqual(alice.take(), [])


class UserListTests(MailboxCase):
    """LIST_USERS and list cutting."""

    def test_listUsers(self) -> None:
        """
        Every registered user not revoked, in byte order, online flagged.
        """
        alice = self.h.login("alice")
        self.h.login("carol")
        self.h.directory.revoke("dave")
        [users] = self.ask(alice, ListUsers(0))
        expected = [UserEntry(n, 1 if n in ("alice", "carol") else 0) for n in
                    ("alice", "bob", "carol", "eve", "frank", "grace", "heidi", "ivan", "judy")]
        self.assertEqual(users, UserList(tuple(expected), 9))
        [paged] = self.ask(alice, ListUsers(7))
        self.assertEqual([u.user for u in paged.users], ["ivan", "judy"])


class CutListTests(MailboxCase):
    """Lists cut to max_payload (14.7)."""

    limits = Limits(max_frame=1024)

    def test_letterListCut(self) -> None:
        """
        A list longer than max_payload is cut to the longest prefix that
        fits; total counts all, so the client pages with offset.
        """
        alice = self.h.login("alice")
        for n in range(40):
            self.post(alice, "bob", n)
        bob = self.h.login("bob")
        [listing] = self.ask(bob, ListLetters(1, 0))
        self.assertEqual(listing.total, 40)
        self.assertLess(len(listing.letters), 40)
        self.assertLessEqual(len(listing.encode_body()), self.limits.max_payload)
        [rest] = self.ask(bob, ListLetters(1, len(listing.letters)))
        self.assertEqual(len(listing.letters) + len(rest.letters),
                         min(40, 2 * len(listing.letters)))


class HeldStore:
    """
    An in-memory store whose letter commits are held until the test fires
    them (a transaction not yet committed), or fail.
    """

    def __init__(self, inner: IMailboxStore) -> None:
        self.inner = inner
        self.held: list[tuple[Deferred[Any], Any]] = []
        self.fail_next = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def store_letters(self, letters: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.held.append((d, letters))
        return d

    def commit(self) -> None:
        held, self.held = self.held, []
        for d, letters in held:
            if self.fail_next:
                d.errback(OSError("disk I/O error"))
            else:
                self.inner.store_letters(letters).chainDeferred(d)


class CommitTests(MailboxCase):
    """Acknowledgement only after commit; answers in order; a failing store."""

    def make_store(self) -> Any:
        self.store = HeldStore(MemoryMailboxStore(self.clock(), mailbox_limits(self.limits)))
        return self.store

    def clock(self) -> Any:
        from twisted.internet.task import Clock
        return Clock()

    def test_ackOnlyAfterCommit(self) -> None:
        """
        No LETTER_STORED (and no LETTER_ARRIVED) while the commit is held;
        both once it fires.
        """
        alice, bob = self.h.login("alice"), self.h.login("bob")
        self.assertEqual(self.ask(alice, PostLetter("bob", lid(1), b"x")), [])
        self.assertEqual(bob.take(), [])
        self.store.commit()
        self.h.pump()
        [stored] = alice.take()
        self.assertIsInstance(stored, LetterStored)
        self.assertEqual(bob.take(), [LetterArrived("alice", lid(1), 0, 1)])
        samples = {x.name: x.value for x in
                   self.h.relay.metrics.letter_ack_latency.family().samples}
        self.assertEqual(samples["securechat_letter_ack_seconds_count"], 1)
        self.assertEqual(self.h.relay.metrics.letters_stored, 1)

    def test_answersInOrder(self) -> None:
        """
        A LIST_USERS sent after a POST_LETTER whose commit is held is
        answered after LETTER_STORED, though it was ready first.
        """
        alice = self.h.login("alice")
        self.assertEqual(self.ask(alice, PostLetter("bob", lid(1), b"x"), ListUsers(0)), [])
        self.store.commit()
        self.h.pump()
        self.assertEqual([type(m) for m in alice.take()], [LetterStored, UserList])

    def test_laterCommandSeesEarlierEffects(self) -> None:
        """
        A FETCH_LETTER sent after a POST_LETTER (to oneself) whose commit is
        held starts only once that commit fired, so it finds the letter;
        letters posted together are in the store at once, by one store call
        (the letters a read starts go to the group commit together).
        """
        alice = self.h.login("alice")
        self.assertEqual(self.ask(alice, PostLetter("alice", lid(1), b"x"),
                                  PostLetter("alice", lid(2), b"y"),
                                  FetchLetter("alice", lid(1))), [])
        self.assertEqual([[n.letter_id for n in letters] for _, letters in self.store.held],
                         [[lid(1), lid(2)]])
        self.store.commit()
        self.h.pump()
        self.assertEqual([type(m) for m in alice.take() if not isinstance(m, LetterArrived)],
                         [LetterStored, LetterStored, Letter])

    def test_storeFailureClosesOneConnection(self) -> None:
        """
        A commit that fails closes that connection with INTERNAL_ERROR (the
        client resends what was not acknowledged); others carry on.
        """
        canary = Canary(self.h)
        alice = self.h.login("alice")
        self.ask(alice, PostLetter("bob", lid(1), b"x"))
        self.store.fail_next = True
        self.store.commit()
        self.h.pump()
        self.flushLoggedErrors(OSError)
        self.assertTrue(alice.ended)
        self.assertEqual(alice.error.code, "peer-alert")
        self.assertIn("INTERNAL_ERROR", alice.error.detail)
        self.assertEqual(alice.of_type(LetterStored), [])
        self.flushLoggedErrors(OSError)
        canary.check(self)

    def test_storeFailureOfARunClosesOnce(self) -> None:
        """
        Three letters of one read share one store call; when it fails, the
        connection is closed once (one failure logged, not three), and
        none is acknowledged.
        """
        alice = self.h.login("alice")
        self.ask(alice, PostLetter("bob", lid(1), b"x"), PostLetter("bob", lid(2), b"y"),
                 PostLetter("bob", lid(3), b"z"))
        self.assertEqual(len(self.store.held), 1)
        self.store.fail_next = True
        self.store.commit()
        self.h.pump()
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertTrue(alice.ended)
        self.assertIn("INTERNAL_ERROR", alice.error.detail)
        self.assertEqual(alice.of_type(LetterStored), [])


class MalformedMailboxMessages(MailboxCase):
    """
    Malformed mailbox messages close that one connection with the codec's
    specific error (as the chat messages do); a canary chat carries on.
    """

    def inner(self, code: int, body: bytes) -> bytes:
        return bytes([code]) + len(body).to_bytes(4, "big") + body

    def test_malformed(self) -> None:
        """
        Cut, padded, out-of-rule and relay-to-client mailbox messages each
        fail closed with their error.
        """
        canary = Canary(self.h)
        post = PostLetter("bob", lid(1), b"x").encode_body()
        cases = [
            (self.inner(0x53, post[:-1]), "truncated"),
            (self.inner(0x53, post + b"\x00"), "trailing-bytes"),
            (self.inner(0x54, b"\x02" + bytes(8)), "bad-value"),
            (self.inner(0x50, b"\x00\x00" + b"\x00\x05" + bytes(5)), "bad-value"),
            (self.inner(0x50, b"\x00\x00" + b"\x00\x48" + one_time(1, 1) * 2), "bad-value"),
            (self.inner(0x55, b"\x05alice" + bytes(15)), "truncated"),
            (self.inner(0x60, bytes(12)), "unknown-type"),
            (self.inner(0x6F, b""), "unknown-type"),
        ]
        for frame, code in cases:
            raw, server, _ = connect_raw(self.h)
            raw.login("alice")
            self.h.pump()
            online = set(self.h.relay.sessions) - {"alice"}
            raw.write(raw.seal(frame))
            self.h.pump()
            assert_fail_closed(self, self.h, server, code, canary, online)


class CountingStore:
    """
    An in-memory store that records the name of every method the relay
    calls on it.
    """

    def __init__(self, inner: IMailboxStore) -> None:
        self.inner = inner
        self.called: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if not callable(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            self.called.append(name)
            return method(*args, **kwargs)
        return call


class LoginStoreCallTests(MailboxCase):
    """
    At login the relay asks the store once (login_state) for everything it
    tells the user (14.7: NEW_LETTERS, then PREKEYS_LOW).
    """

    limits = Limits(prekey_low_mark=5)

    def make_store(self) -> Any:
        from twisted.internet.task import Clock
        self.store = CountingStore(MemoryMailboxStore(Clock(), mailbox_limits(self.limits)))
        return self.store

    def test_oneStoreCallAtLogin(self) -> None:
        """
        A user with new letters and a low stock gets NEW_LETTERS then
        PREKEYS_LOW, from one store call; a user without a mailbox gets
        WELCOME only, also from one.
        """
        bob = self.h.login("bob")
        self.upload("bob", bob, count=2)
        bob.protocol.transport.loseConnection()
        alice = self.h.login("alice")
        self.post(alice, "bob", 1)
        self.post(alice, "bob", 2)
        del self.store.called[:]
        again, _ = self.h.connect("bob")
        self.h.pump()
        self.assertEqual(again.messages[1:], [NewLetters(2), PrekeysLow(2, 1)])
        self.assertEqual(self.store.called, ["login_state"])
        del self.store.called[:]
        carol, _ = self.h.connect("carol")
        self.h.pump()
        self.assertEqual(len(carol.messages), 1)  # WELCOME only
        self.assertEqual(self.store.called, ["login_state"])


class SQLiteRelayTests(unittest.TestCase):
    """
    The relay on the SQLite store: a letter acknowledged is there after the
    store is closed and opened again (a restart).
    """

    timeout = 20

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)

    def harness(self) -> tuple[Harness, list[Deferred[Any]]]:
        from tests.test_store import SteppedClock
        clock = SteppedClock(global_reactor)
        store = mailbox_store(self.dir, clock, mailbox_limits(Limits()))
        calls: list[Deferred[Any]] = []

        class Watched:
            def __getattr__(self, name: str) -> Any:
                method = getattr(store, name)

                def call(*args: Any) -> Any:
                    d = method(*args)
                    calls.append(d)
                    return d
                return call
        self.addCleanup(store.close)
        #: The SQLite store's transactions, by description.
        self.transactions: list[str] = []
        real = store.db.runInteraction  # type: ignore[attr-defined]

        def recorded(description: str, *args: Any) -> Deferred[Any]:
            self.transactions.append(description)
            return real(description, *args)  # type: ignore[no-any-return]
        store.db.runInteraction = recorded  # type: ignore[attr-defined]
        return Harness(store=Watched()), calls

    @inlineCallbacks
    def settle(self, h: Harness, calls: list[Deferred[Any]]) -> Generator[Any, Any, None]:
        """Wait for every store call so far (and those they lead to)."""
        while calls:
            d = calls.pop(0)
            waiter: Deferred[None] = Deferred()
            d.addBoth(lambda result: (waiter.callback(None), result)[1])
            yield waiter
            h.pump()

    @inlineCallbacks
    def test_acknowledgedLetterSurvivesRestart(self) -> Generator[Any, Any, None]:
        """
        LETTER_STORED comes once the SQLite commit has happened; after a
        restart the letter is there once, a resend is answered with the
        first times, and the recipient is told at login.
        """
        h, calls = self.harness()
        alice = h.login("alice")
        alice.send(PostLetter("bob", lid(1), b"sealed"))
        h.pump()
        yield self.settle(h, calls)
        [stored] = alice.of_type(LetterStored)
        yield h.relay.mailbox.store.close()

        h2, calls2 = self.harness()
        alice2 = h2.login("alice")
        alice2.send(PostLetter("bob", lid(1), b"sealed"))
        h2.pump()
        yield self.settle(h2, calls2)
        self.assertEqual(alice2.of_type(LetterStored), [stored])
        bob, _ = h2.connect("bob")
        h2.pump()
        yield self.settle(h2, calls2)
        self.assertEqual(bob.of_type(NewLetters), [NewLetters(1)])
        bob.send(FetchLetter("alice", lid(1)))
        h2.pump()
        yield self.settle(h2, calls2)
        self.assertEqual([m.letter for m in bob.of_type(Letter)], [b"sealed"])

    @inlineCallbacks
    def test_firstLetterWhileOfflineToldAtLogin(self) -> Generator[Any, Any, None]:
        """
        A user that never used the mailbox logs in without a transaction
        (WELCOME only), goes offline, gets its first letter, and is told
        NEW_LETTERS(1) at its next login, and again after a restart.
        """
        h, calls = self.harness()
        bob, _ = h.connect("bob")
        h.pump()
        yield self.settle(h, calls)
        self.assertTrue(bob.logged_in)
        self.assertEqual(len(bob.messages), 1)  # WELCOME only
        self.assertEqual(self.transactions, [])
        bob.protocol.transport.loseConnection()
        h.pump()
        alice = h.login("alice")
        alice.send(PostLetter("bob", lid(1), b"sealed"))
        h.pump()
        yield self.settle(h, calls)
        self.assertEqual(len(alice.of_type(LetterStored)), 1)
        again, _ = h.connect("bob")
        h.pump()
        yield self.settle(h, calls)
        self.assertEqual(again.messages[1:], [NewLetters(1)])
        self.assertEqual(self.transactions, ["store-letters", "login-state"])
        yield h.relay.mailbox.store.close()

        h2, calls2 = self.harness()
        bob2, _ = h2.connect("bob")
        h2.pump()
        yield self.settle(h2, calls2)
        self.assertEqual(bob2.messages[1:], [NewLetters(1)])




class ServiceWiringTests(unittest.TestCase):
    """The service tree opens, purges and closes the mailbox store."""

    timeout = 20

    @inlineCallbacks
    def test_purgeTimerAndCloseOnStop(self) -> Generator[Any, Any, None]:
        """
        The tree holds the purge timer; stopping the service closes the
        store (a closed store refuses further work).
        """
        from twisted.internet.task import Clock

        from securechat.server.service import relay_service
        from securechat.server.store.interface import StoreError
        path = os.path.join(self.mktemp(), "data")
        service = relay_service(path, [], None, Limits(), clock=Clock())
        self.assertEqual(service.getServiceNamed("mailbox-purge").step, 15 * 60)
        self.assertIs(service.relay.mailbox.store, service.store)
        service.startService()
        yield service.stopService()
        failure = self.failureResultOf(service.store.prekey_count("alice"), StoreError)
        self.assertIn("closed", failure.getErrorMessage())

    @inlineCallbacks
    def test_unusableMailboxFile(self) -> Generator[Any, Any, None]:
        """
        A mailbox file that is not a database stops start-up with one line
        naming it.
        """
        from twisted.internet.task import Clock

        from securechat.server.service import StartupError, relay_service
        from securechat.server.store import MAILBOX_FILE
        path = os.path.join(self.mktemp(), "data")
        service = relay_service(path, [], None, Limits(), clock=Clock())
        yield service.store.close()
        mailbox = os.path.join(path, MAILBOX_FILE)
        with open(mailbox, "wb") as f:
            f.write(b"this is not a database" * 100)
        e = self.assertRaises(StartupError, relay_service, path, [], None, Limits(), clock=Clock())
        self.assertIn("cannot use the mailbox", str(e))
        self.assertIn(MAILBOX_FILE, str(e))
        self.assertNotIn("\n", str(e))

    @inlineCallbacks
    def test_unreadableGroupTables(self) -> Generator[Any, Any, None]:
        """
        A mailbox file whose group tables cannot be read (the group store
        reads its members when it opens) stops start-up with one line
        naming the file and the table.
        """
        import sqlite3

        from twisted.internet.task import Clock

        from securechat.server.service import StartupError, relay_service
        from securechat.server.store import MAILBOX_FILE
        path = os.path.join(self.mktemp(), "data")
        service = relay_service(path, [], None, Limits(), clock=Clock())
        yield service.store.close()
        conn = sqlite3.connect(os.path.join(path, MAILBOX_FILE))
        conn.execute("DROP TABLE group_members")
        conn.commit()
        conn.close()
        e = self.assertRaises(StartupError, relay_service, path, [], None, Limits(), clock=Clock())
        self.assertIn("cannot use the mailbox", str(e))
        self.assertIn(MAILBOX_FILE, str(e))
        self.assertIn("no such table: group_members", str(e))
        self.assertNotIn("\n", str(e))
