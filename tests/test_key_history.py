"""
Letters and receipts signed with a key their signer had before
C{securechat-admin rekey} (docs/protocol.rst 14.9; docs/security.rst,
"Previous keys"): the rule (L{securechat.crypto.keyhistory}), the wire
(L{securechat.wire.keyhistory}), the relay's GET_KEY_HISTORY, the user
directory's history, the client's former pins, and the client reading
letters and receipts, scripted and against the real relay in memory.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

from twisted.trial import unittest

from securechat.client.letterstore import STORED
from securechat.client.pins import CorruptPinFile, PinStore
from securechat.crypto import keys
from securechat.crypto.keyhistory import PreviousKey, previous_signer
from securechat.crypto.letters import parse_letter
from securechat.crypto.prekeys import LetterError
from securechat.crypto.receipts import ReceiptKind, make_receipt
from securechat.errors import RemoteProtocolError
from securechat.server.limits import Limits
from securechat.wire.keyhistory import GetKeyHistory, KeyHistory, PreviousKeyEntry
from securechat.wire.mailbox import (
    MAILBOX_FROM_CLIENT, MAILBOX_FROM_SERVER, FetchLetter, GetUserKey, Letter, LetterEntry,
    LetterList, LetterStored, ListLetters, PostReceipt, SentStatus, StatusEntry, StatusList, UserKey)
from securechat.wire.relay import CommandFailed, Reason
from tests import independent_mailbox as clean
from tests.relay_harness import user_key
from tests.test_admin import AdminCase, public_key_file
from tests.test_client_letters import NOW, User, post
from tests.test_letters_endtoend import LetterHarness
from tests.test_mailbox_relay import MailboxCase

OLD, NEW, MALLORY = user_key("alice"), user_key("alice-new"), user_key("mallory")


def der(key: Any) -> bytes:
    return keys.public_key_der(key.public_key())


def entry(key: Any, replaced_at: int, compromised_at: int = 0, added_at: int = NOW - 1000) -> PreviousKeyEntry:
    return PreviousKeyEntry(der(key), added_at, replaced_at, compromised_at)


class RuleTests(unittest.TestCase):
    """L{previous_signer}: the three rules of 14.9, in order."""

    def check(self, stored_at: int, history: list[PreviousKey], signed_by: Any = OLD,
              pinned: tuple[Any, ...] = (OLD,)) -> PreviousKey:
        pins = {keys.fingerprint(k.public_key()) for k in pinned}
        signer = keys.fingerprint(signed_by.public_key())
        return previous_signer(lambda k: keys.fingerprint(k) == signer, history, stored_at,
                               lambda k: keys.fingerprint(k) in pins, "alice")

    def old(self, replaced_at: int = NOW, compromised_at: int = 0) -> list[PreviousKey]:
        return [PreviousKey(OLD.public_key(), NOW - 1000, replaced_at, compromised_at)]

    def test_storedBeforeReplacementVerifies(self) -> None:
        """
        Rule 3: a signature by a pinned previous key verifies when the relay
        stored it before the key was replaced, up to the last second.
        """
        self.assertEqual(self.check(NOW - 1, self.old()).replaced_at, NOW)

    def test_storedAtOrAfterReplacementRefused(self) -> None:
        """
        Rule 3: stored at the second the key was replaced, or later, is
        key-replaced (the relay did not store it under that key).
        """
        for stored_at in (NOW, NOW + 1):
            e = self.assertRaises(LetterError, self.check, stored_at, self.old())
            self.assertEqual(e.code, "key-replaced")

    def test_compromisedFromItsTime(self) -> None:
        """
        Rule 2: a key marked compromised at C{T} verifies what was stored
        before C{T} and nothing stored from C{T} on, even before it was
        replaced; marked since it was added, it verifies nothing.
        """
        history = self.old(replaced_at=NOW, compromised_at=NOW - 100)
        self.assertEqual(self.check(NOW - 101, history).compromised_at, NOW - 100)
        e = self.assertRaises(LetterError, self.check, NOW - 100, history)
        self.assertEqual(e.code, "key-compromised")
        whole_life = self.old(replaced_at=NOW, compromised_at=NOW - 1000)
        e = self.assertRaises(LetterError, self.check, NOW - 999, whole_life)
        self.assertEqual(e.code, "key-compromised")

    def test_forgedHistoryEntryUnpinned(self) -> None:
        """
        Rule 1: a key the relay claims alice had, but that alice was never
        pinned to here (the relay's own), is unpinned-key whatever times it
        comes with: the relay cannot forge a letter from alice by
        inventing a history.
        """
        forged = [PreviousKey(MALLORY.public_key(), 0, 2**63, 0)]
        e = self.assertRaises(LetterError, self.check, NOW, forged, signed_by=MALLORY)
        self.assertEqual(e.code, "unpinned-key")

    def test_noKeyVerifiesBadSignature(self) -> None:
        """No previous key verifies the signature: bad-signature, as before."""
        e = self.assertRaises(LetterError, self.check, NOW - 5, self.old(), signed_by=MALLORY)
        self.assertEqual(e.code, "bad-signature")
        e = self.assertRaises(LetterError, self.check, NOW - 5, [])
        self.assertEqual(e.code, "bad-signature")


class WireTests(unittest.TestCase):
    """GET_KEY_HISTORY and KEY_HISTORY (14.6)."""

    def test_layoutAndIndependentParse(self) -> None:
        """
        KEY_HISTORY is the name, then a list of (key, added_at,
        replaced_at, compromised_at); the clean-room parser written from
        14.6 reads the same entries.
        """
        message = KeyHistory("bob", (entry(OLD, NOW, NOW - 10), entry(MALLORY, NOW - 500)))
        body = message.encode_body()
        self.assertEqual(MAILBOX_FROM_SERVER.parse(KeyHistory.TYPE, body), message)
        self.assertEqual(clean.parse_key_history(body),
                         ("bob", [(der(OLD), NOW - 1000, NOW, NOW - 10),
                                  (der(MALLORY), NOW - 1000, NOW - 500, 0)]))
        self.assertEqual(MAILBOX_FROM_CLIENT.parse(GetKeyHistory.TYPE, b"\x03bob"), GetKeyHistory("bob"))

    def test_entryRules(self) -> None:
        """
        An empty key, a key replaced before it was added, or one marked
        compromised outside its life is bad-value; the boundaries pass.
        """
        for bad in (PreviousKeyEntry(b"", 1, 2, 0), PreviousKeyEntry(b"k", 3, 2, 0),
                    PreviousKeyEntry(b"k", 2, 5, 1), PreviousKeyEntry(b"k", 2, 5, 6)):
            e = self.assertRaises(RemoteProtocolError, MAILBOX_FROM_SERVER.parse, KeyHistory.TYPE,
                                  KeyHistory("bob", (bad,)).encode_body())
            self.assertEqual(e.code, "bad-value", bad)
        for good in (PreviousKeyEntry(b"k", 2, 2, 2), PreviousKeyEntry(b"k", 2, 5, 5)):
            MAILBOX_FROM_SERVER.parse(KeyHistory.TYPE, KeyHistory("bob", (good,)).encode_body())


class RelayTests(MailboxCase):
    """The relay's GET_KEY_HISTORY (14.7)."""

    def test_historyNewestFirst(self) -> None:
        """
        After two rekeys the relay serves both old keys, newest first, with
        their times; a user never rekeyed has an empty history; an unknown
        name is UNKNOWN_USER; a revoked user's history is served.
        """
        self.h.directory.rekey("bob", NEW.public_key(), 100, 200)
        self.h.directory.rekey("bob", MALLORY.public_key(), 200, 300, 250)
        self.h.directory.revoke("bob")
        alice = self.h.login("alice")
        self.assertEqual(self.ask(alice, GetKeyHistory("bob"), GetKeyHistory("carol"), GetKeyHistory("nobody")),
                         [KeyHistory("bob", (PreviousKeyEntry(der(NEW), 200, 300, 250),
                                             PreviousKeyEntry(der(user_key("bob")), 100, 200, 0))),
                          KeyHistory("carol", ()),
                          CommandFailed(GetKeyHistory.TYPE, "nobody", Reason.UNKNOWN_USER)])


class CutHistoryTests(MailboxCase):
    """A history longer than max_payload."""

    limits = Limits(max_frame=1024)

    def test_historyCutToMaxPayload(self) -> None:
        """
        The history is cut to the newest entries whose body fits
        max_payload (Ed25519 keys: 44 + 26 bytes an entry).
        """
        for n in range(40):
            self.h.directory.rekey("bob", user_key(f"bob{n}").public_key(), n, n + 1)
        alice = self.h.login("alice")
        [history] = self.ask(alice, GetKeyHistory("bob"))
        self.assertLessEqual(len(history.encode_body()), self.limits.max_payload)
        self.assertEqual(len(history.keys), (self.limits.max_payload - 4 - 2) // 70)
        self.assertEqual(history.keys[0].replaced_at, 40)


class DirectoryHistoryTests(unittest.TestCase):
    """users.json's history, as the relay reads it."""

    def setUp(self) -> None:
        from securechat.datadir import DataDir
        self.data = DataDir(os.path.abspath(self.mktemp()))
        self.data.init(["localhost"], datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc))
        self.added = datetime.datetime(2026, 2, 1, tzinfo=datetime.timezone.utc)
        self.data.add_user("bob", user_key("bob").public_key(), self.added)

    def relay_entry(self) -> Any:
        from securechat.server.userfile import FileUserDirectory
        return FileUserDirectory(self.data).lookup("bob")

    def test_rekeyRetiredByDefault(self) -> None:
        """
        A plain rekey keeps the old key with its times as the relay's Unix
        seconds, not compromised: what was stored before still verifies.
        """
        at = datetime.datetime(2026, 3, 1, tzinfo=datetime.timezone.utc)
        self.data.rekey_user("bob", NEW.public_key(), at)
        [previous] = self.relay_entry().history
        self.assertEqual((der_of(previous.key), previous.added_at, previous.replaced_at, previous.compromised_at),
                         (der(user_key("bob")), int(self.added.timestamp()), int(at.timestamp()), 0))

    def test_rekeyCompromisedSinceAddedOrGiven(self) -> None:
        """
        --compromised marks the old key from when it was added, or from the
        time given (between added and now; outside it is refused).
        """
        from securechat.datadir import DataDirError
        at = datetime.datetime(2026, 3, 1, tzinfo=datetime.timezone.utc)
        since = datetime.datetime(2026, 2, 20, tzinfo=datetime.timezone.utc)
        e = self.assertRaises(DataDirError, self.data.rekey_user, "bob", NEW.public_key(), at,
                              compromised=True, since=at + datetime.timedelta(seconds=1))
        self.assertIn("the old key was in use from 2026-02-01T00:00:00Z to now", str(e))
        self.data.rekey_user("bob", NEW.public_key(), at, compromised=True, since=since)
        self.data.rekey_user("bob", MALLORY.public_key(), at, compromised=True)
        first, second = self.relay_entry().history
        self.assertEqual(first.compromised_at, int(since.timestamp()))
        self.assertEqual(second.compromised_at, second.added_at)

    def test_entryWithoutCompromisedFieldHeldCompromised(self) -> None:
        """
        A history entry written before keys were marked (no "compromised")
        is held compromised since it was added: nothing signed with it
        verified then, and nothing does now.
        """
        import json
        at = datetime.datetime(2026, 3, 1, tzinfo=datetime.timezone.utc)
        self.data.rekey_user("bob", NEW.public_key(), at)
        with open(self.data.users_path) as f:
            users = json.load(f)
        del users["users"]["bob"]["history"][0]["compromised"]
        from securechat.datafiles import atomic_write
        atomic_write(self.data.users_path, json.dumps(users).encode())
        [previous] = self.relay_entry().history
        self.assertEqual(previous.compromised_at, previous.added_at)


def der_of(key: keys.PublicKey) -> bytes:
    return keys.public_key_der(key)


class PinHistoryTests(unittest.TestCase):
    """Former pins in known_peers."""

    def test_trustKeepsFormerPin(self) -> None:
        """
        Re-pinning a peer keeps the pin it replaces as a former pin, in the
        file as "NAME SHA256:... replaced", read back after a restart; the
        current pin is unchanged by it.
        """
        path = os.path.join(self.mktemp(), "known_peers")
        pins = PinStore(path)
        pins.pin("alice", OLD.public_key())
        pins.pin("alice", NEW.public_key())
        again = PinStore(path)
        self.assertTrue(again.was_pinned("alice", OLD.public_key()))
        self.assertTrue(again.was_pinned("alice", NEW.public_key()))
        self.assertFalse(again.was_pinned("alice", MALLORY.public_key()))
        self.assertFalse(again.was_pinned("bob", OLD.public_key()))
        self.assertEqual(again.fingerprint("alice"), keys.fingerprint(NEW.public_key()))
        with open(path) as f:
            self.assertIn(f"alice {keys.fingerprint(OLD.public_key())} replaced\n", f.read())

    def test_badThirdWordRefused(self) -> None:
        """A line with a third word other than "replaced" names its line."""
        path = os.path.join(self.mktemp())
        with open(path, "w") as f:
            f.write(f"alice {keys.fingerprint(OLD.public_key())} previous\n")
        e = self.assertRaises(CorruptPinFile, PinStore, path)
        self.assertIn("line 1: expected NAME SHA256:FINGERPRINT [replaced]", str(e))


class ScriptedLetterTests(unittest.TestCase):
    """bob reads letters alice signed with her previous key."""

    def setUp(self) -> None:
        self.alice = User("alice")  # signs with OLD
        self.bob = User("bob")
        self.bob.client.pins.pin("alice", OLD.public_key())
        self.bob.client.pins.pin("alice", NEW.public_key())  # after /trust alice

    def read(self, stored_at: int, history: tuple[PreviousKeyEntry, ...] | None,
             sender: User | None = None) -> list[Any]:
        """bob reads a letter from C{sender}; the relay answers with C{history}."""
        posted = post(sender or self.alice, self.bob, "written before the rekey")
        self.bob.box.list_letters(False)
        self.bob.relay.take(ListLetters)
        self.bob.feed(LetterList((LetterEntry("alice", posted.letter_id, stored_at, 10, 0),), 1))
        self.bob.box.read("1")
        self.bob.relay.take(FetchLetter)
        self.bob.feed(Letter("alice", posted.letter_id, stored_at, stored_at + 100, posted.letter))
        [ask] = self.bob.relay.take(GetUserKey)
        self.bob.feed(UserKey("alice", der(NEW), 0))
        if history is None:
            self.bob.feed(CommandFailed(GetKeyHistory.TYPE, "alice", Reason.UNKNOWN_USER))
        else:
            self.assertEqual(self.bob.relay.take(GetKeyHistory), [GetKeyHistory("alice")])
            self.bob.feed(KeyHistory("alice", history))
        return self.bob.view.of("letter_opened") + self.bob.view.of("letter_failed")

    def code(self, shown: list[Any]) -> str:
        [(sender, letter_id, stored_at, code, detail)] = shown
        return code

    def test_signedBeforeReplacementOpens(self) -> None:
        """
        A letter signed with alice's previous key, pinned here before, and
        stored before the key was replaced opens, is marked with the
        replacement time, and gets its receipts.
        """
        [opened] = self.read(NOW, (entry(OLD, NOW + 10),))
        self.assertEqual((opened[4], opened[6]), ("written before the rekey", NOW + 10))
        self.assertEqual(len(self.bob.relay.take(PostReceipt)), 2)

    def test_storedAfterReplacementRefused(self) -> None:
        """
        Stored at or after the replacement: key-replaced, never text, no
        receipt.
        """
        shown = self.read(NOW, (entry(OLD, NOW),))
        self.assertEqual(self.code(shown), "key-replaced")
        self.assertNotIn("written before", repr(shown))
        self.assertEqual(self.bob.relay.take(PostReceipt), [])

    def test_compromisedKeyRefused(self) -> None:
        """
        A previous key marked compromised before the letter was stored:
        key-compromised, even though it was stored before the replacement.
        """
        shown = self.read(NOW, (entry(OLD, NOW + 10, compromised_at=NOW),))
        self.assertEqual(self.code(shown), "key-compromised")
        self.assertEqual(self.bob.relay.take(PostReceipt), [])

    def test_compromisedAfterStoringOpens(self) -> None:
        """Marked compromised only after the letter was stored: it opens."""
        [opened] = self.read(NOW, (entry(OLD, NOW + 10, compromised_at=NOW + 5),))
        self.assertEqual(opened[6], NOW + 10)

    def test_forgedHistoryEntryRefused(self) -> None:
        """
        The relay claims alice had a key bob never pinned (mallory's) and
        serves a letter signed with it: unpinned-key, never text, no
        receipt, and nothing is pinned.
        """
        forger = User("alice", key=MALLORY)
        shown = self.read(NOW, (entry(MALLORY, NOW + 10),), sender=forger)
        self.assertEqual(self.code(shown), "unpinned-key")
        self.assertNotIn("written before", repr(shown))
        self.assertEqual(self.bob.relay.take(PostReceipt), [])
        self.assertFalse(self.bob.client.pins.was_pinned("alice", MALLORY.public_key()))

    def test_historyRefusedIsBadSignature(self) -> None:
        """With no history from the relay the letter stays bad-signature."""
        self.assertEqual(self.code(self.read(NOW, None)), "bad-signature")

    def test_unaskedHistoryDropped(self) -> None:
        """A KEY_HISTORY nobody asked for changes nothing."""
        self.bob.feed(KeyHistory("alice", (entry(MALLORY, NOW),)))
        self.assertEqual(self.bob.view.kinds(), ["logged_in"])

    def test_shownWithReplacementDate(self) -> None:
        """
        The line says which key: "Verification: ok (signed with alice's
        previous key, replaced DATE)".
        """
        from securechat.client.letterview import LetterLines
        out: list[str] = []

        class Lines(LetterLines):
            def letter_line(self, text: str, alert: bool = False) -> None:
                out.append(text)
        Lines().letter_opened("alice", b"\x01" * 16, NOW, NOW, "hi", False, 1_764_633_600)
        self.assertTrue(out[0].endswith("Verification: ok (signed with alice's previous key, "
                                        "replaced 2025-12-02 00:00 UTC)"), out[0])


class ScriptedReceiptTests(unittest.TestCase):
    """alice checks receipts bob signed with his previous key."""

    def test_receiptsByPreviousKey(self) -> None:
        """
        In /sent, a delivery receipt bob signed with his previous key,
        pinned here, stored before the replacement, verifies (and says
        which key); a read receipt stored after it is key-replaced; one
        signed with a key alice never pinned for bob is unpinned-key.
        """
        bob_old, bob_new = user_key("bob"), user_key("bob-new")
        alice, bob = User("alice"), User("bob")
        posted = post(alice, bob, "status")
        alice.feed(LetterStored("bob", posted.letter_id, NOW, NOW + 100))
        alice.client.pins.pin("bob", bob_new.public_key())  # bob_old was pinned when sealing
        letter = parse_letter(posted.letter)
        delivery = make_receipt(letter, ReceiptKind.DELIVERY, bob_old, NOW + 1).encode()
        read = make_receipt(letter, ReceiptKind.READ, bob_old, NOW + 2).encode()
        history = (entry(bob_old, NOW + 5),)

        def status(delivery: bytes, read: bytes, history: tuple[PreviousKeyEntry, ...]) -> Any:
            alice.view.take()
            alice.box.sent_status()
            alice.relay.take(SentStatus)
            alice.feed(StatusList((StatusEntry("bob", posted.letter_id, NOW, NOW + 100, NOW + 1, NOW + 5,
                                               delivery, read),), 1))
            alice.relay.take(GetUserKey)
            alice.feed(UserKey("bob", der(bob_new), 0))
            self.assertEqual(alice.relay.take(GetKeyHistory), [GetKeyHistory("bob")])
            alice.feed(KeyHistory("bob", history))
            [(rows, total, more)] = alice.view.of("sent_status")
            return rows[0]

        row = status(delivery, read, history)
        self.assertEqual((row.delivery, row.delivery_key_replaced), ("ok", NOW + 5))
        self.assertEqual((row.read, row.read_key_replaced), ("key-replaced", 0))
        forged = make_receipt(letter, ReceiptKind.DELIVERY, MALLORY, NOW + 1).encode()
        row = status(forged, b"", (entry(MALLORY, NOW + 5),))
        self.assertEqual(row.delivery, "unpinned-key")
        self.assertEqual(row.state, STORED)


class RekeyEndToEndTests(unittest.TestCase):
    """The real relay in memory, the operator rekeying a user in between."""

    def test_lettersAndReceiptsAcrossARekey(self) -> None:
        """
        bob reads alice's first letter (pinning her key); the second waits.
        The operator rekeys alice; bob, after /trust alice, reads the
        second: "signed with alice's previous key".  Then the operator
        rekeys bob; alice, on her new key, after /trust bob, sees bob's
        receipts for both letters verified with his previous key.
        """
        h = LetterHarness(Limits())
        bob, vb = h.client("bob")
        h.leave(bob)
        alice, va = h.client("alice")
        assert alice.mailbox is not None
        for text in ("first", "second"):
            h.clock.advance(1)
            alice.mailbox.send_letter("bob", text)
            h.pump()
        h.leave(alice)
        bob, vb = h.client("bob")
        assert bob.mailbox is not None
        bob.mailbox.list_letters(False)
        h.pump()
        bob.mailbox.read("2")  # the older: "first"
        h.pump()
        self.assertEqual([o[4] for o in vb.of("letter_opened")], ["first"])
        h.leave(bob)

        h.clock.advance(10)
        alice_replaced = int(1_700_000_000 + h.clock.seconds())
        h.directory.rekey("alice", NEW.public_key(), 1_700_000_000, alice_replaced)
        h.clock.advance(10)
        bob, vb = h.client("bob")
        assert bob.mailbox is not None
        bob.mailbox.list_letters(False)
        h.pump()
        bob.mailbox.read("1")
        h.pump()
        self.assertEqual(vb.of("letter_failed")[-1][3], "key-changed")
        bob.trust("alice")
        bob.mailbox.read("1")
        h.pump()
        [opened] = vb.of("letter_opened")
        self.assertEqual((opened[4], opened[6]), ("second", alice_replaced))
        h.leave(bob)

        h.clock.advance(10)
        bob_replaced = int(1_700_000_000 + h.clock.seconds())
        h.directory.rekey("bob", user_key("bob-new").public_key(), 1_700_000_000, bob_replaced)
        alice, va = h.client("alice", key=NEW)
        assert alice.mailbox is not None
        alice.mailbox.sent_status()
        h.pump()
        self.assertEqual({r.delivery for r in va.of("sent_status")[-1][0]}, {"key-changed"})
        alice.trust("bob")
        alice.mailbox.sent_status()
        h.pump()
        rows = va.of("sent_status")[-1][0]
        self.assertEqual([(r.delivery, r.delivery_key_replaced, r.read, r.read_key_replaced) for r in rows],
                         [("ok", bob_replaced, "ok", bob_replaced)] * 2)


class IndependentRuleTests(unittest.TestCase):
    """14.9 as the clean-room code reads it, against the project's."""

    def test_sameOutcomeBothWays(self) -> None:
        """
        For each case of the rule (verifies, replaced, compromised before
        and after, unpinned, none verifies) the clean-room code written from
        14.9 and L{previous_signer} give the same outcome.
        """
        old, forged = der(OLD), der(MALLORY)
        cases = [
            (NOW - 1, [(old, 0, NOW, 0)], old), (NOW, [(old, 0, NOW, 0)], old),
            (NOW - 1, [(old, 0, NOW, NOW - 1)], old), (NOW - 2, [(old, 0, NOW, NOW - 1)], old),
            (NOW - 1, [(forged, 0, NOW, 0)], forged), (NOW - 1, [(forged, 0, NOW, 0), (old, 0, NOW, 0)], old),
            (NOW - 1, [(old, 0, NOW, 0)], b"nobody"),
        ]
        for stored_at, entries, signer in cases:
            try:
                theirs = clean.previous_key(lambda k: k == signer, entries, stored_at, lambda k: k == old)[2]
            except clean.Refused as e:
                theirs = e.code
            history = [PreviousKey(keys.load_public_key_der(k), a, r, c) for k, a, r, c in entries]
            try:
                ours: Any = previous_signer(lambda k: keys.public_key_der(k) == signer, history, stored_at,
                                            lambda k: keys.public_key_der(k) == old, "alice").replaced_at
            except LetterError as e:
                ours = e.code
            self.assertEqual(ours, theirs, (stored_at, entries))


class AdminRekeyTests(AdminCase):
    """securechat-admin rekey [--compromised [SINCE]]."""

    def setUp(self) -> None:
        super().setUp()
        self.init()
        self.new_path, _ = public_key_file(self, "new.pub")
        old_path, _ = public_key_file(self, "old.pub")
        self.ok("add-user", "alice", old_path)

    def record(self) -> Any:
        from securechat.datadir import DataDir
        return DataDir(self.data).load_users().lookup("alice")

    def previous(self) -> Any:
        return self.record().history[-1]

    def test_plainRekeyKeepsOldLettersVerifiable(self) -> None:
        """
        Without --compromised the old key is kept uncompromised, and the
        output says what was stored before still verifies with it.
        """
        out = self.ok("rekey", "alice", self.new_path)
        self.assertIn("letters and receipts the relay stored before 2026-06-01T12:00:00Z still verify "
                      "with it (not marked --compromised)", out)
        self.assertIsNone(self.previous().compromised)

    def test_compromisedRekey(self) -> None:
        """
        --compromised marks the old key from when it was added and says
        so; a SINCE that is no UTC time, or outside the key's life, is
        refused in one line and nothing changes.
        """
        self.assertIn("give a UTC time like 2026-12-01T09:00:00Z",
                      self.refused("rekey", "alice", self.new_path, "--compromised", "yesterday"))
        self.assertIn("the old key was in use from 2026-06-01T12:00:00Z to now",
                      self.refused("rekey", "alice", self.new_path, "--compromised",
                                        "2026-05-01T00:00:00Z"))
        self.assertEqual(self.record().history, ())
        out = self.ok("rekey", "alice", self.new_path, "--compromised")
        self.assertIn("stored from 2026-06-01T12:00:00Z on do not verify with it (compromised)", out)
        self.assertEqual(self.previous().compromised, "2026-06-01T12:00:00Z")
