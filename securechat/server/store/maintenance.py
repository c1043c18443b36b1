# -*- test-case-name: tests.test_store_admin -*-
"""
The operator's work on the mailbox file, synchronous, for
C{securechat-admin}: an online backup, usage per user, purging expired
letters.  They run the store's own transaction functions
(L{securechat.server.store.sqlite}) on a plain connection, and are safe
while the relay runs (SQLite's locking; the relay waits for them).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from typing import Iterator

from securechat.server.store.engine import open_prepared, run_now
from securechat.server.store.interface import MailboxUsage
from securechat.server.store.sqlite import expire_txn, usage_txn


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


def usage(path: str, now: int) -> list[MailboxUsage]:
    """
    Every user with unexpired letters, by name: letters and bytes.
    """
    with _reported(path):
        conn = open_existing(path)
        try:
            return run_now(conn, usage_txn, None, now)
        finally:
            conn.close()


def purge_expired(path: str, now: int) -> int:
    """
    Delete the letters expired at C{now} (with their status and receipts);
    return how many.  Previous signed prekeys are left to the relay's timer,
    which knows its grace period.
    """
    with _reported(path):
        conn = open_existing(path)
        try:
            return run_now(conn, expire_txn, now, None)
        finally:
            conn.close()
