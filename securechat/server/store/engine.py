# -*- test-case-name: tests.test_store_sqlite,tests.test_store_postgres -*-
"""
The database under the mailbox store, the way Synapse does it on Twisted
(C{synapse/storage/database.py}, C{synapse/storage/engines/}):

  - L{Database} wraps one C{twisted.enterprise.adbapi.ConnectionPool}; every
    transaction is a plain function C{f(txn, ...)} run with
    C{runInteraction("what-it-does", f, ...)}, which begins it, and commits
    it when C{f} returns (rolls it back when C{f} raises).  The same
    functions run on a plain DB-API cursor (the operator's tool does that).
  - What differs between engines (connection options, how a write
    transaction begins, pragmas, how the schema's types are spelled) is in
    one small engine class: L{Sqlite3Engine} is the embedded default,
    L{securechat.server.store.postgres.PostgresEngine} the other (with its
    own database class, same C{runInteraction}).  The SQL of the
    transactions is shared: written for SQLite (C{?} parameters), the
    PostgreSQL engine's cursor translates each statement once.
  - The schema is a numbered list of steps (L{SCHEMA}, in
    L{securechat.server.store.schema}) and a
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

from securechat.server.store.schema import SCHEMA, SCHEMA_VERSION

__all__ = ["SCHEMA", "SCHEMA_VERSION", "Database", "Sqlite3Engine", "UnusableDatabase",
           "SchemaTooNew", "prepare_schema", "open_prepared", "run_now", "MAILBOX_FILE"]

T = TypeVar("T")

#: The mailbox's file in the data directory.
MAILBOX_FILE = "mailbox.sqlite3"

#: Milliseconds a writer waits for another process's transaction.
BUSY_TIMEOUT_MS = 10_000


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
    #: The engine's name, for messages.
    name = "SQLite"

    def cursor(self, cursor: Any) -> Any:
        """The cursor the transaction functions get (SQLite's own)."""
        return cursor

    def schema_statements(self, step: str) -> list[str]:
        """A schema step's statements, as this engine runs them."""
        return [s for s in step.split(";") if s.strip()]

    def has_table(self, txn: Any, name: str) -> bool:
        txn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        return txn.fetchone() is not None

    def lock_schema(self, txn: Any) -> None:
        """Begin the transaction that prepares the schema, alone."""
        self.begin(txn)

    def commit(self, conn: Any) -> None:
        conn.execute("COMMIT")

    def rollback(self, conn: Any) -> None:
        conn.execute("ROLLBACK")

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


def _schema_version(txn: Any, engine: Any) -> int:
    if not engine.has_table(txn, "schema_version"):
        txn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        txn.execute("INSERT INTO schema_version (version) VALUES (0)")
        return 0
    txn.execute("SELECT version FROM schema_version")
    row = txn.fetchone()
    return int(row[0]) if row is not None else 0


def prepare_schema(conn: Any, path: str, schema: Sequence[str] = SCHEMA,
                   engine: Any = None) -> int:
    """
    Bring the database at C{path} to the version of C{schema} (the number
    of its steps), all steps and the version number in one transaction, so
    that a failing step leaves the database as it was; return the version
    it had.  C{conn} is a plain connection of C{engine} (default: SQLite);
    C{path} names the database in messages.

    @raise SchemaTooNew: it is newer than C{schema}.
    """
    engine = engine or Sqlite3Engine()
    latest = len(schema)
    cur = engine.cursor(conn.cursor())
    engine.lock_schema(cur)
    try:
        found = _schema_version(cur, engine)
        if found > latest:
            raise SchemaTooNew(
                f"{path} has mailbox schema version {found}, newer than this securechat "
                f"understands ({latest}): upgrade securechat, or restore a backup made "
                "by this version")
        for version in range(found + 1, latest + 1):
            for statement in engine.schema_statements(schema[version - 1]):
                cur.execute(statement)
            cur.execute("UPDATE schema_version SET version = ?", (version,))
    except BaseException:
        engine.rollback(conn)
        raise
    engine.commit(conn)
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
