"""
The mailbox store's rules (L{securechat.server.store.interface}), checked
by one behavioural suite, L{StoreTestsMixin}, run against every
implementation: L{MemoryStoreTests} and L{SQLiteStoreTests} (a real SQLite
file in the test's temporary directory).

Time is injected (L{SteppedClock}); no test waits for real time.  The SQLite
tests need the reactor's threads for C{adbapi} (trial runs the reactor for
Deferred-returning tests); each is bounded by C{timeout}.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Generator

from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import Clock
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from securechat.server.store import mailbox_store
from securechat.server.store.interface import (
    DAY, DELIVERY, MAILBOX_FULL_BYTES, MAILBOX_FULL_LETTERS, NO_MAILBOX, READ, TOO_LARGE,
    Duplicate, IMailboxStore, LetterSummary, LoginState, MailboxLimits, MailboxUsage, NewLetter,
    NoSuchLetter, OneTimePrekeyRecord, PrekeyRefused, Refused, SignedPrekeyRecord, StoreError, Stored)
from securechat.server.store.memory import MemoryMailboxStore

START = 1_780_000_000


class SteppedClock:
    """
    An C{IReactorTime} whose time moves only when told (L{advance});
    C{callLater} is passed to a real reactor, which the SQLite store needs
    for its group commit (a delay of 0: the end of the current turn).
    """

    def __init__(self, reactor: Any, now: float = START) -> None:
        self.reactor = reactor
        self.now = now

    def seconds(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def callLater(self, delay: float, f: Callable[..., Any], *args: Any,
                  **kwargs: Any) -> IDelayedCall:
        return self.reactor.callLater(delay, f, *args, **kwargs)  # type: ignore[no-any-return]

    def getDelayedCalls(self) -> list[IDelayedCall]:
        return self.reactor.getDelayedCalls()  # type: ignore[no-any-return]


def lid(n: int) -> bytes:
    """
    A letter id.
    """
    return n.to_bytes(16, "big")


def letter(n: int, sender: str = "alice", recipient: str = "bob", size: int = 100) -> NewLetter:
    return NewLetter(sender, recipient, lid(n), bytes([n % 256]) * size)


def signed(user: str, prekey_id: int, created_at: int = START) -> SignedPrekeyRecord:
    return SignedPrekeyRecord(user, prekey_id, bytes([prekey_id % 256]) * 32, b"sig%d" % prekey_id,
                              created_at)


def one_time(user: str, *ids: int) -> list[OneTimePrekeyRecord]:
    return [OneTimePrekeyRecord(user, i, bytes([i % 256]) * 32) for i in ids]


LIMITS = MailboxLimits(max_letters=3, max_bytes=1000, max_letter_size=500, expiry_seconds=10 * DAY,
                       signed_prekey_grace=2 * DAY, max_one_time_prekeys=5)


class StoreTestsMixin:
    """
    The rules every L{IMailboxStore} keeps.  A subclass provides
    L{makeStore} (with L{LIMITS} and C{self.clock}).
    """

    clock: SteppedClock
    store: IMailboxStore
    assertEqual: Any
    assertIsNone: Any
    assertTrue: Any
    assertFalse: Any
    assertRaises: Any
    assertIn: Any
    failureResultOf: Any
    assertFailure: Any

    def makeStore(self) -> IMailboxStore:
        raise NotImplementedError()

    def post(self, *letters: NewLetter) -> Deferred[Any]:
        return self.store.store_letters(list(letters))

    @inlineCallbacks
    def refusedWith(self, d: Deferred[Any], error: type[Exception], text: str
                    ) -> Generator[Any, Any, None]:
        """
        C{d} fails with C{error} whose message contains C{text}.
        """
        try:
            yield d
        except error as e:
            self.assertIn(text, str(e))
        else:
            raise AssertionError(f"not refused with {error.__name__}")

    def test_providesInterface(self) -> None:
        """
        The store provides every method and attribute of L{IMailboxStore}.
        """
        self.assertTrue(verifyObject(IMailboxStore, self.store))

    # Storing, idempotence

    @inlineCallbacks
    def test_storeFetchList(self) -> Generator[Any, Any, None]:
        """
        A stored letter is answered with its time and expiry, listed to its
        recipient (not read, not delivered) and fetched with its body.
        """
        outcomes = yield self.post(letter(1))
        self.assertEqual(outcomes, [Stored(START, START + 10 * DAY)])
        listed = yield self.store.list_letters("bob", new_only=False)
        self.assertEqual(listed, [LetterSummary("alice", lid(1), START, 100, False, False)])
        record = yield self.store.fetch_letter("bob", "alice", lid(1))
        self.assertEqual((record.body, record.size, record.recipient), (b"\x01" * 100, 100, "bob"))
        self.assertEqual((yield self.store.list_letters("alice", new_only=False)), [])

    @inlineCallbacks
    def test_resendIsDuplicateWithOriginalTime(self) -> Generator[Any, Any, None]:
        """
        Idempotence: a resend with the same (sender, id) stores nothing and
        is answered with the original stored time, even with another body.
        """
        yield self.post(letter(1))
        self.clock.advance(60)
        outcomes = yield self.post(NewLetter("alice", "bob", lid(1), b"other"))
        self.assertEqual(outcomes, [Duplicate(START, START + 10 * DAY, "bob")])
        self.assertEqual(len((yield self.store.list_letters("bob", new_only=False))), 1)
        self.assertEqual((yield self.store.usage("bob")), [MailboxUsage("bob", 1, 100)])
        self.assertEqual((yield self.store.fetch_letter("bob", "alice", lid(1))).body,
                         b"\x01" * 100)

    @inlineCallbacks
    def test_duplicateInOneBatch(self) -> Generator[Any, Any, None]:
        """
        The same letter twice in one batch is stored once.
        """
        outcomes = yield self.post(letter(1), letter(1))
        self.assertEqual(outcomes, [Stored(START, START + 10 * DAY),
                                    Duplicate(START, START + 10 * DAY, "bob")])

    @inlineCallbacks
    def test_idsArePerSender(self) -> Generator[Any, Any, None]:
        """
        Letter ids are unique per sender: another sender may use the same id.
        """
        outcomes = yield self.post(letter(1), letter(1, sender="carol"))
        self.assertEqual([type(o) for o in outcomes], [Stored, Stored])

    @inlineCallbacks
    def test_resendAfterDeleteIsDuplicate(self) -> Generator[Any, Any, None]:
        """
        After the recipient deleted a letter, its resend is still a
        duplicate and does not reappear in the mailbox.
        """
        yield self.post(letter(1))
        yield self.store.delete_letter("bob", "alice", lid(1))
        outcomes = yield self.post(letter(1))
        self.assertEqual(outcomes, [Duplicate(START, START + 10 * DAY, "bob")])
        self.assertEqual((yield self.store.list_letters("bob", new_only=False)), [])

    @inlineCallbacks
    def test_resendToFullMailboxIsDuplicate(self) -> Generator[Any, Any, None]:
        """
        The duplicate check comes before the quota (14.7, step 2): the
        resend of a stored letter to a mailbox that is now full is answered
        as the first time, not refused, and stores nothing.
        """
        yield self.post(letter(1), letter(2), letter(3))
        self.assertEqual((yield self.post(letter(4))), [Refused(MAILBOX_FULL_LETTERS)])
        outcomes = yield self.post(letter(2))
        self.assertEqual(outcomes, [Duplicate(START, START + 10 * DAY, "bob")])
        self.assertEqual((yield self.store.usage("bob")), [MailboxUsage("bob", 3, 300)])

    @inlineCallbacks
    def test_oversizedResendIsDuplicate(self) -> Generator[Any, Any, None]:
        """
        A resend of a stored letter whose new body is over the size limit is
        still answered as the first time (the duplicate check comes first).
        """
        yield self.post(letter(1))
        outcomes = yield self.post(NewLetter("alice", "bob", lid(1), b"\x02" * 501))
        self.assertEqual(outcomes, [Duplicate(START, START + 10 * DAY, "bob")])

    @inlineCallbacks
    def test_duplicateInOneBatchCountedOnce(self) -> Generator[Any, Any, None]:
        """
        A letter twice in one batch, then a third time in the next, counts
        once against the quota (the usage row is not bumped by a duplicate).
        """
        yield self.post(letter(1), letter(1), letter(2))
        outcomes = yield self.post(letter(1), letter(3))
        self.assertEqual([type(o) for o in outcomes], [Duplicate, Stored])
        self.assertEqual((yield self.store.usage("bob")), [MailboxUsage("bob", 3, 300)])

    def test_letterIdIsSixteenBytes(self) -> None:
        """
        A letter id is 16 bytes: another length cannot even be stored.
        """
        error = self.assertRaises(ValueError, NewLetter, "alice", "bob", b"\x01" * 15, b"x")
        self.assertEqual(str(error), "a letter id is 16 bytes, not 15")

    # Quotas

    @inlineCallbacks
    def test_tooLarge(self) -> Generator[Any, Any, None]:
        """
        A letter over C{max_letter_size} is refused as too-large; one of
        exactly that size is stored.
        """
        outcomes = yield self.post(letter(1, size=501), letter(2, size=500))
        self.assertEqual(outcomes[0], Refused(TOO_LARGE))
        self.assertEqual(type(outcomes[1]), Stored)

    @inlineCallbacks
    def test_mailboxFullLetters(self) -> Generator[Any, Any, None]:
        """
        A recipient holding C{max_letters} refuses the next one
        (mailbox-full-letters) while other recipients still receive.
        """
        outcomes = yield self.post(letter(1), letter(2), letter(3), letter(4),
                                   letter(5, recipient="carol"))
        self.assertEqual([type(o) for o in outcomes[:3]], [Stored] * 3)
        self.assertEqual(outcomes[3], Refused(MAILBOX_FULL_LETTERS))
        self.assertEqual(type(outcomes[4]), Stored)

    @inlineCallbacks
    def test_mailboxFullBytes(self) -> Generator[Any, Any, None]:
        """
        A letter that would take the recipient past C{max_bytes} is refused
        (mailbox-full-bytes); a smaller one that fits is stored.
        """
        outcomes = yield self.post(letter(1, size=500), letter(2, size=450), letter(3, size=51),
                                   letter(4, size=50))
        self.assertEqual(outcomes[2], Refused(MAILBOX_FULL_BYTES))
        self.assertEqual(type(outcomes[3]), Stored)
        self.assertEqual((yield self.store.usage("bob")), [MailboxUsage("bob", 3, 1000)])

    @inlineCallbacks
    def test_refusedIsNotRemembered(self) -> Generator[Any, Any, None]:
        """
        A refused letter stores nothing, not even its id: once the recipient
        deleted a letter (freeing its quota), the resend is stored.
        """
        yield self.post(letter(1), letter(2), letter(3))
        self.assertEqual((yield self.post(letter(4))), [Refused(MAILBOX_FULL_LETTERS)])
        self.assertTrue((yield self.store.delete_letter("bob", "alice", lid(1))))
        self.assertEqual((yield self.post(letter(4))), [Stored(START, START + 10 * DAY)])

    # Expiry

    @inlineCallbacks
    def test_expiry(self) -> Generator[Any, Any, None]:
        """
        An expired letter is no longer listed, fetched, counted or in the
        sender's status; C{expire(now)} purges exactly the expired letters
        and answers their number.
        """
        yield self.post(letter(1))
        self.clock.advance(DAY)
        yield self.post(letter(2))
        self.clock.advance(9 * DAY)  # letter 1 expires now, letter 2 in a day
        listed = yield self.store.list_letters("bob", new_only=False)
        self.assertEqual([s.letter_id for s in listed], [lid(2)])
        yield self.refusedWith(self.store.fetch_letter("bob", "alice", lid(1)), NoSuchLetter,
                               "no letter")
        self.assertEqual([s.letter_id for s in (yield self.store.sent_status("alice", None))],
                         [lid(2)])
        self.assertEqual((yield self.store.usage("bob")), [MailboxUsage("bob", 1, 100)])
        self.assertEqual((yield self.store.expire(int(self.clock.seconds()))), 1)
        self.assertEqual((yield self.store.expire(int(self.clock.seconds()))), 0)
        self.assertEqual((yield self.store.expire(START + 11 * DAY)), 1)
        self.assertEqual((yield self.store.usage(None)), [])

    @inlineCallbacks
    def test_expiredLetterFreesQuota(self) -> Generator[Any, Any, None]:
        """
        Expired letters do not count against the quota, purged or not.
        """
        yield self.post(letter(1), letter(2), letter(3))
        self.clock.advance(10 * DAY)
        self.assertEqual([type(o) for o in (yield self.post(letter(4)))], [Stored])

    # Deleting, status, receipts

    @inlineCallbacks
    def test_deleteKeepsSenderStatus(self) -> Generator[Any, Any, None]:
        """
        The recipient's delete removes the letter from its mailbox and its
        quota; the sender's status (times, receipts) survives.
        """
        yield self.post(letter(1))
        yield self.store.mark("bob", "alice", lid(1), READ, b"read-receipt")
        self.assertTrue((yield self.store.delete_letter("bob", "alice", lid(1))))
        self.assertFalse((yield self.store.delete_letter("bob", "alice", lid(1))))
        self.assertEqual((yield self.store.list_letters("bob", new_only=False)), [])
        self.assertEqual((yield self.store.usage("bob")), [MailboxUsage("bob", 0, 0)])
        yield self.refusedWith(self.store.fetch_letter("bob", "alice", lid(1)), NoSuchLetter,
                               lid(1).hex())
        [status] = yield self.store.sent_status("alice", None)
        self.assertEqual((status.recipient, status.stored_at, status.read_at, status.read_receipt),
                         ("bob", START, START, b"read-receipt"))

    @inlineCallbacks
    def test_onlyTheRecipient(self) -> Generator[Any, Any, None]:
        """
        Another user can neither fetch, mark nor delete a letter, and is told
        the same as for a letter that does not exist.
        """
        yield self.post(letter(1))
        for d in [self.store.fetch_letter("mallory", "alice", lid(1)),
                  self.store.mark("mallory", "alice", lid(1), READ, None),
                  self.store.delete_letter("mallory", "alice", lid(1)),
                  self.store.delete_letter("bob", "alice", lid(9))]:
            yield self.refusedWith(d, NoSuchLetter, "no letter")
        self.assertEqual(len((yield self.store.list_letters("bob", new_only=False))), 1)

    @inlineCallbacks
    def test_receiptsRecordedAndListed(self) -> Generator[Any, Any, None]:
        """
        Delivery and read receipts are kept with their times and listed in
        the sender's status; the first of each kind stays.
        """
        yield self.post(letter(1), letter(2))
        self.clock.advance(5)
        self.assertEqual((yield self.store.mark("bob", "alice", lid(1), DELIVERY, b"d1")),
                         START + 5)
        self.clock.advance(5)
        self.assertEqual((yield self.store.mark("bob", "alice", lid(1), READ, b"r1")), START + 10)
        self.clock.advance(5)
        self.assertEqual((yield self.store.mark("bob", "alice", lid(1), READ, b"again")),
                         START + 10)
        statuses = yield self.store.sent_status("alice", None)
        self.assertEqual([(s.letter_id, s.delivered_at, s.read_at, s.delivery_receipt,
                           s.read_receipt) for s in statuses],
                         [(lid(1), START + 5, START + 10, b"d1", b"r1"),
                          (lid(2), None, None, None, None)])
        only = yield self.store.sent_status("alice", [lid(2)])
        self.assertEqual([s.letter_id for s in only], [lid(2)])
        # Oldest first, whatever the ids; unknown ids are left out.
        yield self.post(letter(0))
        chosen = yield self.store.sent_status("alice", [lid(9), lid(0), lid(1), lid(0)])
        self.assertEqual([s.letter_id for s in chosen], [lid(1), lid(0)])
        self.assertEqual((yield self.store.sent_status("bob", None)), [])

    @inlineCallbacks
    def test_deliveredAtIsTheReceiptsTime(self) -> Generator[Any, Any, None]:
        """
        14.6: the sender's C{delivered_at} and C{read_at} are the times the
        receipts were stored, not the fetch: a fetch (a mark without a
        receipt) makes the letter fetched and records no time; a read
        receipt does not make a delivery time up, and a later delivery
        receipt is still kept with its own time.
        """
        yield self.post(letter(1))
        yield self.store.mark("bob", "alice", lid(1), DELIVERY, None)
        [status] = yield self.store.sent_status("alice", None)
        self.assertEqual((status.delivered_at, status.read_at, status.delivery_receipt),
                         (None, None, None))
        [summary] = yield self.store.list_letters("bob", new_only=False)
        self.assertEqual((summary.delivered, summary.read), (True, False))
        self.clock.advance(7)
        yield self.store.mark("bob", "alice", lid(1), READ, b"r1")
        self.clock.advance(3)
        yield self.store.mark("bob", "alice", lid(1), DELIVERY, b"d1")
        [status] = yield self.store.sent_status("alice", None)
        self.assertEqual((status.delivered_at, status.read_at, status.delivery_receipt,
                          status.read_receipt), (START + 10, START + 7, b"d1", b"r1"))
        [summary] = yield self.store.list_letters("bob", new_only=False)
        self.assertEqual((summary.delivered, summary.read), (True, True))

    @inlineCallbacks
    def test_listNewOnly(self) -> Generator[Any, Any, None]:
        """
        14.7: "new" letters are those never fetched (state 0); a letter
        fetched but not read is no longer new.
        """
        yield self.post(letter(1), letter(2), letter(3))
        yield self.store.mark("bob", "alice", lid(1), READ, b"r1")
        yield self.store.mark("bob", "alice", lid(2), DELIVERY, None)
        new = yield self.store.list_letters("bob", new_only=True)
        self.assertEqual([s.letter_id for s in new], [lid(3)])

    @inlineCallbacks
    def test_unknownReceiptKind(self) -> Generator[Any, Any, None]:
        """
        A receipt kind other than delivery (1) or read (2) is refused.
        """
        yield self.post(letter(1))
        yield self.refusedWith(self.store.mark("bob", "alice", lid(1), 3, b"x"), StoreError,
                               "unknown receipt kind 3")

    # Prekeys

    @inlineCallbacks
    def test_claimTakesExactlyOne(self) -> Generator[Any, Any, None]:
        """
        A claim hands out the current signed prekey and removes exactly one
        one-time prekey (lowest id first), saying how many remain.
        """
        stock = yield self.store.upload_prekeys("bob", signed("bob", 7), one_time("bob", 3, 1, 2))
        self.assertEqual(stock, 3)
        bundle = yield self.store.claim_bundle("bob")
        self.assertEqual((bundle.signed, bundle.one_time, bundle.remaining),
                         (signed("bob", 7), one_time("bob", 1)[0], 2))
        bundle = yield self.store.claim_bundle("bob")
        self.assertEqual((bundle.one_time.prekey_id, bundle.remaining), (2, 1))
        self.assertEqual((yield self.store.prekey_count("bob")), 1)

    @inlineCallbacks
    def test_claimFallsBackToSignedOnly(self) -> Generator[Any, Any, None]:
        """
        With no one-time prekey left, a claim gives the signed prekey alone;
        with no signed prekey, there is no bundle.
        """
        self.assertIsNone((yield self.store.claim_bundle("bob")))
        yield self.store.upload_prekeys("bob", signed("bob", 7), one_time("bob", 1))
        yield self.store.claim_bundle("bob")
        bundle = yield self.store.claim_bundle("bob")
        self.assertEqual((bundle.signed, bundle.one_time, bundle.remaining),
                         (signed("bob", 7), None, 0))

    @inlineCallbacks
    def test_signedPrekeyGracePeriod(self) -> Generator[Any, Any, None]:
        """
        A new signed prekey becomes the current one (claims give it); the
        previous one is kept for the grace period, then dropped and purged.
        Only one previous one is kept.
        """
        yield self.store.upload_prekeys("bob", signed("bob", 1), [])
        self.clock.advance(DAY)
        yield self.store.upload_prekeys("bob", signed("bob", 2), [])
        self.assertEqual((yield self.store.claim_bundle("bob")).signed, signed("bob", 2))
        self.assertEqual((yield self.store.signed_prekeys("bob")),
                         [signed("bob", 2), signed("bob", 1)])
        self.clock.advance(2 * DAY)
        self.assertEqual((yield self.store.signed_prekeys("bob")), [signed("bob", 2)])
        yield self.store.upload_prekeys("bob", signed("bob", 3), [])
        self.assertEqual((yield self.store.signed_prekeys("bob")),
                         [signed("bob", 3), signed("bob", 2)])
        yield self.store.expire(int(self.clock.seconds()) + 2 * DAY - 1)
        self.assertEqual(len((yield self.store.signed_prekeys("bob"))), 2)
        yield self.store.expire(int(self.clock.seconds()) + 2 * DAY)
        self.assertEqual((yield self.store.signed_prekeys("bob")), [signed("bob", 3)])

    @inlineCallbacks
    def test_reuploadIsIdempotent(self) -> Generator[Any, Any, None]:
        """
        Uploading the current signed prekey again changes nothing (the
        previous one stays), nor does re-uploading a one-time prekey as it is.
        """
        yield self.store.upload_prekeys("bob", signed("bob", 1), [])
        yield self.store.upload_prekeys("bob", signed("bob", 2), one_time("bob", 1, 2))
        stock = yield self.store.upload_prekeys("bob", signed("bob", 2), one_time("bob", 2, 3))
        self.assertEqual(stock, 3)
        self.assertEqual((yield self.store.signed_prekeys("bob")),
                         [signed("bob", 2), signed("bob", 1)])

    @inlineCallbacks
    def test_oneTimeIdReuploadedReplaces(self) -> Generator[Any, Any, None]:
        """
        14.7: a one-time prekey uploaded with an id the relay already holds
        replaces the one held (the owner holds only the latest private
        half); the stock does not grow.
        """
        yield self.store.upload_prekeys("bob", signed("bob", 1), one_time("bob", 4, 5))
        fresh = OneTimePrekeyRecord("bob", 4, b"\x44" * 32)
        self.assertEqual((yield self.store.upload_prekeys("bob", None, [fresh])), 2)
        bundle = yield self.store.claim_bundle("bob")
        self.assertEqual(bundle.one_time, fresh)

    @inlineCallbacks
    def test_signedIdReuploadedReplaces(self) -> Generator[Any, Any, None]:
        """
        14.7: a signed prekey with the current one's id and another key
        (a client that lost its data starts its ids again) takes the
        current one's place: bundles carry it, the replaced one is not
        kept, the previous one stays.
        """
        yield self.store.upload_prekeys("bob", signed("bob", 1), [])
        yield self.store.upload_prekeys("bob", signed("bob", 2), [])
        other = SignedPrekeyRecord("bob", 2, b"\x09" * 32, b"sig", START + 5)
        yield self.store.upload_prekeys("bob", other, [])
        self.assertEqual((yield self.store.claim_bundle("bob")).signed, other)
        self.assertEqual((yield self.store.signed_prekeys("bob")), [other, signed("bob", 1)])

    @inlineCallbacks
    def test_dropPrekeys(self) -> Generator[Any, Any, None]:
        """
        Dropping a user's prekeys (its key changed) forgets the current and
        previous signed prekeys and the one-time stock, and no one else's;
        given the signed prekey found stale, only while it is current.
        """
        yield self.store.upload_prekeys("bob", signed("bob", 1), [])
        yield self.store.upload_prekeys("bob", signed("bob", 2), one_time("bob", 1, 2))
        yield self.store.upload_prekeys("carol", signed("carol", 1), one_time("carol", 1))
        # Only while the one checked is still current: a newer upload stays.
        self.assertFalse((yield self.store.drop_prekeys("bob", signed("bob", 1))))
        self.assertEqual((yield self.store.prekey_count("bob")), 2)
        self.assertTrue((yield self.store.drop_prekeys("bob", signed("bob", 2))))
        self.assertEqual((yield self.store.signed_prekeys("bob")), [])
        self.assertEqual((yield self.store.prekey_count("bob")), 0)
        self.assertIsNone((yield self.store.claim_bundle("bob")))
        self.assertEqual((yield self.store.prekey_count("carol")), 1)
        stock = yield self.store.upload_prekeys("bob", signed("bob", 3), one_time("bob", 1))
        self.assertEqual(stock, 1)
        self.assertEqual((yield self.store.signed_prekeys("bob")), [signed("bob", 3)])

    @inlineCallbacks
    def test_prekeyRefusals(self) -> Generator[Any, Any, None]:
        """
        Refused uploads store nothing: a key that is not 32 bytes, another user's key, an id past 32 bits,
        the same id twice, and a stock past its limit.
        """
        yield self.store.upload_prekeys("bob", signed("bob", 1), one_time("bob", 1))
        cases = [
            (None, [OneTimePrekeyRecord("bob", 5, b"\x01" * 31)], "31 bytes, not 32"),
            (signed("carol", 2), [], "is for 'carol', not 'bob'"),
            (None, one_time("bob", 2 ** 32), "not a 32-bit unsigned number"),
            (None, one_time("bob", 4, 4), "the same one-time prekey id twice"),
            (signed("bob", 9), one_time("bob", 2, 3, 4, 5, 6), "more than 5 one-time prekeys"),
        ]
        for signed_prekey, one_times, text in cases:
            yield self.refusedWith(self.store.upload_prekeys("bob", signed_prekey, one_times),
                                   PrekeyRefused, text)
        self.assertEqual((yield self.store.prekey_count("bob")), 1)
        self.assertEqual((yield self.store.signed_prekeys("bob")), [signed("bob", 1)])

    # Usage

    @inlineCallbacks
    def test_usage(self) -> Generator[Any, Any, None]:
        """
        Usage per recipient in letters and bytes; all users with letters
        by name, or one user (zero if none).
        """
        yield self.post(letter(1, recipient="carol", size=10), letter(2, size=20),
                        letter(3, size=30))
        self.assertEqual((yield self.store.usage(None)),
                         [MailboxUsage("bob", 2, 50), MailboxUsage("carol", 1, 10)])
        self.assertEqual((yield self.store.usage("dave")), [MailboxUsage("dave", 0, 0)])

    # At login

    @inlineCallbacks
    def test_loginStateInOneAnswer(self) -> Generator[Any, Any, None]:
        """
        login_state counts the letters never fetched (not the fetched, the
        deleted, the expired, nor those to others), and gives the current
        signed prekey (not the previous one) and the one-time stock.
        """
        self.assertEqual((yield self.store.login_state("bob")), NO_MAILBOX)
        yield self.post(letter(1), letter(2), letter(3), letter(4, recipient="carol"))
        yield self.store.mark("bob", "alice", lid(2), DELIVERY, None)
        yield self.store.delete_letter("bob", "alice", lid(3))
        self.clock.advance(5 * DAY)
        yield self.post(letter(5))
        yield self.store.upload_prekeys("bob", signed("bob", 1), one_time("bob", 1, 2, 3))
        yield self.store.upload_prekeys("bob", signed("bob", 2), [])
        self.assertEqual((yield self.store.login_state("bob")),
                         LoginState(2, signed("bob", 2), 3))
        self.clock.advance(5 * DAY)
        self.assertEqual((yield self.store.login_state("bob")),
                         LoginState(1, signed("bob", 2), 3))
        self.assertEqual((yield self.store.login_state("carol")), NO_MAILBOX)

    @inlineCallbacks
    def test_loginStateAfterFirstLetter(self) -> Generator[Any, Any, None]:
        """
        A user that had nothing in the store, then gets a letter while
        offline, has it counted at its next login (the SQLite store's
        answer from memory must not hide it).
        """
        self.assertEqual((yield self.store.login_state("dave")), NO_MAILBOX)
        yield self.post(letter(1, recipient="dave"))
        self.assertEqual((yield self.store.login_state("dave")), LoginState(1, None, 0))

    @inlineCallbacks
    def test_loginStateAfterFirstUpload(self) -> Generator[Any, Any, None]:
        """
        A user's first prekey upload shows in its login state.
        """
        self.assertEqual((yield self.store.login_state("dave")), NO_MAILBOX)
        yield self.store.upload_prekeys("dave", None, one_time("dave", 7))
        self.assertEqual((yield self.store.login_state("dave")), LoginState(0, None, 1))


class MemoryStoreTests(StoreTestsMixin, unittest.TestCase):
    """
    The rules, on L{MemoryMailboxStore}.
    """

    def setUp(self) -> None:
        self.clock = SteppedClock(Clock())
        self.store = MemoryMailboxStore(self.clock, LIMITS)


class SQLiteStoreTests(StoreTestsMixin, unittest.TestCase):
    """
    The rules, on the SQLite store in a real file.
    """

    timeout = 20

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.clock = SteppedClock(global_reactor)
        self.store = mailbox_store(self.dir, self.clock, LIMITS)
        self.addCleanup(lambda: self.store.close())
