"""
C{--store} for C{twistd securechat} (L{securechat.tap},
L{securechat.server.service.relay_service}) and for C{securechat-admin}'s
mailbox commands, with PostgreSQL (a throwaway server, L{tests.pgservice}):
accepted, used, and refused in one line when it cannot be.
"""

from __future__ import annotations

import os
import subprocess

from twisted.internet.task import Clock
from twisted.python import usage
from twisted.trial import unittest

from securechat.server.limits import Limits
from securechat.server.service import StartupError, relay_service
from securechat.server.store.interface import DAY, MailboxLimits
from securechat.server.store.lettersql import delete_letter_txn, store_letters_txn
from securechat.server.store.sqlstore import SQLMailboxStore
from securechat.tap import Options
from tests.pgservice import shared_cluster
from tests.test_admin import NOW, AdminCase
from tests.test_store import letter, lid
from tests.test_store_postgres import query

T = int(NOW.timestamp())


class StoreOptionTests(unittest.TestCase):
    """C{twistd securechat --store}."""

    def parse(self, *argv: str) -> Options:
        options = Options()
        options.exit_on_usage_error = False
        options.parseOptions(list(argv))
        return options

    def test_defaultIsSQLite(self) -> None:
        """Without --store the mailbox is the data directory's SQLite file."""
        self.assertEqual(self.parse()["store"], "sqlite")

    def test_postgresURLAccepted(self) -> None:
        """A postgresql:// URL is taken as given (connected to at start-up)."""
        url = "postgresql:///securechat?host=/run/postgresql"
        self.assertEqual(self.parse("--store", url)["store"], url)

    def test_otherRefused(self) -> None:
        """Anything else is a usage error in one line, without a password."""
        e = self.assertRaises(usage.UsageError, self.parse, "--store", "mysql://u:pw@db/x")
        self.assertEqual(str(e), "--store must be 'sqlite' or a postgresql:// URL, not 'db/x'")

    def test_helpExplains(self) -> None:
        """--help says what --store takes and what stays in the data directory."""
        text = "".join(str(Options()).split())
        for words in ("postgresql:///DBNAME?host=/run/postgresql", "~/.pgpass",
                      "The user directory and the CRL stay in the data directory",
                      "[default: sqlite]"):
            self.assertIn("".join(words.split()), text)


class StoreStartupTests(unittest.TestCase):
    """The relay on PostgreSQL, and a database it cannot use."""

    timeout = 30

    def test_relayOnPostgres(self) -> None:
        """
        With --store URL the relay's mailbox and groups are in that
        database, and nothing is made in the data directory for them.
        """
        url = shared_cluster(self).fresh_database(self)
        path = os.path.join(self.mktemp(), "data")
        service = relay_service(path, [], None, Limits(), clock=Clock(), store=url)
        store = service.store
        assert isinstance(store, SQLMailboxStore)
        self.addCleanup(store.close)
        self.assertEqual(type(store.db).__name__, "PostgresDatabase")
        self.assertIs(service.relay.groups.store.db, store.db)  # type: ignore[attr-defined]
        self.assertFalse(os.path.exists(os.path.join(path, "mailbox.sqlite3")))
        self.assertEqual(len(query(url, "SELECT version FROM schema_version")), 1)

    def test_letterCommitsOnPostgres(self) -> None:
        """
        /metrics' securechat_letter_commits is the PostgreSQL store's count
        of group commits too (as on SQLite, tests.test_service).
        """
        url = shared_cluster(self).fresh_database(self)
        path = os.path.join(self.mktemp(), "data")
        service = relay_service(path, [], None, Limits(), clock=Clock(), store=url)
        store = service.store
        assert isinstance(store, SQLMailboxStore)
        self.addCleanup(store.close)
        self.assertEqual(service.relay.metrics.letter_commits_source(), 0)
        store.letter_commits = 3
        self.assertIn("securechat_letter_commits_total 3.0",
                      service.relay.metrics.render().decode())

    def test_unreachableStopsStartup(self) -> None:
        """
        A database that cannot be reached stops start-up with one line
        naming it (without its password).
        """
        cluster = shared_cluster(self)
        url = f"postgresql://relay:secret@/securechat?host={cluster.dir}/none"
        path = os.path.join(self.mktemp(), "data")
        e = self.assertRaises(StartupError, relay_service, path, [], None, Limits(),
                              clock=Clock(), store=url)
        self.assertTrue(str(e).startswith(
            f"cannot use the mailbox: cannot connect to postgresql://relay@{cluster.dir}/none"
            "/securechat: connection to server on socket"), str(e))
        self.assertNotIn("secret", str(e))
        self.assertNotIn("\n", str(e))

    def test_twistdOneLine(self) -> None:
        """
        The real C{twistd securechat} with a database it cannot reach:
        exactly one line on standard error, exit status 1.
        """
        from tests.processes import BIN, TIMEOUT, environment
        cluster = shared_cluster(self)
        url = f"postgresql:///securechat?host={cluster.dir}/none"
        result = subprocess.run(
            [os.path.join(BIN, "twistd"), "--nodaemon", "--pidfile=", "securechat",
             "--data-dir", os.path.join(os.path.abspath(self.mktemp()), "data"), "--init",
             "--listen", "tcp:0:interface=127.0.0.1", "--store", url],
            capture_output=True, text=True, env=environment(), cwd="/", timeout=TIMEOUT)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertTrue(result.stderr.startswith(
            "twistd securechat: error: cannot use the mailbox: cannot connect to "
            f"postgresql://{cluster.dir}/none/securechat: "), result.stderr)
        self.assertEqual(result.stderr.count("\n"), 1, result.stderr)


class PostgresAdminTests(AdminCase):
    """securechat-admin's mailbox commands with --store URL."""

    timeout = 30

    def setUp(self) -> None:
        super().setUp()
        self.url = shared_cluster(self).fresh_database(self)
        self.init()

    def fill(self) -> None:
        """As L{tests.test_store_admin}: bob 1 letter left of 100 bytes, carol 1 of 10."""
        from securechat.server.store.postgres import PostgresEngine, open_prepared
        engine = PostgresEngine(self.url)
        conn = open_prepared(engine)
        try:
            limits = MailboxLimits()
            for f, args in [(store_letters_txn, ([letter(1)], T - 31 * DAY, limits)),
                            (store_letters_txn, ([letter(2), letter(3),
                                                  letter(4, recipient="carol", size=10)], T,
                                                 limits)),
                            (delete_letter_txn, ("bob", "alice", lid(3), T))]:
                f(engine.cursor(conn.cursor()), *args)
                conn.commit()
        finally:
            conn.close()

    def test_usage(self) -> None:
        """mailbox-usage --store URL reads the PostgreSQL mailbox."""
        self.fill()
        self.assertEqual(self.ok("mailbox-usage", "--store", self.url),
                         "USER   LETTERS  BYTES\nbob    1        100\ncarol  1        10\n")

    def test_purgeExpired(self) -> None:
        """purge-expired --store URL deletes what expired there."""
        self.fill()
        self.assertEqual(self.ok("purge-expired", "--store", self.url),
                         "purged 1 expired letters\n")
        self.assertEqual(query(self.url, "SELECT COUNT(*) FROM letters"), [(3,)])

    def test_backupSaysPgDump(self) -> None:
        """backup --store URL is refused, naming pg_dump."""
        dest = os.path.join(self.dir, "b")
        self.assertIn("back it up with pg_dump", self.refused("backup", dest, "--store", self.url))
        self.assertFalse(os.path.exists(dest))

    def test_unreachable(self) -> None:
        """A database that cannot be reached: one line."""
        url = f"postgresql:///x?host={self.dir}/none"
        self.assertIn(f"cannot connect to postgresql://{self.dir}/none/x",
                      self.refused("mailbox-usage", "--store", url))

    def test_badStore(self) -> None:
        """A --store that is no store: a usage error."""
        code, out, err = self.admin("mailbox-usage", "--store", "nonsense")
        self.assertEqual(code, 2)
        self.assertIn("--store must be 'sqlite' or a postgresql:// URL, not 'nonsense'", err)
