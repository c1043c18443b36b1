# -*- test-case-name: tests.test_store_sqlite -*-
"""
The database under the mailbox store, the way Synapse does it on Twisted
(C{synapse/storage/database.py}, C{synapse/storage/engines/}):

  - L{Database} wraps one C{twisted.enterprise.adbapi.ConnectionPool}; every
    transaction is a plain function C{f(txn, ...)} run with
    C{runInteraction("what-it-does", f, ...)}, which begins it, and commits
    it when C{f} returns (rolls it back when C{f} raises).  The same
    functions run on a plain DB-API cursor (the operator's tool does that).
  - What differs between engines (connection options, how a write
    transaction begins, pragmas) is in one small engine class;
    L{Sqlite3Engine} is the embedded default, PostgreSQL can follow.
  - The schema is a numbered list of steps (L{SCHEMA}) and a
    C{schema_version} table, applied at start-up; a database newer than the
    code is refused (L{SchemaTooNew}).  Steps are never edited once
    released: a change is a new step.

SQLite specifics: one file, mode 0600, WAL, C{synchronous=FULL} (a commit
is on disk when it returns, in WAL mode too), foreign keys on, and a pool
of exactly one connection (C{check_same_thread=False}, used by one pool
thread at a time), so writes are serialised and never meet "database is
locked" inside the relay; C{busy_timeout} covers the operator's tool
writing at the same time.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any, Callable, Sequence, TypeVar

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred

T = TypeVar("T")

#: The mailbox's file in the data directory.
MAILBOX_FILE = "mailbox.sqlite3"

#: Milliseconds a writer waits for another process's transaction.
BUSY_TIMEOUT_MS = 10_000

#: The schema, one step per version: step N (1-based) takes a database at
#: version N-1 to version N.  Never edit a released step; append one.
#: Statements are split at semicolons: none may appear in a comment or text.
SCHEMA: list[str] = [
    # 1: prekeys, letters with their status and receipts, bodies apart.
    """
    CREATE TABLE signed_prekeys (
        user TEXT NOT NULL,
        prekey_id INTEGER NOT NULL,
        public BLOB NOT NULL,
        signature BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        -- NULL for the current one, when it was replaced for the previous one.
        replaced_at INTEGER,
        PRIMARY KEY (user, prekey_id)
    );
    CREATE TABLE one_time_prekeys (
        user TEXT NOT NULL,
        prekey_id INTEGER NOT NULL,
        public BLOB NOT NULL,
        PRIMARY KEY (user, prekey_id)
    );
    -- One row per letter: the sender's status, kept when the recipient
    -- deletes the body, until expiry.  (sender, letter_id) is the
    -- idempotence key.
    CREATE TABLE letters (
        id INTEGER PRIMARY KEY,
        sender TEXT NOT NULL,
        letter_id BLOB NOT NULL,
        recipient TEXT NOT NULL,
        size INTEGER NOT NULL,
        stored_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        delivered_at INTEGER,
        read_at INTEGER,
        delivery_receipt BLOB,
        read_receipt BLOB,
        UNIQUE (sender, letter_id)
    );
    CREATE INDEX letters_by_recipient ON letters (recipient, deleted, expires_at);
    CREATE INDEX letters_by_expiry ON letters (expires_at);
    CREATE TABLE letter_bodies (
        letter INTEGER PRIMARY KEY REFERENCES letters (id) ON DELETE CASCADE,
        body BLOB NOT NULL
    );
    """,
    # 2: "fetched" apart from the delivery receipt; delivered_at and read_at
    # become the times the receipts were stored (docs/protocol.rst 14.6).
    """
    ALTER TABLE letters ADD COLUMN fetched INTEGER NOT NULL DEFAULT 0;
    UPDATE letters SET fetched = 1 WHERE delivered_at IS NOT NULL OR read_at IS NOT NULL;
    UPDATE letters SET delivered_at = NULL WHERE delivery_receipt IS NULL;
    UPDATE letters SET read_at = NULL WHERE read_receipt IS NULL
    """,
    # 3: each recipient's letters not deleted (expired ones until purged)
    # and their bytes, kept in the transactions that change them, so a
    # quota check reads one row instead of scanning the mailbox.
    """
    CREATE TABLE mailbox_usage (
        recipient TEXT PRIMARY KEY,
        letters INTEGER NOT NULL,
        bytes INTEGER NOT NULL
    );
    INSERT INTO mailbox_usage (recipient, letters, bytes)
        SELECT recipient, COUNT(*), SUM(size) FROM letters WHERE deleted = 0 GROUP BY recipient
    """,
    # 4: groups (docs/protocol.rst 15): the state each group's log gives,
    # the log, members with their acknowledged positions, and messages.
    # A deleted group keeps its row (deleted = 1) and nothing else.
    """
    CREATE TABLE groups (
        group_id BLOB PRIMARY KEY,
        name TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        head BLOB NOT NULL,
        last_seq INTEGER NOT NULL DEFAULT 0,
        deleted INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE group_changes (
        group_id BLOB NOT NULL REFERENCES groups (group_id) ON DELETE CASCADE,
        epoch INTEGER NOT NULL,
        change BLOB NOT NULL,
        PRIMARY KEY (group_id, epoch)
    );
    CREATE TABLE group_members (
        group_id BLOB NOT NULL REFERENCES groups (group_id) ON DELETE CASCADE,
        user TEXT NOT NULL,
        role INTEGER NOT NULL,
        acked INTEGER NOT NULL,
        PRIMARY KEY (group_id, user)
    );
    CREATE INDEX group_members_by_user ON group_members (user);
    CREATE TABLE group_messages (
        group_id BLOB NOT NULL REFERENCES groups (group_id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        sender TEXT NOT NULL,
        stored_at INTEGER NOT NULL,
        body BLOB NOT NULL,
        PRIMARY KEY (group_id, seq)
    );
    CREATE INDEX group_messages_by_time ON group_messages (stored_at)
    """,
]

#: The version this code writes and understands.
SCHEMA_VERSION = len(SCHEMA)


class UnusableDatabase(Exception):
    """
    The mailbox file cannot be used (not a database, unreadable, damaged);
    the message names it, in one line.
    """


class SchemaTooNew(UnusableDatabase):
    """
    The database was written by a newer securechat; the message says what
    to do, in one line.
    """


class Sqlite3Engine:
    """
    What is particular to SQLite.
    """

    module = sqlite3

    def connect_arguments(self, path: str) -> dict[str, Any]:
        # isolation_level None: the module starts no transaction by itself;
        # begin() does, so reads and writes of one transaction are one unit.
        return {"database": path, "check_same_thread": False, "isolation_level": None}

    def create(self, path: str) -> None:
        """
        Create the file with mode 0600 before SQLite does (its WAL and
        shared-memory files take the same mode).
        """
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600))

    def on_new_connection(self, conn: Any) -> None:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise sqlite3.OperationalError(f"cannot use write-ahead logging (journal mode {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")

    def begin(self, txn: Any) -> None:
        """
        Begin a transaction that may write: take the write lock now, so what
        it reads stays true until it commits.
        """
        txn.execute("BEGIN IMMEDIATE")

    def connect(self, path: str) -> sqlite3.Connection:
        """
        A plain connection (for start-up and the operator's tool).
        """
        self.create(path)
        conn = sqlite3.connect(**self.connect_arguments(path))
        try:
            self.on_new_connection(conn)
        except BaseException:
            conn.close()
            raise
        return conn


def _schema_version(txn: Any) -> int:
    txn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'")
    if txn.fetchone() is None:
        txn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        txn.execute("INSERT INTO schema_version (version) VALUES (0)")
        return 0
    txn.execute("SELECT version FROM schema_version")
    row = txn.fetchone()
    return int(row[0]) if row is not None else 0


def prepare_schema(conn: sqlite3.Connection, path: str, schema: Sequence[str] = SCHEMA) -> int:
    """
    Bring the database at C{path} to the version of C{schema} (the number
    of its steps), all steps and the version number in one transaction, so
    that a failing step leaves the database as it was; return the version
    it had.

    @raise SchemaTooNew: it is newer than C{schema}.
    """
    latest = len(schema)
    conn.execute("BEGIN IMMEDIATE")
    try:
        cur = conn.cursor()
        found = _schema_version(cur)
        if found > latest:
            raise SchemaTooNew(
                f"{path} has mailbox schema version {found}, newer than this securechat "
                f"understands ({latest}): upgrade securechat, or restore a backup made "
                "by this version")
        for version in range(found + 1, latest + 1):
            for statement in schema[version - 1].split(";"):
                if statement.strip():
                    cur.execute(statement)
            cur.execute("UPDATE schema_version SET version = ?", (version,))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return found


def open_prepared(path: str, engine: Sqlite3Engine | None = None) -> sqlite3.Connection:
    """
    A plain connection to the mailbox at C{path}, its schema current.

    @raise SchemaTooNew: see L{prepare_schema}.
    @raise UnusableDatabase: the file cannot be opened as a database.
    """
    engine = engine or Sqlite3Engine()
    try:
        conn = engine.connect(path)
        try:
            prepare_schema(conn, path)
        except BaseException:
            conn.close()
            raise
    except (sqlite3.Error, OSError) as e:
        raise UnusableDatabase(f"{path} is not a usable mailbox database ({e})") from None
    return conn


class Database:
    """
    One connection pool and the engine it speaks to.
    """

    def __init__(self, path: str, engine: Sqlite3Engine | None = None,
                 reactor: Any = None) -> None:
        self.path = path
        self.engine = engine or Sqlite3Engine()
        # Prepare the schema synchronously, before anything is served.
        open_prepared(path, self.engine).close()
        self.pool = adbapi.ConnectionPool(
            self.engine.module.__name__, cp_min=1, cp_max=1,
            cp_openfun=self.engine.on_new_connection, cp_noisy=False, cp_reactor=reactor,
            **self.engine.connect_arguments(path))

    def runInteraction(self, description: str, f: Callable[..., T], *args: Any,
                       **kwargs: Any) -> Deferred[T]:
        """
        Run C{f(txn, *args, **kwargs)} in a transaction on the pool's thread;
        fire with its result once committed (with C{f}'s exception, the
        transaction rolled back, if it raised).  C{description} names the
        transaction, for tests and metrics.
        """
        def transaction(txn: Any) -> T:
            self.engine.begin(txn)
            return f(txn, *args, **kwargs)
        return self.pool.runInteraction(transaction)

    def close(self) -> None:
        self.pool.close()


def run_now(conn: sqlite3.Connection, f: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """
    Run the transaction function C{f(txn, ...)} on a plain connection, in
    this thread, as L{Database.runInteraction} would on the pool's.
    """
    cur = conn.cursor()
    Sqlite3Engine().begin(cur)
    try:
        result = f(cur, *args, **kwargs)
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
    return result
