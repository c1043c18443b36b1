"""
The store on PostgreSQL (L{securechat.server.store.postgres}), on a
throwaway server (L{tests.pgservice}, a fresh database per test): the
whole behavioural suites of the mailbox (L{StoreTestsMixin}) and groups
(L{GroupStoreTestsMixin}), the engine tests that SQLite has (group commit,
acknowledgement after commit, durability, the usage count, migrations, a
schema too new), and what only PostgreSQL has: several processes on one
database, the SQL translation, and the server going away and coming back
(L{tests.test_store_pgrestart}).

Skipped loudly where PostgreSQL is not installed; failing instead under
C{SECURECHAT_REQUIRE_SERVICES=1} (C{.ci/run}).
"""

from __future__ import annotations

from typing import Any, Generator

from twisted.internet import reactor as global_reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest

from securechat.server.store import SchemaTooNew, UnusableDatabase, mailbox_store
from securechat.server.store.schema import SCHEMA, SCHEMA_VERSION
from securechat.server.store.interface import (
    DAY, MAILBOX_FULL_LETTERS, LoginState, NO_MAILBOX, Refused, StoreUnavailable, Stored)
from securechat.server.store.sqlstore import SQLMailboxStore
from tests.pgservice import shared_cluster
from tests.test_group_store import SQLiteGroupStoreTests
from tests.test_store import LIMITS, START, SteppedClock, StoreTestsMixin, letter, one_time
from tests.test_store_sqlite import DurabilityTests, GroupCommitTests, SQLiteCase, UsageCountTests


def query(url: str, statement: str, parameters: Any = None) -> list[tuple[Any, ...]]:
    """Rows of C{statement} read on a separate connection (another process's view)."""
    import psycopg2
    conn = psycopg2.connect(url)
    try:
        cur = conn.cursor()
        cur.execute(statement, parameters)
        rows = [tuple(row) for row in cur.fetchall()] if cur.description else []
        conn.commit()
        return rows
    finally:
        conn.close()


class PostgresStoreTests(StoreTestsMixin, unittest.TestCase):
    """The mailbox store's rules, on PostgreSQL."""

    timeout = 30

    def setUp(self) -> None:
        self.url = shared_cluster(self).fresh_database(self)
        self.clock = SteppedClock(global_reactor)
        self.store = mailbox_store("/nonexistent", self.clock, LIMITS, store=self.url)
        self.addCleanup(lambda: self.store.close())


class PostgresGroupStoreTests(SQLiteGroupStoreTests):
    """The group store's rules, group commit and reopening, on PostgreSQL."""

    timeout = 30

    def openMailbox(self) -> Any:
        if not hasattr(self, "url"):
            self.url = shared_cluster(self).fresh_database(self)
        mailbox = mailbox_store("/nonexistent", self.clock, store=self.url)
        self.addCleanup(lambda: mailbox.close())
        return mailbox


    @inlineCallbacks
    def test_loginReadsGroupsAnotherProcessChanged(self) -> Generator[Any, Any, None]:
        """
        A group made through another process (another store on the same
        database) shows at the login of its members here, though this
        store never heard of them: on PostgreSQL no login is answered from
        memory, as the SQLite store does for users it knows are in no group.
        """
        from securechat.server.store import group_store
        from tests.test_groupstate import GID, Chain
        other = group_store(self.openMailbox(), self.clock)
        self.assertEqual((yield self.store.groups_of("alice")), [])
        chain = Chain()
        yield other.commit_change(chain.changes[0].encode(), chain.state)
        found = yield self.store.groups_of("alice")
        self.assertEqual([summary.group_id for summary in found], [GID])


class PostgresCase(SQLiteCase):
    """L{SQLiteCase}'s store and views, on a fresh PostgreSQL database."""

    timeout = 30

    def setUp(self) -> None:
        self.url = shared_cluster(self).fresh_database(self)
        super().setUp()

    def make_store(self) -> SQLMailboxStore:
        store = mailbox_store("/nonexistent", self.clock, LIMITS, store=self.url)
        assert isinstance(store, SQLMailboxStore)
        return store

    def count_on_disk(self) -> int:
        return int(query(self.url, "SELECT COUNT(*) FROM letters")[0][0])

    def conn_rows(self, statement: str) -> list[tuple[Any, ...]]:
        return [(row[0], *[int(v) for v in row[1:]]) for row in query(self.url, statement)]


class PostgresGroupCommitTests(PostgresCase, GroupCommitTests):
    """One transaction per turn, acknowledged after commit, on PostgreSQL."""


class PostgresUsageCountTests(PostgresCase, UsageCountTests):
    """The counted usage equals a scan, on PostgreSQL."""


class PostgresDurabilityTests(PostgresCase, DurabilityTests):
    """
    Everything acknowledged survives closing and reopening; the connection
    is serializable and durable; a newer schema is refused.
    """

    @inlineCallbacks
    def test_fileModeAndPragmas(self) -> Generator[Any, Any, None]:
        """
        (PostgreSQL's counterpart of SQLite's file mode and pragmas.)  The
        pool's connection runs serializable transactions with fsync and
        synchronous commit on: a commit has returned only once it is in
        the write-ahead log on disk.
        """
        def settings(txn: Any) -> list[str]:
            values = []
            for name in ("transaction_isolation", "fsync", "synchronous_commit"):
                txn.execute(f"SHOW {name}")
                values.append(txn.fetchone()[0])
            return values
        store = self.store
        self.assertEqual((yield store.db.runInteraction("settings", settings)),
                         ["serializable", "on", "on"])

    def test_schemaVersionRecorded(self) -> None:
        """A new database gets the current schema version."""
        self.assertEqual(query(self.url, "SELECT version FROM schema_version"),
                         [(SCHEMA_VERSION,)])

    @inlineCallbacks
    def test_newerSchemaRefused(self) -> Generator[Any, Any, None]:
        """
        A database whose schema is newer than the code stops the store
        from opening with one line saying what to do, and is left as it was.
        """
        yield self.store.close()
        query(self.url, "UPDATE schema_version SET version = %s", (SCHEMA_VERSION + 1,))
        error = self.assertRaises(SchemaTooNew, self.make_store)
        shown = self.store.db.path
        self.assertEqual(str(error), f"{shown} has mailbox schema version {SCHEMA_VERSION + 1}, "
                         f"newer than this securechat understands ({SCHEMA_VERSION}): upgrade "
                         "securechat, or restore a backup made by this version")
        self.assertEqual(query(self.url, "SELECT version FROM schema_version"),
                         [(SCHEMA_VERSION + 1,)])


class SeveralProcessesTests(PostgresCase):
    """
    Two stores on one database, as two relay processes: each sees what the
    other committed, at once.
    """

    @inlineCallbacks
    def test_loginReadsWhatAnotherProcessStored(self) -> Generator[Any, Any, None]:
        """
        A letter another process stored for a user this one has never
        heard of shows at that user's login here (no answer from memory:
        every login reads), and a resend to this process is a duplicate.
        """
        other = self.open()
        self.assertEqual((yield self.store.login_state("dave")), NO_MAILBOX)
        yield other.store_letters([letter(1, recipient="dave")])
        self.assertEqual((yield self.store.login_state("dave")), LoginState(1, None, 0))
        [outcome] = yield self.store.store_letters([letter(1, recipient="dave")])
        self.assertEqual(type(outcome).__name__, "Duplicate")

    @inlineCallbacks
    def test_quotaHoldsAcrossProcesses(self) -> Generator[Any, Any, None]:
        """
        Letters to one recipient posted through two processes at once:
        the quota (3 letters) holds over both, as it does on one.
        """
        other = self.open()
        first = self.store.store_letters([letter(n, recipient="bob") for n in range(1, 3)])
        second = other.store_letters([letter(n, recipient="bob") for n in range(3, 5)])
        outcomes = (yield first) + (yield second)
        self.assertEqual(sum(1 for o in outcomes if isinstance(o, Stored)), 3)
        self.assertEqual(query(self.url, "SELECT letters FROM mailbox_usage"), [(3,)])

    @inlineCallbacks
    def test_quotaReadAgainAfterAnotherProcess(self) -> Generator[Any, Any, None]:
        """
        Nothing of the quota is kept in memory on PostgreSQL (the SQLite
        store, the file's only writer, keeps counts): a letter another
        process stored since this one last stored to the same recipient
        counts here at once.
        """
        other = self.open()
        yield self.store.store_letters([letter(1, recipient="bob"), letter(2, recipient="bob")])
        yield other.store_letters([letter(3, recipient="bob")])
        [outcome] = yield self.store.store_letters([letter(4, recipient="bob")])
        self.assertEqual(outcome, Refused(MAILBOX_FULL_LETTERS))

    @inlineCallbacks
    def test_oneTimePrekeyHandedOutOnce(self) -> Generator[Any, Any, None]:
        """
        Bundles claimed through two processes at once never carry the same
        one-time prekey.
        """
        other = self.open()
        from tests.test_store import signed
        yield self.store.upload_prekeys("bob", signed("bob", 1), one_time("bob", 1, 2, 3))
        claims = [self.store.claim_bundle("bob"), other.claim_bundle("bob"),
                  self.store.claim_bundle("bob"), other.claim_bundle("bob")]
        bundles = []
        for d in claims:
            bundles.append((yield d))
        ids = [b.one_time.prekey_id for b in bundles if b.one_time is not None]
        self.assertEqual(sorted(ids), [1, 2, 3])


class ConflictRetryTests(PostgresCase):
    """
    A transaction PostgreSQL aborts for a conflict with another process is
    run again; one that keeps conflicting is TRY_AGAIN (StoreUnavailable).
    """

    conflicts = 0

    def wrap(self, f: Any) -> Any:
        def conflicting(txn: Any, *args: Any) -> Any:
            self.runs += 1
            result = f(txn, *args)
            if self.conflicts:
                self.conflicts -= 1
                import psycopg2.errors
                raise psycopg2.errors.SerializationFailure(
                    "could not serialize access due to read/write dependencies among "
                    "transactions")
            return result
        return conflicting

    @inlineCallbacks
    def test_conflictRunAgain(self) -> Generator[Any, Any, None]:
        """Two conflicts, then the third run commits: stored once."""
        self.runs, self.conflicts = 0, 2
        self.assertEqual((yield self.store.store_letters([letter(1)])),
                         [Stored(START, START + 10 * DAY)])
        self.assertEqual(self.runs, 3)
        self.assertEqual(self.count_on_disk(), 1)

    @inlineCallbacks
    def test_conflictsLeftAreTryAgain(self) -> Generator[Any, Any, None]:
        """A transaction aborted at every run fails with StoreUnavailable, storing nothing."""
        from securechat.server.store.postgres import RETRIES
        self.runs, self.conflicts = 0, RETRIES
        yield self.assertFailure(self.store.store_letters([letter(1)]), StoreUnavailable)
        self.assertEqual(self.runs, RETRIES)
        self.assertEqual(self.count_on_disk(), 0)


class RetryPauseTests(unittest.TestCase):
    """
    The pause between runs of a conflicting transaction doubles, so that
    the reruns outlast a conflicting transaction a loaded machine keeps
    open (a fixed small pause gave up within 0.1 s), and stays bounded.
    """

    def test_pauseDoubles(self) -> None:
        from securechat.server.store.postgres import RETRY_PAUSE, retry_pause
        self.assertEqual([retry_pause(n) for n in (1, 2, 3)],
                         [RETRY_PAUSE, 2 * RETRY_PAUSE, 4 * RETRY_PAUSE])

    def test_pauseCapped(self) -> None:
        from securechat.server.store.postgres import RETRY_PAUSE_MAX, retry_pause
        self.assertEqual(retry_pause(30), RETRY_PAUSE_MAX)

    def test_retriesOutlastSlowTransaction(self) -> None:
        """All the pauses together allow for half a second and stay under two."""
        from securechat.server.store.postgres import RETRIES, retry_pause
        total = sum(retry_pause(n) for n in range(1, RETRIES))
        self.assertTrue(0.5 <= total <= 2.0, total)


class MigrationTests(unittest.TestCase):
    """Schema steps on PostgreSQL (L{securechat.server.store.engine.prepare_schema})."""

    timeout = 30

    def setUp(self) -> None:
        from securechat.server.store.postgres import PostgresEngine
        self.url = shared_cluster(self).fresh_database(self)
        self.engine = PostgresEngine(self.url)
        self.conn = self.engine.connect()
        self.addCleanup(self.conn.close)

    def prepare(self, schema: list[str]) -> int:
        from securechat.server.store.engine import prepare_schema
        return prepare_schema(self.conn, self.engine.display, schema, self.engine)

    def rows(self, statement: str) -> list[tuple[Any, ...]]:
        return query(self.url, statement)

    def test_everyStepThenALaterOne(self) -> None:
        """
        An empty database gets every step; a later step is applied once,
        keeping what is there, and the version recorded.
        """
        self.assertEqual(self.prepare(SCHEMA), 0)
        self.assertEqual(self.rows("SELECT version FROM schema_version"), [(SCHEMA_VERSION,)])
        schema = SCHEMA + ["CREATE TABLE extra (x INTEGER); INSERT INTO extra VALUES (7)"]
        self.assertEqual(self.prepare(schema), SCHEMA_VERSION)
        self.assertEqual(self.prepare(schema), SCHEMA_VERSION + 1)
        self.assertEqual(self.rows("SELECT x FROM extra"), [(7,)])

    def test_typesTranslated(self) -> None:
        """
        Binary columns are BYTEA, integers BIGINT (prekey ids are u32,
        times outlive 2038), and the letters' id an identity column.
        """
        self.prepare(SCHEMA)
        types = dict(((t, c), d) for t, c, d in self.rows(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = current_schema()"))
        self.assertEqual(types[("letter_bodies", "body")], "bytea")
        self.assertEqual(types[("signed_prekeys", "prekey_id")], "bigint")
        self.assertEqual(types[("letters", "expires_at")], "bigint")
        self.assertEqual(types[("one_time_prekeys", "user")], "text")
        self.assertEqual(self.rows("SELECT is_identity FROM information_schema.columns"
                                   " WHERE table_name = 'letters' AND column_name = 'id'"),
                         [("YES",)])

    def test_step3CountsEachMailbox(self) -> None:
        """
        Step 3 on a version 2 database counts each recipient's letters not
        deleted, as on SQLite.
        """
        self.prepare(SCHEMA[:2])
        for n, recipient, size, deleted in [(1, "bob", 10, 0), (2, "bob", 20, 0),
                                            (3, "bob", 40, 1), (4, "carol", 5, 0)]:
            query(self.url, "INSERT INTO letters (sender, letter_id, recipient, size, stored_at,"
                  " expires_at, deleted) VALUES ('alice', %s, %s, %s, 1, 2, %s)",
                  (bytes([n]) * 16, recipient, size, deleted))
        self.assertEqual(self.prepare(SCHEMA), 2)
        self.assertEqual(self.rows("SELECT recipient, letters, bytes FROM mailbox_usage"
                                   " ORDER BY recipient"), [("bob", 2, 30), ("carol", 1, 5)])

    def test_failingStepLeavesTheDatabaseAsItWas(self) -> None:
        """A step that fails half-way is rolled back whole."""
        import psycopg2
        self.prepare(SCHEMA)
        schema = SCHEMA + ["CREATE TABLE extra (x INTEGER); INSERT INTO missing VALUES (1)"]
        error = self.assertRaises(psycopg2.errors.UndefinedTable, self.prepare, schema)
        self.assertIn('relation "missing" does not exist', str(error))
        self.assertEqual(self.rows("SELECT version FROM schema_version"), [(SCHEMA_VERSION,)])
        self.assertEqual(self.rows("SELECT to_regclass('extra') IS NULL"), [(True,)])


class StartupTests(unittest.TestCase):
    """A store that cannot be used stops start-up with one line."""

    timeout = 30

    def assertOneLine(self, store: str, *expected: str) -> None:
        error = self.assertRaises(UnusableDatabase, mailbox_store, "/nonexistent",
                                  SteppedClock(global_reactor), LIMITS, store=store)
        for text in expected:
            self.assertIn(text, str(error))
        self.assertNotIn("\n", str(error))

    def test_notAStoreOption(self) -> None:
        """Neither 'sqlite' nor a postgresql:// URL, the password not shown."""
        self.assertOneLine("mysql://u:secret@host/db",
                           "--store must be 'sqlite' or a postgresql:// URL, not 'host/db'")

    def test_badURL(self) -> None:
        """A postgresql:// URL libpq cannot parse."""
        shared_cluster(self)
        self.assertOneLine("postgresql://host/db?nosuchoption=1",
                           "the --store URL is not one libpq understands (invalid dsn: invalid URI query "
                           'parameter: "nosuchoption")')

    def test_unreachable(self) -> None:
        """No server on that socket: named, without the password."""
        cluster = shared_cluster(self)
        url = f"postgresql://u:secret@/db?host={cluster.dir}/nothing-here"
        error = self.assertRaises(UnusableDatabase, mailbox_store, "/nonexistent",
                                  SteppedClock(global_reactor), LIMITS, store=url)
        self.assertTrue(str(error).startswith(f"cannot connect to postgresql://u@{cluster.dir}"
                                              "/nothing-here/db: "), str(error))
        self.assertNotIn("secret", str(error))
        self.assertNotIn("\n", str(error))

    def test_ownerRoleCreatesTheTables(self) -> None:
        """
        As README says to set it up: a role that is no superuser and owns
        the database creates the tables at the first start, and owns them.
        """
        cluster = shared_cluster(self)
        role = cluster.fresh_role(self)
        url = cluster.fresh_database(self, owner=role)
        store = mailbox_store("/nonexistent", SteppedClock(global_reactor), LIMITS, store=url)
        self.addCleanup(store.close)
        owners = query(url, "SELECT DISTINCT tableowner FROM pg_tables"
                            " WHERE schemaname = current_schema()")
        self.assertEqual(owners, [(role,)])

    def test_roleThatMayNotCreateTables(self) -> None:
        """
        A role that does not own the database (and was granted nothing)
        stops start-up with one line saying so.
        """
        cluster = shared_cluster(self)
        role = cluster.fresh_role(self)
        url = cluster.fresh_database(self).replace("user=postgres", f"user={role}")
        self.assertOneLine(url, "is not a usable mailbox database (permission denied for schema "
                           "public")

    def test_noSuchDatabase(self) -> None:
        """A server without that database."""
        cluster = shared_cluster(self)
        self.assertOneLine(cluster.url("absent"), 'database "absent" does not exist')


del SQLiteCase, DurabilityTests, GroupCommitTests, UsageCountTests, SQLiteGroupStoreTests
