"""
PostgreSQL stopped and started while letters are posted
(L{securechat.server.store.postgres}, docs/protocol.rst 14.7 TRY_AGAIN):
every letter acknowledged survives, every other one was refused with
L{StoreUnavailable} (the relay's TRY_AGAIN), is stored when sent again
once PostgreSQL is back, and the store logs one line when the database
goes and one when it is back.  Each test has its own throwaway server
(L{tests.pgservice.Cluster}), stopped by its PID (fast shutdown: the open
transactions are aborted, as when the server crashes or is restarted).
"""

from __future__ import annotations

from typing import Any, Callable, Generator

from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.logger import Logger, formatEvent
from twisted.trial import unittest

from securechat.server.limits import Limits
from securechat.server.mailbox import mailbox_limits
from securechat.server.store import mailbox_store
from securechat.server.store.interface import DAY, MailboxLimits, StoreUnavailable, Stored
from securechat.wire.mailbox import LetterRefused, LetterStored, PostLetter
from securechat.wire.relay import Reason
from tests.pgservice import Cluster, need_postgres
from tests.relay_harness import Harness
from tests.test_store import SteppedClock, letter, lid
from tests.test_store_postgres import query

#: No quota or size in the way: the test is about durability.
ROOMY = MailboxLimits(max_letters=10_000, max_bytes=1 << 30, expiry_seconds=10 * DAY)


class RestartCase(unittest.TestCase):
    """A PostgreSQL server of the test's own, and a store on it."""

    timeout = 120

    def setUp(self) -> None:
        need_postgres(self)
        self.cluster = Cluster()
        self.addCleanup(self.cluster.remove)
        self.cluster.start()
        self.cluster.execute("CREATE DATABASE securechat")
        self.url = self.cluster.url("securechat")
        self.clock = SteppedClock(global_reactor)
        self.events: list[dict[str, Any]] = []

    def open(self, limits: MailboxLimits = ROOMY) -> Any:
        store = mailbox_store("/nonexistent", self.clock, limits, store=self.url)
        self.addCleanup(store.close)
        store.db.log = Logger(observer=self.events.append)
        return store

    def lines(self) -> list[str]:
        return [formatEvent(e) for e in self.events]

    def stored_ids(self) -> list[bytes]:
        return sorted(bytes(row[0]) for row in query(self.url, "SELECT letter_id FROM letters"))


class StoreRestartTests(RestartCase):
    """The store itself across a stop and a start."""

    @inlineCallbacks
    def post(self, store: Any, numbers: range, acknowledged: set[int],
             refused: set[int]) -> Generator[Any, Any, None]:
        """Post each letter (one per call, in one turn); sort out the answers."""
        def answered(outcomes: Any, n: int) -> None:
            self.assertIsInstance(outcomes[0], Stored)
            acknowledged.add(n)

        def failed(failure: Any, n: int) -> None:
            failure.trap(StoreUnavailable)
            refused.add(n)
        yield gatherResults([store.store_letters([letter(n, recipient=f"r{n % 3}")])
                             .addCallbacks(answered, failed, (n,), None, (n,), None)
                             for n in numbers])

    @inlineCallbacks
    def test_stopMidCommitAndWhileDown(self) -> Generator[Any, Any, None]:
        """
        Letters acknowledged before; a group commit during which PostgreSQL
        stops (its letters refused, none acknowledged); letters posted while
        it is down (refused); PostgreSQL started; letters stored again at
        once; every refused letter sent again is stored.  In the database:
        every acknowledged letter, once each; one line when it went, one
        when it was back.
        """
        store = self.open()
        acknowledged: set[int] = set()
        refused: set[int] = set()
        yield self.post(store, range(1, 21), acknowledged, refused)
        self.assertEqual((len(acknowledged), refused), (20, set()))

        # PostgreSQL stops inside the next group commit, after its inserts.
        real = store.db.runInteraction
        stop_inside = [True]

        def stopping(description: str, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
            def transaction(txn: Any, *a: Any) -> Any:
                result = f(txn, *a)
                if stop_inside and description == "store-letters":
                    stop_inside.clear()
                    self.cluster.stop()
                return result
            return real(description, transaction, *args)
        store.db.runInteraction = stopping
        yield self.post(store, range(21, 31), acknowledged, refused)
        self.assertEqual((len(acknowledged), sorted(refused)), (20, list(range(21, 31))))
        self.assertFalse(store.db.available)

        yield self.post(store, range(31, 41), acknowledged, refused)
        self.assertEqual((len(acknowledged), len(refused)), (20, 20))
        gone = f"store: {store.db.path} unavailable: "
        [line] = self.lines()
        self.assertTrue(line.startswith(gone), line)
        self.assertTrue(line.endswith("; refusing what needs the store (TRY_AGAIN) until it is "
                                      "back"), line)

        self.cluster.start()
        yield self.post(store, range(41, 51), acknowledged, refused)
        self.assertEqual((len(acknowledged), len(refused)), (30, 20))
        self.assertTrue(store.db.available)
        again: set[int] = set()
        yield self.post(store, range(21, 41), again, set())
        self.assertEqual(again, set(range(21, 41)))
        acknowledged |= again

        self.assertEqual(self.stored_ids(), sorted(lid(n) for n in acknowledged))
        self.assertEqual(len(acknowledged), 50)
        self.assertEqual(self.lines(), [line, f"store: {store.db.path} is available again"])

    @inlineCallbacks
    def test_firstLetterAfterRestartStored(self) -> Generator[Any, Any, None]:
        """
        PostgreSQL restarted between two letters (the pool's connection is
        stale): the next letter is stored, not refused (it is run again on
        a new connection: nothing of it was committed), and nothing is
        logged.
        """
        store = self.open()
        self.assertIsInstance((yield store.store_letters([letter(1)]))[0], Stored)
        self.cluster.stop()
        self.cluster.start()
        self.assertIsInstance((yield store.store_letters([letter(2)]))[0], Stored)
        self.assertEqual(self.stored_ids(), [lid(1), lid(2)])
        self.assertEqual(self.lines(), [])

    @inlineCallbacks
    def test_readsRefusedWhileDown(self) -> Generator[Any, Any, None]:
        """Reads fail with StoreUnavailable too, and work once it is back."""
        store = self.open()
        yield store.store_letters([letter(1)])
        self.cluster.stop()
        yield self.assertFailure(store.list_letters("bob", False), StoreUnavailable)
        yield self.assertFailure(store.login_state("bob"), StoreUnavailable)
        self.cluster.start()
        self.assertEqual(len((yield store.list_letters("bob", False))), 1)


class RelayRestartTests(RestartCase):
    """The relay on the real PostgreSQL store: TRY_AGAIN, then stored."""

    @inlineCallbacks
    def test_letterTryAgainThenStored(self) -> Generator[Any, Any, None]:
        """
        With PostgreSQL stopped, POST_LETTER is answered
        LETTER_REFUSED(TRY_AGAIN) on a connection that stays open; started
        again, the same letter is stored, and it is in the database.
        """
        store = self.open(mailbox_limits(Limits()))
        calls: list[Deferred[Any]] = []

        class Watched:
            def __getattr__(self, name: str) -> Any:
                method = getattr(store, name)
                if not callable(method):
                    return method

                def call(*args: Any) -> Any:
                    d = method(*args)
                    calls.append(d)
                    return d
                return call
        h = Harness(store=Watched())

        @inlineCallbacks
        def settle() -> Generator[Any, Any, None]:
            h.pump()
            while calls:
                d = calls.pop(0)
                waiter: Deferred[None] = Deferred()
                d.addBoth(lambda result: (waiter.callback(None), result)[1])
                yield waiter
                h.pump()

        alice = h.login("alice")
        yield settle()
        self.cluster.stop()
        alice.send(PostLetter("bob", lid(1), b"sealed"))
        yield settle()
        self.assertEqual(alice.take(), [LetterRefused("bob", lid(1), Reason.TRY_AGAIN)])
        self.assertFalse(alice.ended)
        self.cluster.start()
        alice.send(PostLetter("bob", lid(1), b"sealed"))
        yield settle()
        [stored] = alice.take()
        self.assertIsInstance(stored, LetterStored)
        self.assertEqual(self.stored_ids(), [lid(1)])
