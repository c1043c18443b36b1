# -*- test-case-name: tests.test_store -*-
"""
The mailbox's durable store (issue 14): prekeys, letters, their status and
receipts, quotas and expiry, behind L{IMailboxStore}.

  - L{interface}: the interface, its values and its rules (read it first).
  - L{memory}: an in-memory implementation for protocol tests.
  - L{sqlite} on L{engine}: the embedded default, C{mailbox.sqlite3} in the
    data directory; PostgreSQL can follow behind the same interface.
  - L{expiry}: the relay's timer that purges expired letters.

The groups (issue 15) are kept behind L{IGroupStore}
(L{groupinterface}), in memory (L{groupmemory}) or in the same SQLite file
(L{groupsqlite}, schema step 4); L{group_store} makes the one that goes
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

__all__ = ["mailbox_store", "group_store", "IMailboxStore", "IGroupStore", "MailboxLimits", "SchemaTooNew", "UnusableDatabase",
           "MAILBOX_FILE"]


def mailbox_store(data_dir: str, clock: IReactorTime,
                  limits: MailboxLimits = MailboxLimits(), reactor: Any = None) -> IMailboxStore:
    """
    The relay's store: C{DATA_DIR/mailbox.sqlite3}, created (mode 0600) or
    brought to the current schema now, synchronously, before anything is
    served.  C{clock} gives the time and schedules group commits;
    C{reactor} runs the connection pool's thread (default: the global
    reactor; in the relay both are the reactor).

    @raise SchemaTooNew: the file was written by a newer securechat.
    @raise UnusableDatabase: the file cannot be opened as a database (the
        message names it; L{SchemaTooNew} is one of these).
    """
    return SQLiteMailboxStore(Database(os.path.join(data_dir, MAILBOX_FILE), reactor=reactor),
                              clock, limits)


def group_store(mailbox: IMailboxStore, clock: IReactorTime) -> IGroupStore:
    """
    The group store beside C{mailbox}: in the same SQLite database when
    C{mailbox} is on one, else in memory.  Group messages expire with the
    mailbox's letter expiry.

    @raise UnusableDatabase: the group tables cannot be read (the
        mailbox's database is closed then).
    """
    expiry = mailbox.limits.expiry_seconds
    if isinstance(mailbox, SQLiteMailboxStore):
        try:
            return SQLiteGroupStore(mailbox.db, clock, expiry)
        except UnusableDatabase:
            mailbox.db.close()
            raise
    return MemoryGroupStore(clock, expiry)
