# -*- test-case-name: tests.test_store -*-
"""
The mailbox's durable store (issue 14): prekeys, letters, their status and
receipts, quotas and expiry, behind L{IMailboxStore}.

  - L{interface}: the interface, its values and its rules (read it first).
  - L{memory}: an in-memory implementation for protocol tests.
  - L{sqlstore}: the store on SQL (group commit), running the shared
    transactions of L{lettersql} and L{prekeysql}, on either engine:
  - L{sqlite} on L{engine}: the embedded default, C{mailbox.sqlite3} in the
    data directory;
  - L{postgres}: PostgreSQL (C{--store postgresql://...}), which several
    relay processes share.
  - The schema, one list of steps for both: L{schema}.
  - L{expiry}: the relay's timer that purges expired letters.

The groups (issue 15) are kept behind L{IGroupStore}
(L{groupinterface}), in memory (L{groupmemory}) or in the same database
(L{groupsqlite}, schema step 4, on either engine); L{group_store} makes the one that goes
with a mailbox store.

The relay makes its store with L{mailbox_store} and its timer with
L{securechat.server.store.expiry.purge_service}.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.interfaces import IReactorTime

from securechat.server.store.engine import MAILBOX_FILE, Database, SchemaTooNew, UnusableDatabase
from securechat.server.store.interface import IMailboxStore, MailboxLimits
from securechat.server.store.groupinterface import IGroupStore
from securechat.server.store.groupmemory import MemoryGroupStore
from securechat.server.store.groupsqlite import SQLiteGroupStore
from securechat.server.store.sqlite import SQLiteMailboxStore
from securechat.server.store.sqlstore import SQLMailboxStore

#: C{--store} for the embedded default, C{DATA_DIR/mailbox.sqlite3}.
SQLITE = "sqlite"

__all__ = ["mailbox_store", "check_store", "SQLITE", "group_store", "IMailboxStore", "IGroupStore", "MailboxLimits", "SchemaTooNew", "UnusableDatabase",
           "MAILBOX_FILE"]


def mailbox_store(data_dir: str, clock: IReactorTime,
                  limits: MailboxLimits = MailboxLimits(), reactor: Any = None,
                  store: str = SQLITE) -> IMailboxStore:
    """
    The relay's store, created or brought to the current schema now,
    synchronously, before anything is served: with C{store} L{SQLITE}
    (the default), C{DATA_DIR/mailbox.sqlite3} (created mode 0600); with a
    C{postgresql://} URL (libpq's; a unix socket with C{?host=/dir}), that
    PostgreSQL database (L{securechat.server.store.postgres}), which
    several relay processes may share.  C{clock} gives the time and
    schedules group commits; C{reactor} runs the connection pool's thread
    (default: the global reactor; in the relay both are the reactor).

    @raise SchemaTooNew: the database was written by a newer securechat.
    @raise UnusableDatabase: the database cannot be opened, reached or used,
        or C{store} is neither (the message says why, in one line;
        L{SchemaTooNew} is one of these).
    """
    if store == SQLITE:
        return SQLiteMailboxStore(Database(os.path.join(data_dir, MAILBOX_FILE), reactor=reactor),
                                  clock, limits)
    from securechat.server.store.postgres import PostgresDatabase
    return SQLMailboxStore(PostgresDatabase(check_store(store), reactor=reactor), clock, limits)


def check_store(store: str) -> str:
    """
    C{store} if it is L{SQLITE} or a URL the PostgreSQL engine can try.

    @raise UnusableDatabase: it is neither (one line, without a password).
    """
    if store == SQLITE:
        return store
    if not store.startswith(("postgresql://", "postgres://")):
        shown = store.split("@")[-1] if "://" in store else store
        raise UnusableDatabase(f"--store must be 'sqlite' or a postgresql:// URL, not {shown!r}")
    from securechat.server.store.postgres import describe
    describe(store)
    return store


def group_store(mailbox: IMailboxStore, clock: IReactorTime) -> IGroupStore:
    """
    The group store beside C{mailbox}: in the same database (SQLite or
    PostgreSQL) when C{mailbox} is on one, else in memory.  Group messages expire with the
    mailbox's letter expiry.
    """
    expiry = mailbox.limits.expiry_seconds
    if isinstance(mailbox, SQLMailboxStore):
        return SQLiteGroupStore(mailbox.db, clock, expiry)
    return MemoryGroupStore(clock, expiry)
