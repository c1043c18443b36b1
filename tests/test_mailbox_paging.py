"""
The relay's lists at their page boundaries (docs/protocol.rst 14.7):
LIST_LETTERS, SENT_STATUS and LIST_USERS with an answer exactly full, an
offset at or past the total, more entries than one answer holds, and
entries added or deleted between two pages.
"""

from __future__ import annotations

from twisted.trial import unittest

from securechat.server.directory import UserEntry as DirectoryEntry
from securechat.server.limits import Limits
from securechat.wire.mailbox import (
    DeleteLetter, FetchLetter, LetterEntry, LetterList, ListLetters, ListUsers, PostReceipt,
    SentStatus, StatusList, UserList)
from tests.relay_harness import user_key
from tests.test_mailbox_relay import MailboxCase, lid, receipt

#: One LetterEntry from "alice": text8 name (6) + id (16) + u64 + u64 + u8.
ENTRY = 39
#: A list body besides its entries: u16 count + u64 total.
LIST_OVERHEAD = 10
#: max_payload for exactly 20 of those entries in one answer.
TWENTY = LIST_OVERHEAD + 20 * ENTRY


class ExactlyFullTests(MailboxCase):
    """An answer whose body is exactly max_payload."""

    limits = Limits(max_frame=TWENTY + 128, letter_rate=1000, letter_burst=1000)

    def test_answerExactlyMaxPayloadNotCut(self) -> None:
        """
        20 letters whose LETTER_LIST body is exactly max_payload bytes come
        in one answer, whole: the cut keeps a prefix of at most
        max_payload, not less.
        """
        alice = self.h.login("alice")
        for n in range(20):
            self.post(alice, "bob", n)
        bob = self.h.login("bob")
        [listing] = self.ask(bob, ListLetters(1, 0))
        self.assertEqual((len(listing.letters), listing.total), (20, 20))
        self.assertEqual(len(listing.encode_body()), self.limits.max_payload)

    def test_oneMoreGoesToTheNextAnswer(self) -> None:
        """
        With 21 letters the first answer holds 20 (one more would pass
        max_payload), total 21; the answer at offset 20 holds the last.
        """
        alice = self.h.login("alice")
        for n in range(21):
            self.h.clock.advance(1)
            self.post(alice, "bob", n)
        bob = self.h.login("bob")
        [first] = self.ask(bob, ListLetters(1, 0))
        [second] = self.ask(bob, ListLetters(1, 20))
        self.assertEqual((len(first.letters), first.total), (20, 21))
        self.assertEqual(second, LetterList((LetterEntry("alice", lid(0), 1, 6, 0),), 21))

    def test_offsetAtOrPastTotalIsEmpty(self) -> None:
        """
        An offset equal to the total, past it, or the largest u64 is an
        empty list with the total, never an error: that is how a client
        knows it has reached the end.
        """
        alice = self.h.login("alice")
        for n in range(20):
            self.post(alice, "bob", n)
        bob = self.h.login("bob")
        self.assertEqual(self.ask(bob, ListLetters(1, 20), ListLetters(1, 21),
                                  ListLetters(1, 2**64 - 1), SentStatus(2**64 - 1),
                                  ListUsers(2**64 - 1)),
                         [LetterList((), 20), LetterList((), 20), LetterList((), 20),
                          StatusList((), 0), UserList((), 10)])


class ChangedBetweenPagesTests(MailboxCase):
    """Each answer is cut from the list as it is when the request is answered."""

    limits = Limits(max_frame=TWENTY + 128, letter_rate=1000, letter_burst=1000)

    def _twenty_five(self) -> None:
        alice = self.h.login("alice")
        for n in range(25):
            self.h.clock.advance(1)
            self.post(alice, "bob", n)
        self.alice = alice

    def test_letterAddedBetweenPages(self) -> None:
        """
        A letter stored after the first page goes first (newest first), so
        the next page starts one earlier: its first entry is the first
        page's last again, and the total has grown by one (which is how
        the client sees the list changed).
        """
        self._twenty_five()
        bob = self.h.login("bob")
        [first] = self.ask(bob, ListLetters(1, 0))
        self.h.clock.advance(1)
        self.post(self.alice, "bob", 99)
        bob.take()
        [second] = self.ask(bob, ListLetters(1, 20))
        self.assertEqual(first.total, 25)
        self.assertEqual(second.total, 26)
        self.assertEqual(second.letters[0], first.letters[-1])
        self.assertEqual(len(second.letters), 6)

    def test_letterDeletedBetweenPages(self) -> None:
        """
        A letter deleted after the first page moves the rest up by one: the
        entry that would have opened the second page is on neither, and the
        total has shrunk by one.
        """
        self._twenty_five()
        bob = self.h.login("bob")
        [first] = self.ask(bob, ListLetters(1, 0))
        self.ask(bob, DeleteLetter("alice", first.letters[0].letter_id))
        [second] = self.ask(bob, ListLetters(1, 20))
        self.assertEqual((first.total, second.total), (25, 24))
        self.assertEqual([e.letter_id for e in second.letters], [lid(n) for n in range(3, -1, -1)])
        self.assertNotIn(lid(4), [e.letter_id for e in first.letters + second.letters])

    def test_fetchedLetterLeavesNewList(self) -> None:
        """
        In the list of new letters, a letter fetched between pages is no
        longer new: the total of ``which`` 0 shrinks.
        """
        self._twenty_five()
        bob = self.h.login("bob")
        [first] = self.ask(bob, ListLetters(0, 0))
        self.ask(bob, FetchLetter("alice", first.letters[0].letter_id))
        [second] = self.ask(bob, ListLetters(0, 20))
        self.assertEqual((first.total, second.total), (25, 24))


class OverOneAnswerTests(MailboxCase):
    """More entries than one answer holds, at the default max_payload."""

    limits = Limits(letter_rate=1000, letter_burst=1000, rate=10000, burst=10000)

    def test_sentStatusOverOneAnswer(self) -> None:
        """
        200 sent letters, each with both receipts, do not fit one
        STATUS_LIST at the default max_payload (about 190 do); paging with
        offset = entries received so far gives every letter exactly once,
        in order, each answer within max_payload, and ends with an empty
        answer at the total.
        """
        alice, bob = self.h.login("alice"), self.h.login("bob")
        for n in range(200):
            self.h.clock.advance(1)
            self.post(alice, "bob", n)
        bob.take()
        for n in range(200):
            for kind in (1, 2):
                bob.send(PostReceipt("alice", lid(n), receipt(kind, "alice", lid(n), "bob")))
        self.h.pump()
        bob.take()
        alice.take()
        seen, offset, answers = [], 0, 0
        while True:
            [page] = self.ask(alice, SentStatus(offset))
            self.assertEqual(page.total, 200)
            self.assertLessEqual(len(page.encode_body()), self.limits.max_payload)
            answers += 1
            if not page.letters:
                break
            seen += [e.letter_id for e in page.letters]
            self.assertTrue(all(e.delivery_receipt and e.read_receipt for e in page.letters))
            offset += len(page.letters)
        self.assertEqual(seen, [lid(n) for n in range(199, -1, -1)])
        self.assertEqual(answers, 3)  # two with entries, then the empty one at the total

    def test_usersOverOneAnswer(self) -> None:
        """
        A directory larger than one USER_LIST holds is listed whole over
        several answers, each user once, in byte order.
        """
        names = [f"user{n:05d}-{'x' * 20}" for n in range(3000)]
        for name in names:
            self.h.directory.add(DirectoryEntry(name, user_key("alice").public_key()))
        alice = self.h.login("alice")
        seen, offset = [], 0
        while True:
            [page] = self.ask(alice, ListUsers(offset))
            self.assertLessEqual(len(page.encode_body()), self.limits.max_payload)
            if not page.users:
                break
            seen += [u.user for u in page.users]
            offset += len(page.users)
        self.assertGreater(offset, len(self.ask(alice, ListUsers(0))[0].users))
        self.assertEqual(seen, sorted(names + list(self._harness_users()), key=str.encode))

    def _harness_users(self) -> tuple[str, ...]:
        from tests.relay_harness import USERS
        return USERS
