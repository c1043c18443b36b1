"""
What is particular to the SQLite mailbox store
(L{securechat.server.store.sqlite}, L{securechat.server.store.engine}):
group commit, acknowledgement only after commit, durability across a
restart, the file's mode and pragmas, schema versions; and the relay's purge
timer (L{securechat.server.store.expiry}).

The rules common to every store are in L{tests.test_store}.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from typing import Any, Callable, Generator

from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred, fail, gatherResults, inlineCallbacks
from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.trial import unittest

from securechat.server.store import MAILBOX_FILE, SchemaTooNew, UnusableDatabase, mailbox_store
from securechat.server.store.engine import (SCHEMA, SCHEMA_VERSION, open_prepared,
                                            prepare_schema, run_now)
from securechat.server.store.expiry import purge_service
from securechat.server.store.interface import (
    DAY, DELIVERY, NO_MAILBOX, READ, Duplicate, LoginState, MailboxUsage, StoreError, Stored)
from securechat.server.store.memory import MemoryMailboxStore
from securechat.server.store.sqlite import SQLiteMailboxStore, store_letters_txn
from securechat.server.store.sqlstore import SQLMailboxStore
from securechat.server.store.tally import SUMMARY_SECONDS, CommitTally
from tests.test_store import LIMITS, START, SteppedClock, letter, lid, one_time, signed


class SQLiteCase(unittest.TestCase):
    """
    A store on a real file in the test's temporary directory, with
    L{interactions} counting the transactions it runs.
    """

    timeout = 20

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, MAILBOX_FILE)
        self.clock = SteppedClock(global_reactor)
        self.store = self.open()

    def make_store(self) -> SQLMailboxStore:
        """A store on this case's database (the PostgreSQL cases use theirs)."""
        store = mailbox_store(self.dir, self.clock, LIMITS)
        assert isinstance(store, SQLiteMailboxStore)
        return store

    def open(self) -> Any:
        store = self.make_store()
        self.addCleanup(lambda: store.close())
        #: The description of every transaction, in order.
        self.interactions: list[str] = []
        self.commits: list[int] = []
        real = store.db.runInteraction

        def counting(description: str, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
            self.interactions.append(description)
            d = real(description, self.wrap(f), *args)

            def committed(result: Any) -> Any:
                self.commits.append(len(self.acknowledged))
                return result
            # First in the chain: runs as soon as the commit has returned.
            return d.addBoth(committed)
        self.patch(store.db, "runInteraction", counting)
        self.acknowledged: list[int] = []
        return store

    def wrap(self, f: Callable[..., Any]) -> Callable[..., Any]:
        """
        The transaction function actually run (a test may make it fail).
        """
        return f

    def count_on_disk(self) -> int:
        """
        Letters a separate connection sees committed in the file.
        """
        conn = sqlite3.connect(self.path)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM letters").fetchone()[0])
        finally:
            conn.close()


class GroupCommitTests(SQLiteCase):
    """
    Letters arriving together are committed in one transaction, and each is
    acknowledged only after it.
    """

    def post(self, n: int, on_disk: list[int]) -> Deferred[Any]:
        def acknowledged(outcomes: Any) -> Any:
            self.acknowledged.append(n)
            on_disk.append(self.count_on_disk())
            return outcomes
        # One recipient each: quotas play no part here.
        return self.store.store_letters([letter(n, recipient=f"user{n}")]).addCallback(acknowledged)

    @inlineCallbacks
    def test_oneTransactionPerTurn(self) -> Generator[Any, Any, None]:
        """
        Twenty letters posted in one reactor turn make ONE store-letters
        transaction; none is acknowledged before it has committed, and when
        the first is acknowledged all twenty are already visible on disk to
        another connection.
        """
        on_disk: list[int] = []
        results = yield gatherResults([self.post(n, on_disk) for n in range(20)])
        self.assertEqual(self.interactions, ["store-letters"])
        self.assertEqual(self.commits, [0])
        self.assertEqual(sorted(self.acknowledged), list(range(20)))
        self.assertEqual(on_disk, [20] * 20)
        self.assertEqual(results, [[Stored(START, START + 10 * DAY)]] * 20)

    @inlineCallbacks
    def test_arrivalsDuringCommitShareTheNext(self) -> Generator[Any, Any, None]:
        """
        Letters posted while a commit is in flight wait for it and then
        share the next transaction: three turns of posts, two transactions.
        """
        on_disk: list[int] = []
        first = [self.post(n, on_disk) for n in range(5)]
        # Let the first commit start, then post in two more turns.
        yield deferLater(0)
        self.assertEqual(self.interactions, ["store-letters"])
        second = [self.post(n, on_disk) for n in range(5, 10)]
        yield deferLater(0)
        third = [self.post(n, on_disk) for n in range(10, 15)]
        yield gatherResults(first + second + third)
        self.assertEqual(self.interactions, ["store-letters", "store-letters"])
        self.assertEqual(self.commits, [0, 5])
        # Counted for /metrics (securechat_letter_commits).
        self.assertEqual(self.store.letter_commits, 2)
        # The second commit starts as the first is answered, so the first
        # five may already see it; none is answered before its own commit.
        self.assertEqual(len(on_disk), 15)
        self.assertTrue(all(n >= 5 for n in on_disk[:5]), on_disk)
        self.assertEqual(on_disk[5:], [15] * 10)

    @inlineCallbacks
    def test_storedLettersLoggedNotPerCommit(self) -> Generator[Any, Any, None]:
        """
        A commit of twenty letters logs nothing by itself: the letters
        stored are counted and logged once a minute (L{CommitTally}), and
        what was counted is logged when the store closes (README, "What
        the relay does on its own").
        """
        events: list[dict[str, Any]] = []
        self.store.log = Logger(observer=events.append)
        yield gatherResults([self.post(n, []) for n in range(20)])
        self.assertEqual(events, [])
        yield self.store.close()
        self.assertEqual([formatEvent(e) for e in events],
                         ["mailbox: 20 letters stored in 1 commit in the last 0 s"])
        self.assertEqual([e["log_level"] for e in events], [LogLevel.info])

    @inlineCallbacks
    def test_failedCommitAcknowledgesNothing(self) -> Generator[Any, Any, None]:
        """
        If the transaction fails after its inserts, every letter in it is
        answered with the failure and none is stored; a resend then stores
        them (they are not taken for duplicates).
        """
        self.fail_next = True
        results = yield gatherResults(
            [self.store.store_letters([letter(n)]).addErrback(lambda f: f.value)
             for n in range(3)])
        self.assertEqual([str(r) for r in results], ["disk I/O error"] * 3)
        self.assertEqual(len(self.flushLoggedErrors(sqlite3.OperationalError)), 1)
        self.assertEqual(self.count_on_disk(), 0)
        # A transaction that failed is not a group commit.
        self.assertEqual(self.store.letter_commits, 0)
        outcomes = yield self.store.store_letters([letter(0), letter(1), letter(2)])
        self.assertEqual([type(o) for o in outcomes], [Stored] * 3)
        self.assertEqual(self.store.letter_commits, 1)

    fail_next = False

    def wrap(self, f: Callable[..., Any]) -> Callable[..., Any]:
        def failing(txn: Any, *args: Any) -> Any:
            result = f(txn, *args)
            if self.fail_next:
                self.fail_next = False
                raise sqlite3.OperationalError("disk I/O error")
            return result
        return failing


def deferLater(seconds: float) -> Deferred[None]:
    """
    Fire after C{seconds} on the real reactor (0: the next turn).
    """
    from twisted.internet.task import deferLater as later
    return later(global_reactor, seconds, lambda: None)


class DurabilityTests(SQLiteCase):
    """
    Everything acknowledged survives closing and reopening the file.
    """

    @inlineCallbacks
    def test_reopenKeepsEverything(self) -> Generator[Any, Any, None]:
        """
        After close and reopen: letters, bodies, status, receipts, deletions
        and prekeys are all there, and a resend of a letter sent before the
        restart is a duplicate answered with the original time.
        """
        yield self.store.upload_prekeys("bob", signed("bob", 1), one_time("bob", 1, 2))
        yield self.store.claim_bundle("bob")
        yield self.store.store_letters([letter(1), letter(2)])
        yield self.store.mark("bob", "alice", lid(1), DELIVERY, b"d1")
        yield self.store.mark("bob", "alice", lid(1), READ, b"r1")
        yield self.store.delete_letter("bob", "alice", lid(1))
        yield self.store.close()

        self.clock.advance(3600)
        store = self.open()
        self.assertEqual((yield store.store_letters([letter(1), letter(2)])),
                         [Duplicate(START, START + 10 * DAY, "bob")] * 2)
        self.assertEqual([s.letter_id for s in (yield store.list_letters("bob", False))],
                         [lid(2)])
        self.assertEqual((yield store.fetch_letter("bob", "alice", lid(2))).body, b"\x02" * 100)
        status = yield store.sent_status("alice", None)
        self.assertEqual([(s.letter_id, s.delivery_receipt, s.read_receipt) for s in status],
                         [(lid(1), b"d1", b"r1"), (lid(2), None, None)])
        self.assertEqual((yield store.prekey_count("bob")), 1)
        self.assertEqual((yield store.signed_prekeys("bob")), [signed("bob", 1)])
        self.assertEqual((yield store.usage(None)), [MailboxUsage("bob", 1, 100)])

    @inlineCallbacks
    def test_closeCommitsWhatIsPending(self) -> Generator[Any, Any, None]:
        """
        Closing right after a post commits and acknowledges it first; the
        closed store then refuses work with a clear error.
        """
        d = self.store.store_letters([letter(1)])
        yield self.store.close()
        self.assertEqual((yield d), [Stored(START, START + 10 * DAY)])
        self.assertEqual(self.count_on_disk(), 1)
        for call in [self.store.store_letters([letter(2)]), self.store.usage(None)]:
            [failure] = yield call.addErrback(lambda f: [f])
            failure.trap(StoreError)
            self.assertEqual(str(failure.value), "the mailbox store is closed")

    def test_fileModeAndPragmas(self) -> Deferred[None]:
        """
        The file (and its WAL files) is mode 0600 and the pool's connection
        runs with WAL, synchronous=FULL and foreign keys on.
        """
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)

        def pragmas(txn: Any) -> tuple[Any, ...]:
            return tuple(txn.execute(f"PRAGMA {name}").fetchone()[0]
                         for name in ("journal_mode", "synchronous", "foreign_keys"))
        d = self.store.db.runInteraction("pragmas", pragmas)
        d.addCallback(self.assertEqual, ("wal", 2, 1))

        def companions(_: None) -> None:
            # The write-ahead log and its index take the database's mode.
            for suffix in ("-wal", "-shm"):
                self.assertEqual(stat.S_IMODE(os.stat(self.path + suffix).st_mode), 0o600)
        return d.addCallback(companions)

    def test_schemaVersionRecorded(self) -> None:
        """
        A new file gets the current schema version.
        """
        conn = sqlite3.connect(self.path)
        self.addCleanup(conn.close)
        self.assertEqual(conn.execute("SELECT version FROM schema_version").fetchall(),
                         [(SCHEMA_VERSION,)])

    @inlineCallbacks
    def test_newerSchemaRefused(self) -> Generator[Any, Any, None]:
        """
        A database written by a newer securechat is refused at start-up
        with one line saying what to do, and is left as it was.
        """
        yield self.store.close()
        conn = sqlite3.connect(self.path)
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
        conn.commit()
        conn.close()
        error = self.assertRaises(SchemaTooNew, mailbox_store, self.dir, self.clock, LIMITS)
        self.assertEqual(str(error), f"{self.path} has mailbox schema version {SCHEMA_VERSION + 1}"
                         f", newer than this securechat understands ({SCHEMA_VERSION}): upgrade "
                         "securechat, or restore a backup made by this version")
        conn = sqlite3.connect(self.path)
        self.addCleanup(conn.close)
        self.assertEqual(conn.execute("SELECT version FROM schema_version").fetchone()[0],
                         SCHEMA_VERSION + 1)


class FailingExpiry(MemoryMailboxStore):
    """
    A store whose first C{expire} fails.
    """

    failures = 1

    def expire(self, now: int) -> Deferred[int]:
        if self.failures:
            self.failures -= 1
            return fail(StoreError("the disk went away"))
        return super().expire(now)


class PurgeServiceTests(unittest.TestCase):
    """
    The relay's timer that purges expired letters.
    """

    def letters(self, store: MemoryMailboxStore) -> int:
        """
        Letters in the store, expired or not (the sender's view shows every
        status row; the clock is set back to read it).
        """
        clock = store.clock
        assert isinstance(clock, Clock)
        now, clock.rightNow = clock.rightNow, 0
        try:
            return len(self.successResultOf(store.sent_status("alice", None)))
        finally:
            clock.rightNow = now

    def test_purgesOnTimer(self) -> None:
        """
        The timer purges at start-up and then every interval, by the clock
        it was given.
        """
        clock = Clock()
        store = MemoryMailboxStore(clock, LIMITS)
        store.store_letters([letter(1)])
        clock.advance(DAY)
        store.store_letters([letter(2)])
        service = purge_service(store, clock, interval=DAY)
        service.startService()
        self.addCleanup(service.stopService)
        self.assertEqual(self.letters(store), 2)
        clock.advance(9 * DAY)
        self.assertEqual(self.letters(store), 1)
        clock.advance(DAY)
        self.assertEqual(self.letters(store), 0)

    def test_failureIsLoggedAndTheTimerGoesOn(self) -> None:
        """
        A failing purge is logged and does not stop the timer: the next
        interval purges.
        """
        clock = Clock()
        store = FailingExpiry(clock, LIMITS)
        store.store_letters([letter(1)])
        clock.advance(10 * DAY)
        service = purge_service(store, clock, interval=60)
        service.startService()
        self.addCleanup(service.stopService)
        [logged] = self.flushLoggedErrors(StoreError)
        self.assertEqual(str(logged.value), "the disk went away")
        self.assertEqual(self.letters(store), 1)
        clock.advance(60)
        self.assertEqual(self.letters(store), 0)


class UnusableFileTests(unittest.TestCase):
    """
    A mailbox file that is not a database stops start-up with one line.
    """

    def test_notADatabase(self) -> None:
        """
        The relay's factory refuses a file that is not SQLite, naming it.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, MAILBOX_FILE)
        with open(path, "wb") as f:
            f.write(b"not a database" * 100)
        error = self.assertRaises(UnusableDatabase, mailbox_store, directory, Clock(), LIMITS)
        self.assertEqual(str(error), f"{path} is not a usable mailbox database "
                         "(file is not a database)")


class MigrationTests(unittest.TestCase):
    """
    Schema steps are applied in order at start-up, each database remembering
    its version (L{securechat.server.store.engine.prepare_schema}).
    """

    def setUp(self) -> None:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        self.path = os.path.join(directory, MAILBOX_FILE)
        self.conn = open_prepared(self.path)
        self.addCleanup(self.conn.close)
        run_now(self.conn, store_letters_txn, [letter(1)], START, LIMITS)

    def test_laterStepApplied(self) -> None:
        """
        A database at the current version meeting code with one more step
        gets it, keeping its letters, and records the new version; preparing
        again changes nothing.
        """
        schema = SCHEMA + ["CREATE TABLE extra (x INTEGER); INSERT INTO extra VALUES (7)"]
        self.assertEqual(prepare_schema(self.conn, self.path, schema), SCHEMA_VERSION)
        self.assertEqual(self.conn.execute("SELECT version FROM schema_version").fetchall(),
                         [(SCHEMA_VERSION + 1,)])
        self.assertEqual(self.conn.execute("SELECT x FROM extra").fetchall(), [(7,)])
        self.assertEqual(self.conn.execute("SELECT COUNT(*) FROM letters").fetchone()[0], 1)
        self.assertEqual(prepare_schema(self.conn, self.path, schema), SCHEMA_VERSION + 1)
        self.assertEqual(self.conn.execute("SELECT x FROM extra").fetchall(), [(7,)])

    def test_step2SeparatesFetchedFromDelivered(self) -> None:
        """
        Step 2 (14.6: C{delivered_at} is the delivery receipt's time): in a
        version 1 file, a letter fetched without a receipt keeps being
        fetched but loses its made-up delivery time; one with a receipt
        keeps its time; one never fetched stays new.
        """
        path = os.path.join(os.path.dirname(self.path), "v1.sqlite3")
        conn = sqlite3.connect(path, isolation_level=None)
        self.addCleanup(conn.close)
        prepare_schema(conn, path, SCHEMA[:1])
        for n, delivered, receipt in [(1, 5, None), (2, 6, b"d2"), (3, None, None)]:
            conn.execute("INSERT INTO letters (sender, letter_id, recipient, size, stored_at,"
                         " expires_at, delivered_at, delivery_receipt) VALUES"
                         " ('alice', ?, 'bob', 1, 1, 2, ?, ?)", (bytes([n]) * 16, delivered, receipt))
        self.assertEqual(prepare_schema(conn, path), 1)
        self.assertEqual(conn.execute("SELECT fetched, delivered_at FROM letters ORDER BY id")
                         .fetchall(), [(1, None), (1, 6), (0, None)])

    def test_step3CountsEachMailbox(self) -> None:
        """
        Step 3 (the quota from a counter row): in a version 2 file, each
        recipient's letters not deleted, expired ones included (they count
        until purged), are counted with their bytes; deleted ones are not.
        """
        path = os.path.join(os.path.dirname(self.path), "v2.sqlite3")
        conn = sqlite3.connect(path, isolation_level=None)
        self.addCleanup(conn.close)
        prepare_schema(conn, path, SCHEMA[:2])
        for n, recipient, size, deleted in [(1, "bob", 10, 0), (2, "bob", 20, 0),
                                            (3, "bob", 40, 1), (4, "carol", 5, 0),
                                            (5, "dave", 7, 1)]:
            conn.execute("INSERT INTO letters (sender, letter_id, recipient, size, stored_at,"
                         " expires_at, deleted) VALUES ('alice', ?, ?, ?, 1, 2, ?)",
                         (bytes([n]) * 16, recipient, size, deleted))
        self.assertEqual(prepare_schema(conn, path), 2)
        self.assertEqual(conn.execute("SELECT recipient, letters, bytes FROM mailbox_usage"
                                      " ORDER BY recipient").fetchall(),
                         [("bob", 2, 30), ("carol", 1, 5)])

    def test_failingStepLeavesTheDatabaseAsItWas(self) -> None:
        """
        A step that fails half-way is rolled back whole: no new table, the
        version unchanged.
        """
        schema = SCHEMA + ["CREATE TABLE extra (x INTEGER); INSERT INTO missing VALUES (1)"]
        error = self.assertRaises(sqlite3.OperationalError, prepare_schema, self.conn, self.path,
                                  schema)
        self.assertEqual(str(error), "no such table: missing")
        self.assertEqual(self.conn.execute("SELECT version FROM schema_version").fetchall(),
                         [(SCHEMA_VERSION,)])
        self.assertEqual(self.conn.execute(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'extra'").fetchone()[0], 0)


class UsageCountTests(SQLiteCase):
    """
    The quota is read from each recipient's C{mailbox_usage} row (schema
    step 3), kept in the transactions that store, delete and purge letters,
    so it always equals a scan of the mailbox (expired letters included
    until purged; the quota check itself then scans).
    """

    def counted(self) -> list[tuple[str, int, int]]:
        return self.conn_rows("SELECT recipient, letters, bytes FROM mailbox_usage"
                              " ORDER BY recipient")

    def scanned(self) -> list[tuple[str, int, int]]:
        return self.conn_rows("SELECT recipient, COUNT(*), SUM(size) FROM letters"
                              " WHERE deleted = 0 GROUP BY recipient ORDER BY recipient")

    def conn_rows(self, query: str) -> list[tuple[str, int, int]]:
        conn = sqlite3.connect(self.path)
        try:
            return [tuple(row) for row in conn.execute(query).fetchall()]  # type: ignore[misc]
        finally:
            conn.close()

    @inlineCallbacks
    def test_countFollowsStoreDeleteAndPurge(self) -> Generator[Any, Any, None]:
        """
        After storing (a duplicate and a refusal among them), deleting and
        purging, each recipient's counted letters and bytes are what a scan
        finds, and a recipient whose letters all went has no row.
        """
        yield self.store.store_letters([letter(n, recipient="bob") for n in range(3)]
                                       + [letter(0, recipient="bob"), letter(9, recipient="carol")])
        self.assertEqual(self.counted(), self.scanned())
        self.assertEqual([row[:2] for row in self.counted()], [("bob", 3), ("carol", 1)])
        first = letter(0, recipient="bob")
        yield self.store.delete_letter("bob", first.sender, first.letter_id)
        self.assertEqual(self.counted(), self.scanned())
        self.assertEqual(self.counted()[0][1], 2)
        yield self.store.expire(START + 11 * DAY)
        self.assertEqual(self.counted(), [])


class CommitTallyTests(unittest.TestCase):
    """
    L{CommitTally}: letters stored, one line per minute at most.
    """

    def test_oneLinePerMinute(self) -> None:
        """
        Commits are added up and reported once, L{SUMMARY_SECONDS} after
        the first of them; a quiet minute reports nothing, and the next
        commit starts a new count.
        """
        clock = Clock()
        lines: list[tuple[int, int, float]] = []
        tally = CommitTally(clock, lambda *line: lines.append(line))
        tally.add(20)
        clock.advance(10)
        tally.add(5)
        clock.advance(SUMMARY_SECONDS - 10 - 0.5)
        self.assertEqual(lines, [])
        clock.advance(0.5)
        self.assertEqual(lines, [(25, 2, SUMMARY_SECONDS)])
        clock.advance(SUMMARY_SECONDS * 3)
        self.assertEqual(len(lines), 1)
        tally.add(1)
        tally.flush()
        self.assertEqual(lines[1:], [(1, 1, 0.0)])
        self.assertEqual(clock.getDelayedCalls(), [])


class LoginStateTests(SQLiteCase):
    """
    The SQLite store answers login_state without a transaction for users it
    holds nothing for, and reads for every other (IMailboxStore.login_state).
    """

    @inlineCallbacks
    def test_noTransactionForUserWithoutMailbox(self) -> Generator[Any, Any, None]:
        """
        A user with no letter and no prekey is answered NO_MAILBOX at once,
        without a transaction; one with a letter is read, in one.
        """
        yield self.store.store_letters([letter(1, recipient="bob")])
        del self.interactions[:]
        d = self.store.login_state("carol")
        self.assertEqual(self.successResultOf(d), NO_MAILBOX)
        self.assertEqual(self.interactions, [])
        self.assertEqual((yield self.store.login_state("bob")), LoginState(1, None, 0))
        self.assertEqual(self.interactions, ["login-state"])

    @inlineCallbacks
    def test_holdersReadWhenOpened(self) -> Generator[Any, Any, None]:
        """
        After a restart, users holding a letter or prekeys (signed or
        one-time only) are read at login, not taken for users without a
        mailbox; a user whose only letter was deleted is not.
        """
        yield self.store.store_letters([letter(1, recipient="bob"),
                                        letter(2, recipient="erin")])
        yield self.store.delete_letter("erin", "alice", lid(2))
        yield self.store.upload_prekeys("carol", signed("carol", 1), [])
        yield self.store.upload_prekeys("dave", None, one_time("dave", 1, 2))
        yield self.store.close()
        self.store = self.open()
        self.assertEqual(self.store._holders, {"bob", "carol", "dave"})
        self.assertEqual((yield self.store.login_state("bob")), LoginState(1, None, 0))
        self.assertEqual((yield self.store.login_state("carol")),
                         LoginState(0, signed("carol", 1), 0))
        self.assertEqual((yield self.store.login_state("dave")), LoginState(0, None, 2))
        self.assertEqual(self.interactions, ["login-state"] * 3)

    @inlineCallbacks
    def test_letterAskedForBeforeLoginIsRead(self) -> Generator[Any, Any, None]:
        """
        A letter asked for but not yet committed when its recipient (who
        had nothing) logs in: the login reads the store instead of
        answering NO_MAILBOX from memory, so whichever comes first, the
        letter is not lost to the login (if the read ran first, the relay's
        LETTER_ARRIVED tells the user).
        """
        stored = self.store.store_letters([letter(1, recipient="dave")])
        state = self.store.login_state("dave")
        self.assertNoResult(state)
        yield stored
        self.assertIn((yield state), (NO_MAILBOX, LoginState(1, None, 0)))
        self.assertIn("login-state", self.interactions)
        self.assertEqual((yield self.store.login_state("dave")), LoginState(1, None, 0))

    def test_unreadableAtOpen(self) -> None:
        """
        A file whose tables cannot be read when the store opens stops it
        with UnusableDatabase naming the file, in one line.
        """
        conn = sqlite3.connect(self.path)
        conn.execute("DROP TABLE one_time_prekeys")
        conn.commit()
        conn.close()
        e = self.assertRaises(UnusableDatabase, mailbox_store, self.dir, self.clock, LIMITS)
        self.assertIn(self.path, str(e))
        self.assertIn("no such table: one_time_prekeys", str(e))
        self.assertNotIn("\n", str(e))
