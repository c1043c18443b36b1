# -*- test-case-name: tests.test_store_admin -*-
"""
The operator's work on the mailbox, synchronous, for C{securechat-admin}:
an online backup, usage per user, purging expired letters.  They run the
store's own transaction functions (L{securechat.server.store.lettersql})
on a plain connection, and are safe while the relay runs (SQLite's
locking, the relay waits for them; PostgreSQL's serializable
transactions).  With C{store} a C{postgresql://} URL they work on that
database (its backup is C{pg_dump}'s, not this module's).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from typing import Any, Callable, Iterator, TypeVar

from securechat.server.store.engine import open_prepared, run_now
from securechat.server.store.interface import MailboxUsage
from securechat.server.store.sqlite import expire_txn, usage_txn

T = TypeVar("T")

#: C{store} for the SQLite file in the data directory.
SQLITE = "sqlite"


class MaintenanceError(Exception):
    """
    The operation was refused; the message is one line saying why.
    """


@contextlib.contextmanager
def _reported(path: str) -> Iterator[None]:
    """
    Turn a database error (locked past the busy timeout, disk full, a
    damaged file) into one line naming the file.
    """
    try:
        yield
    except sqlite3.Error as e:
        raise MaintenanceError(f"{path}: {e}") from None


def open_existing(path: str) -> sqlite3.Connection:
    """
    A connection to the mailbox at C{path}, which must exist (the relay
    creates it); its schema is brought up to date as the relay would.

    @raise MaintenanceError: there is no mailbox there.
    @raise securechat.server.store.engine.UnusableDatabase: it cannot be
        used (L{securechat.server.store.engine.SchemaTooNew}: it is newer
        than this securechat).
    """
    if not os.path.isfile(path):
        raise MaintenanceError(f"{path} does not exist: the relay creates the mailbox when it "
                               "first starts")
    return open_prepared(path)


def backup(path: str, destination: str) -> int:
    """
    Copy the mailbox at C{path} to C{destination} (a new file, mode 0600)
    with SQLite's online backup, consistent even while the relay writes;
    return the number of letters in the copy.

    @raise MaintenanceError: C{destination} exists, is a directory, or its
        directory does not; or the copy fails its check.
    """
    if os.path.isdir(destination):
        raise MaintenanceError(f"{destination} is a directory; give the backup file's name")
    if os.path.lexists(destination):
        raise MaintenanceError(f"{destination} already exists; not overwriting it")
    directory = os.path.dirname(os.path.abspath(destination))
    if not os.path.isdir(directory):
        raise MaintenanceError(f"the directory {directory} does not exist")
    partial = destination + ".partial"
    try:
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    except FileExistsError:
        raise MaintenanceError(f"{partial} exists (an earlier backup was interrupted?): "
                               "remove it first") from None
    try:
        with _reported(path):
            letters = _copy(path, partial)
        _fsync(partial)
        # A hard link never replaces an existing file; then drop the name.
        os.link(partial, destination)
    finally:
        for leftover in (partial, partial + "-journal", partial + "-wal", partial + "-shm"):
            if os.path.lexists(leftover):
                os.unlink(leftover)
    _fsync(directory)
    return letters


def _copy(path: str, partial: str) -> int:
    source = open_existing(path)
    try:
        copy = sqlite3.connect(partial)
        try:
            source.backup(copy)
            check = copy.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise MaintenanceError(f"the copy in {partial} fails its check: {check}")
            return int(copy.execute("SELECT COUNT(*) FROM letters").fetchone()[0])
        finally:
            copy.close()
    finally:
        source.close()


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def usage(path: str, now: int, store: str = SQLITE) -> list[MailboxUsage]:
    """
    Every user with unexpired letters, by name: letters and bytes.
    """
    if store != SQLITE:
        return _on_postgres(store, usage_txn, None, now)
    with _reported(path):
        conn = open_existing(path)
        try:
            return run_now(conn, usage_txn, None, now)
        finally:
            conn.close()


def purge_expired(path: str, now: int, store: str = SQLITE) -> int:
    """
    Delete the letters expired at C{now} (with their status and receipts);
    return how many.  Previous signed prekeys are left to the relay's timer,
    which knows its grace period.
    """
    if store != SQLITE:
        return _on_postgres(store, expire_txn, now, None)
    with _reported(path):
        conn = open_existing(path)
        try:
            return run_now(conn, expire_txn, now, None)
        finally:
            conn.close()


def _on_postgres(url: str, f: Callable[..., T], *args: Any) -> T:
    """
    Run the transaction function C{f} on the PostgreSQL database at C{url}
    (its schema brought up to date as the relay would), committed.

    @raise MaintenanceError: it failed (one line naming the database).
    @raise securechat.server.store.engine.UnusableDatabase: it cannot be
        reached or used.
    """
    from securechat.server.store.postgres import PostgresEngine, open_prepared, psycopg2
    engine = PostgresEngine(url)
    conn = open_prepared(engine)
    try:
        result = f(engine.cursor(conn.cursor()), *args)
        conn.commit()
        return result
    except psycopg2.Error as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise MaintenanceError(f"{engine.display}: {first}") from None
    finally:
        conn.close()
