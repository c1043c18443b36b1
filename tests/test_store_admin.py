"""
C{securechat-admin backup}, C{mailbox-usage} and C{purge-expired}
(L{securechat.admin.cli}, L{securechat.server.store.maintenance}) on a real
mailbox file, written with the store's own transaction functions.
"""

from __future__ import annotations

import os
import sqlite3
import stat

from securechat.datadir import DataDir
from securechat.server.store.engine import MAILBOX_FILE, SCHEMA_VERSION, open_prepared, run_now
from securechat.server.store.interface import DAY, MailboxLimits
from securechat.server.store.sqlite import delete_letter_txn, store_letters_txn
from tests.test_admin import NOW, AdminCase
from tests.test_store import letter, lid

T = int(NOW.timestamp())


class MailboxAdminTests(AdminCase):
    """
    The operator's mailbox commands.
    """

    def setUp(self) -> None:
        super().setUp()
        self.init()
        self.mailbox = os.path.join(self.data, MAILBOX_FILE)

    def fill(self) -> None:
        """
        bob: two letters (one deleted) of 100 bytes, stored 31 days ago
        (expired) and one now; carol: one of 10 bytes now.
        """
        conn = open_prepared(self.mailbox)
        try:
            limits = MailboxLimits()
            run_now(conn, store_letters_txn, [letter(1)], T - 31 * DAY, limits)
            run_now(conn, store_letters_txn, [letter(2), letter(3), letter(4, recipient="carol",
                                                                      size=10)], T, limits)
            run_now(conn, delete_letter_txn, "bob", "alice", lid(3), T)
        finally:
            conn.close()

    def test_mailboxFileAgrees(self) -> None:
        """
        The data directory and the store name the same mailbox file.
        """
        self.assertEqual(DataDir(self.data).mailbox_path, self.mailbox)

    def test_usage(self) -> None:
        """
        mailbox-usage lists each user's unexpired, undeleted letters and
        bytes.
        """
        self.fill()
        self.assertEqual(self.ok("mailbox-usage"),
                         "USER   LETTERS  BYTES\nbob    1        100\ncarol  1        10\n")

    def test_usageEmpty(self) -> None:
        """
        An empty mailbox says so.
        """
        open_prepared(self.mailbox).close()
        self.assertEqual(self.ok("mailbox-usage"), "no letters in any mailbox\n")

    def test_noMailboxYet(self) -> None:
        """
        Before the relay created the mailbox, every command says so in one
        line and creates nothing.
        """
        for command in (["mailbox-usage"], ["purge-expired"],
                        ["backup", os.path.join(self.dir, "b")]):
            self.assertIn(f"{self.mailbox} does not exist: the relay creates the mailbox when it "
                          "first starts", self.refused(*command))
        self.assertFalse(os.path.exists(self.mailbox))
        self.assertEqual(os.listdir(self.dir), ["data"])

    def test_purgeExpired(self) -> None:
        """
        purge-expired deletes the letters expired by now and says how many.
        """
        self.fill()
        self.assertEqual(self.ok("purge-expired"), "purged 1 expired letters\n")
        self.assertEqual(self.ok("purge-expired"), "purged 0 expired letters\n")
        conn = sqlite3.connect(self.mailbox)
        self.addCleanup(conn.close)
        self.assertEqual(conn.execute("SELECT COUNT(*) FROM letters").fetchone()[0], 3)

    def test_backup(self) -> None:
        """
        backup makes a consistent copy, mode 0600, that holds everything,
        and says how to restore it.
        """
        self.fill()
        dest = os.path.join(self.dir, "mailbox-backup.sqlite3")
        out = self.ok("backup", dest)
        self.assertEqual(out, f"backed up the mailbox (4 letters) to {dest} (mode 0600); to "
                         f"restore: stop the relay, copy it over {self.mailbox}, start the relay\n")
        self.assertEqual(stat.S_IMODE(os.stat(dest).st_mode), 0o600)
        self.assertEqual(sorted(os.listdir(self.dir)), ["data", "mailbox-backup.sqlite3"])
        copy = sqlite3.connect(dest)
        self.addCleanup(copy.close)
        self.assertEqual(copy.execute("SELECT version FROM schema_version").fetchone()[0],
                         SCHEMA_VERSION)
        self.assertEqual(copy.execute("SELECT body FROM letter_bodies JOIN letters ON letter = id"
                                      " WHERE letter_id = ?", (lid(2),)).fetchone()[0],
                         b"\x02" * 100)

    def test_backupRestored(self) -> None:
        """
        Restoring (copying the backup over the mailbox) gives back what was
        backed up.
        """
        self.fill()
        dest = os.path.join(self.dir, "b.sqlite3")
        self.ok("backup", dest)
        os.unlink(self.mailbox)
        with open(dest, "rb") as src, open(self.mailbox, "wb") as out:
            out.write(src.read())
        os.chmod(self.mailbox, 0o600)
        self.assertEqual(self.ok("mailbox-usage"),
                         "USER   LETTERS  BYTES\nbob    1        100\ncarol  1        10\n")

    def test_backupRefusals(self) -> None:
        """
        backup never overwrites a file, refuses a directory and a missing
        directory, each in one line, leaving nothing behind.
        """
        self.fill()
        existing = self.file("existing", b"keep me")
        self.assertIn(f"{existing} already exists; not overwriting it",
                      self.refused("backup", existing))
        with open(existing, "rb") as f:
            self.assertEqual(f.read(), b"keep me")
        self.assertIn(f"{self.dir} is a directory", self.refused("backup", self.dir))
        missing = os.path.join(self.dir, "nowhere", "b")
        self.assertIn(f"the directory {os.path.dirname(missing)} does not exist",
                      self.refused("backup", missing))
        self.assertEqual(sorted(os.listdir(self.dir)), ["data", "existing"])

    def test_newerMailboxRefused(self) -> None:
        """
        A mailbox written by a newer securechat is refused in one line.
        """
        open_prepared(self.mailbox).close()
        conn = sqlite3.connect(self.mailbox)
        conn.execute("UPDATE schema_version SET version = 99")
        conn.commit()
        conn.close()
        self.assertIn("has mailbox schema version 99, newer than this securechat",
                      self.refused("mailbox-usage"))

    def test_notADatabase(self) -> None:
        """
        A mailbox file that is not a database is reported, not a traceback.
        """
        with open(self.mailbox, "wb") as f:
            f.write(b"this is not sqlite" * 100)
        os.chmod(self.mailbox, 0o600)
        self.assertIn(f"{self.mailbox} is not a usable mailbox database",
                      self.refused("purge-expired"))

    def test_helpListsMailboxCommands(self) -> None:
        """
        --help lists the mailbox commands.
        """
        out = self.ok("--help")
        for command in ("backup", "mailbox-usage", "purge-expired"):
            self.assertIn(command, out)

    def test_writableMailboxRefused(self) -> None:
        """
        A mailbox file others can write is not trusted (like every file in
        the data directory).
        """
        open_prepared(self.mailbox).close()
        os.chmod(self.mailbox, 0o622)
        self.assertIn(f"{self.mailbox} is writable by", self.refused("mailbox-usage"))
