# -*- test-case-name: tests.test_store_postgres -*-
"""
The store on PostgreSQL (C{--store postgresql://...}), for several relay
processes sharing one database: the same schema steps
(L{securechat.server.store.schema}), the same transaction functions and
the same stores (L{securechat.server.store.sqlstore.SQLMailboxStore},
L{securechat.server.store.groupsqlite.SQLiteGroupStore}) as SQLite, through
C{twisted.enterprise.adbapi} and C{psycopg2} (as Synapse does).

What differs from SQLite, all here:

  - B{SQL.}  L{PgCursor} gives the transaction functions a cursor that
    behaves as sqlite3's: it takes C{?} parameters (translated to
    psycopg2's C{%s} once per statement and cached), quotes the column
    C{user} (a reserved word in PostgreSQL), returns itself from
    C{execute} and answers C{lastrowid} (C{lastval()}); C{executemany}
    sends its rows in pages (C{execute_batch}: one round trip per page,
    not per row); and it stores a
    letter with its body in one statement (C{insert_letter}: one round
    trip to the server per letter instead of three).  The schema's
    types are translated by L{PostgresEngine.schema_statements}.
  - B{Isolation.}  Every transaction is C{SERIALIZABLE}: as on SQLite,
    where writes are serialised, what a transaction reads stays true until
    it commits, now across processes.  A transaction PostgreSQL aborts
    for a conflict with another process (serialization failure, deadlock;
    at a statement or at C{COMMIT}: either way it was rolled back) is run
    again, up to L{RETRIES} times in all, after a random pause that doubles
    with each run (L{retry_pause}: a loaded machine may keep the other
    transaction open for a while, and the reruns must outlast it); the
    functions are pure (they get the time as an argument), so a rerun is
    the same transaction.  Conflicts left after that are
    L{StoreUnavailable} (TRY_AGAIN).
  - B{Durability.}  An answer goes out after C{COMMIT} returned, which with
    PostgreSQL's defaults (C{fsync}, C{synchronous_commit = on}) means the
    commit is in the write-ahead log on disk.
  - B{Unavailability.}  When the server cannot be reached (stopped,
    restarting, the network down), a transaction fails with
    L{StoreUnavailable}: the relay refuses with TRY_AGAIN and never
    acknowledges.  The broken connection is dropped and the next
    transaction connects again (adbapi's pool, C{cp_reconnect}); a
    transaction whose connection turns out broken before its commit was
    sent is run once more on a fresh connection (nothing of it was
    committed), so the first letter after PostgreSQL is back is stored.
    One log line when the database goes, one when it is back.
  - B{Start-up.}  A bad URL, a server that cannot be reached, a role that
    may not create the tables or a schema newer than the code stop
    start-up with one line (L{UnusableDatabase}); several processes may
    start together (the schema is prepared under an advisory lock).
"""

from __future__ import annotations

import functools
import random
import re
import time
from typing import Any, Callable, Sequence, TypeVar

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from securechat.server.store.engine import UnusableDatabase, prepare_schema
from securechat.server.store.interface import StoreUnavailable
from securechat.server.store.lettersql import INSERT_LETTER

try:
    import psycopg2
    import psycopg2.extensions
    import psycopg2.extras
except ImportError:  # pragma: no cover - the extra is not installed
    psycopg2 = None

T = TypeVar("T")

#: How many times a transaction aborted by a conflict with another process
#: is run in all.
RETRIES = 8

#: Seconds, at most, between the first and the second run of a transaction
#: aborted by a conflict; the bound doubles with each further run, up to
#: L{RETRY_PAUSE_MAX} (so about 0.7 s in all, in the pool's thread, before
#: a transaction that keeps conflicting is TRY_AGAIN).
RETRY_PAUSE = 0.01

#: Seconds, at most, between two runs of a conflicting transaction.
RETRY_PAUSE_MAX = 0.2


def retry_pause(runs: int) -> float:
    """
    The bound of the random pause after the C{runs}-th run of a transaction
    aborted by a conflict: exponential back-off, so that reruns outlast a
    slow conflicting transaction, capped at L{RETRY_PAUSE_MAX}.
    """
    return float(min(RETRY_PAUSE * 2 ** (runs - 1), RETRY_PAUSE_MAX))

#: Seconds to wait for a connection, unless the URL says otherwise.
CONNECT_TIMEOUT = 10

#: The advisory lock under which the schema is prepared (any fixed number:
#: "sc" "st" "or" "e" in ASCII).
SCHEMA_LOCK = 0x73637374_6f7265

_USER = re.compile(r'(?<![\w"])user(?![\w"])')

#: A letter and its body in one statement: the body's row only if the
#: letter's was inserted (so its row count says whether it was).
_INSERT_LETTER_AND_BODY = (
    f"WITH letter AS ({INSERT_LETTER} RETURNING id)"
    " INSERT INTO letter_bodies (letter, body) SELECT id, ? FROM letter").replace("?", "%s")


@functools.lru_cache(maxsize=1024)
def translate(statement: str, with_parameters: bool) -> str:
    """
    A statement in SQLite's dialect as psycopg2 runs it on PostgreSQL:
    the column C{user} quoted and, when it has parameters, C{%} doubled and
    each C{?} a C{%s} (no statement has a C{?} inside a string).
    """
    statement = _USER.sub('"user"', statement)
    if with_parameters:
        statement = statement.replace("%", "%%").replace("?", "%s")
    return statement


class PgCursor:
    """
    A psycopg2 cursor that the transaction functions use as sqlite3's
    (see the module's docstring).
    """

    __slots__ = ("_cursor",)

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def execute(self, statement: str, parameters: Any = None) -> PgCursor:
        if parameters is None:
            self._cursor.execute(translate(statement, False))
        else:
            self._cursor.execute(translate(statement, True), parameters)
        return self

    def executemany(self, statement: str, rows: Sequence[Any]) -> PgCursor:
        """C{statement} once per row of C{rows}, in as few round trips as fit."""
        psycopg2.extras.execute_batch(self._cursor, translate(statement, True), rows)
        return self

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)

    def insert_letter(self, row: tuple[Any, ...], body: bytes) -> bool:
        """
        L{INSERT_LETTER} and, if it inserted, the body, in one statement
        (one round trip; L{securechat.server.store.lettersql.store_letters_txn}
        uses it); whether it inserted.
        """
        self._cursor.execute(_INSERT_LETTER_AND_BODY, (*row, body))
        return int(self._cursor.rowcount) == 1

    @property
    def lastrowid(self) -> int:
        """The id the last insert into a table with an identity column took."""
        self._cursor.execute("SELECT lastval()")
        return int(self._cursor.fetchone()[0])


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def describe(url: str) -> str:
    """
    The database a libpq URL names, for messages, without its password:
    C{postgresql://USER@HOST:PORT/NAME} (HOST may be a socket directory).

    @raise UnusableDatabase: it is not a URL libpq understands.
    """
    if psycopg2 is None:
        raise UnusableDatabase("--store postgresql:// needs psycopg2: pip install "
                               "'securechat[postgresql]'")
    if not url.startswith(("postgresql://", "postgres://")):
        raise UnusableDatabase(f"{url.split('@')[-1]!r} is not a postgresql:// URL")
    try:
        parts = psycopg2.extensions.parse_dsn(url)
    except psycopg2.ProgrammingError as e:
        raise UnusableDatabase(f"the --store URL is not one libpq understands "
                               f"({_one_line(e)})") from None
    where = parts.get("host", "")
    if parts.get("port"):
        where += f":{parts['port']}"
    user = f"{parts['user']}@" if parts.get("user") else ""
    return f"postgresql://{user}{where}/{parts.get('dbname', '')}"


class PostgresEngine:
    """What is particular to PostgreSQL (see L{securechat.server.store.engine})."""

    name = "PostgreSQL"

    def __init__(self, url: str) -> None:
        self.url = url
        self.display = describe(url)
        extra: dict[str, Any] = {"application_name": "securechat"}
        if "connect_timeout" not in psycopg2.extensions.parse_dsn(url):
            extra["connect_timeout"] = CONNECT_TIMEOUT
        self.dsn = psycopg2.extensions.make_dsn(url, **extra)

    def on_new_connection(self, conn: Any) -> None:
        conn.set_session(isolation_level="SERIALIZABLE", autocommit=False)

    def connect(self) -> Any:
        """A plain connection (for start-up and the operator's tool)."""
        conn = psycopg2.connect(self.dsn)
        try:
            self.on_new_connection(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def cursor(self, cursor: Any) -> PgCursor:
        return cursor if isinstance(cursor, PgCursor) else PgCursor(cursor)

    def schema_statements(self, step: str) -> list[str]:
        """A schema step in PostgreSQL's types (see L{securechat.server.store.schema})."""
        statements = []
        for statement in step.split(";"):
            if not statement.strip():
                continue
            statement = re.sub(r"\bid INTEGER PRIMARY KEY\b",
                               "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", statement)
            statement = re.sub(r"\bBLOB\b", "BYTEA", statement)
            statements.append(re.sub(r"\bINTEGER\b", "BIGINT", statement))
        return statements

    def has_table(self, txn: Any, name: str) -> bool:
        txn.execute("SELECT 1 FROM information_schema.tables"
                    " WHERE table_schema = current_schema() AND table_name = ?", (name,))
        return txn.fetchone() is not None

    def lock_schema(self, txn: Any) -> None:
        txn.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK,))

    def begin(self, txn: Any) -> None:
        """Nothing to do: psycopg2 begins the transaction at its first statement."""

    def commit(self, conn: Any) -> None:
        conn.commit()

    def rollback(self, conn: Any) -> None:
        conn.rollback()


def open_prepared(engine: PostgresEngine) -> Any:
    """
    A plain connection to the database, its schema current.

    @raise SchemaTooNew: see L{prepare_schema}.
    @raise UnusableDatabase: it cannot be reached or used (one line).
    """
    try:
        conn = engine.connect()
    except psycopg2.Error as e:
        raise UnusableDatabase(f"cannot connect to {engine.display}: {_one_line(e)}") from None
    try:
        prepare_schema(conn, engine.display, engine=engine)
    except psycopg2.Error as e:
        conn.close()
        raise UnusableDatabase(f"{engine.display} is not a usable mailbox database "
                               f"({_one_line(e)})") from None
    except BaseException:
        conn.close()
        raise
    return conn


def _connection_error(error: BaseException) -> bool:
    return isinstance(error, (psycopg2.OperationalError, psycopg2.InterfaceError))


class PostgresDatabase:
    """
    One adbapi pool of C{pool_size} connections to the database at C{url}
    (its schema prepared now, synchronously), with the same
    C{runInteraction} as SQLite's L{securechat.server.store.engine.Database}.
    C{available} is False from a transaction that found the server
    unreachable until one succeeds.
    """

    log = Logger()
    #: Several relay processes may write this database at once: nothing a
    #: process read from it may be answered from memory later (the group
    #: state, who holds letters or prekeys); see L{SQLDatabase.shared}.
    shared = True

    def __init__(self, url: str, reactor: Any = None, pool_size: int = 1) -> None:
        if reactor is None:
            from twisted.internet import reactor as global_reactor
            reactor = global_reactor
        self.engine = PostgresEngine(url)
        #: The database, for messages (no password).
        self.path = self.engine.display
        self.available = True
        self._reactor = reactor
        open_prepared(self.engine).close()
        self.pool = adbapi.ConnectionPool(
            "psycopg2", self.engine.dsn, cp_min=1, cp_max=pool_size,
            cp_openfun=self.engine.on_new_connection, cp_reconnect=True, cp_noisy=False,
            cp_reactor=reactor)

    def runInteraction(self, description: str, f: Callable[..., T], *args: Any,
                       **kwargs: Any) -> Deferred[T]:
        """
        Run C{f(txn, *args, **kwargs)} in a serializable transaction on a
        pool thread; fire with its result once committed, with C{f}'s
        exception (rolled back) if it raised, or with L{StoreUnavailable}.
        """
        d: Deferred[T] = deferToThreadPool(self._reactor, self.pool.threadpool,
                                           self._transaction, f, args, kwargs)
        d.addCallbacks(self._succeeded, self._failed)
        return d

    def _transaction(self, f: Callable[..., T], args: tuple[Any, ...],
                     kwargs: dict[str, Any]) -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                conn = self.pool.connect()
            except psycopg2.Error as e:
                raise StoreUnavailable(f"{self.path} unavailable: {_one_line(e)}") from None
            committing = False
            try:
                cursor = conn.cursor()
                try:
                    result = f(PgCursor(cursor), *args, **kwargs)
                finally:
                    if not conn.closed:
                        cursor.close()
                committing = True
                conn.commit()
                return result
            except Exception as e:
                broken = self._settle(conn)
                if attempt < RETRIES and isinstance(
                        e, psycopg2.extensions.TransactionRollbackError):
                    # Aborted for a conflict with another process, also at
                    # COMMIT (serializable transactions may be): rolled
                    # back, so run again, after a moment that doubles and
                    # differs between processes (no two retry in step).
                    time.sleep(random.uniform(0, retry_pause(attempt)))
                    continue
                if not committing and broken and attempt == 1 and _connection_error(e):
                    # The connection was already gone (PostgreSQL restarted
                    # since it was last used): nothing was committed; once
                    # more on a fresh one.
                    continue
                if _connection_error(e):
                    raise StoreUnavailable(f"{self.path} unavailable: {_one_line(e)}") from None
                raise

    def _settle(self, conn: Any) -> bool:
        """
        Roll back after a failure; drop the connection if it is broken
        (the next transaction connects again).  Whether it was.
        """
        try:
            conn.rollback()
        except psycopg2.Error:
            pass
        if conn.closed:
            try:
                self.pool.disconnect(conn)
            except Exception:
                pass
            return True
        return False

    def _succeeded(self, result: T) -> T:
        if not self.available:
            self.available = True
            self.log.info("store: {database} is available again", database=self.path)
        return result

    def _failed(self, failure: Failure) -> Failure:
        if failure.check(StoreUnavailable) and self.available:
            self.available = False
            self.log.warn("store: {why}; refusing what needs the store (TRY_AGAIN) until it is "
                          "back", why=failure.getErrorMessage())
        return failure

    def close(self) -> None:
        self.pool.close()
