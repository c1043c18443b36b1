# -*- test-case-name: tests.test_store.SQLiteStoreTests,tests.test_store_sqlite -*-
"""
The mailbox store on SQLite (L{securechat.server.store.engine}), the
embedded default: C{mailbox.sqlite3} in the data directory.  It is
L{SQLMailboxStore} (the group commit, the shared transactions of
L{securechat.server.store.lettersql}, re-exported here) and one thing only
a single writer may do: answering the logins of users it holds nothing for
without a transaction.
"""

from __future__ import annotations

import sqlite3

from twisted.internet.interfaces import IReactorTime

from securechat.server.store.engine import Database, UnusableDatabase, run_now
from securechat.server.store.interface import MailboxLimits
from securechat.server.store.lettersql import (  # noqa: F401 -- re-exported
    delete_letter_txn, expire_txn, fetch_letter_txn, list_letters_txn, mark_txn, sent_status_txn,
    store_letters_txn, usage_txn)
from securechat.server.store.prekeysql import holders_txn
from securechat.server.store.sqlstore import SQLMailboxStore

__all__ = ["SQLiteMailboxStore", "store_letters_txn", "delete_letter_txn", "expire_txn",
           "fetch_letter_txn", "list_letters_txn", "mark_txn", "sent_status_txn", "usage_txn"]


class SQLiteMailboxStore(SQLMailboxStore):
    """
    L{SQLMailboxStore} on SQLite's L{Database}.

    B{Logins without a transaction.}  C{_holders} names every user the
    store may hold a letter or a prekey for: read from the file when the
    store is opened (synchronously, before anything is served), and a name
    is added when a letter to it or a prekey upload of it is I{asked for},
    before its transaction runs (never removed: a name too many costs one
    read at login, a name missing would lose a NEW_LETTERS).  A login of a
    user not named there is answered C{NO_MAILBOX} at once.  A letter
    stored while its recipient logs in is either asked for before the
    login's check (the check reads) or after it (the relay, which has
    registered the session before the check, sends LETTER_ARRIVED once it
    is committed).  This process is the file's only writer of letters and
    prekeys (the operator's tool only reads and purges); on PostgreSQL,
    which several relay processes share, every login reads.
    """

    db: Database

    def __init__(self, db: Database, clock: IReactorTime,
                 limits: MailboxLimits = MailboxLimits()) -> None:
        super().__init__(db, clock, limits)
        self._holders = self._read_holders()

    def _read_holders(self) -> set[str]:
        try:
            conn = self.db.engine.connect(self.db.path)
            try:
                return run_now(conn, holders_txn)
            finally:
                conn.close()
        except (sqlite3.Error, OSError) as e:
            self.db.close()
            raise UnusableDatabase(
                f"{self.db.path} is not a usable mailbox database ({e})") from None
