# -*- test-case-name: tests.test_client_letters -*-
"""
The client's own mailbox file: a SQLite database (mode 0600) in the
client's directory, beside the known-peers file, holding

  - the private halves of our prekeys (docs/protocol.rst 14.1): the current
    signed prekey, replaced ones until their grace period is over, and the
    one-time prekeys not yet used by a letter we opened;
  - the letters we sent, with their sealed bytes (so that one the relay has
    not acknowledged is posted again with the same id after a reconnection)
    and their state, and the receipts that came for them;
  - the letters we opened (sender, id, the sealed bytes, the text), which
    is also what refuses a replayed letter (14.4 step 5);
  - a few settings (read receipts on or off, the next prekey id).

Every change is committed before the call returns (each statement runs in
its own transaction), so a private key a letter in flight may need is on
disk before its public half is uploaded.  The calls are small; plain
C{sqlite3} on the client is fine.  With C{path} None the file is in memory
(tests).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS signed_prekeys (
    prekey_id INTEGER PRIMARY KEY, private BLOB NOT NULL, encoded BLOB NOT NULL,
    created_at INTEGER NOT NULL, replaced_at INTEGER, uploaded INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS one_time_prekeys (
    prekey_id INTEGER PRIMARY KEY, private BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS sent (
    letter_id BLOB PRIMARY KEY, recipient TEXT NOT NULL, sealed BLOB NOT NULL,
    created_at INTEGER NOT NULL, state TEXT NOT NULL, stored_at INTEGER, expires_at INTEGER,
    reason TEXT);
CREATE TABLE IF NOT EXISTS receipts (
    letter_id BLOB NOT NULL, kind INTEGER NOT NULL, receipt BLOB NOT NULL,
    PRIMARY KEY (letter_id, kind));
CREATE TABLE IF NOT EXISTS received (
    sender TEXT NOT NULL, letter_id BLOB NOT NULL, sealed BLOB NOT NULL, text TEXT NOT NULL,
    sent_at INTEGER NOT NULL, stored_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
    PRIMARY KEY (sender, letter_id));
"""

#: States of a letter we sent, as this client knows them.
PENDING = "pending"      # posted, no answer yet: posted again after a reconnection
STORED = "stored"        # the relay acknowledged it (LETTER_STORED)
REFUSED = "refused"      # the relay refused it (LETTER_REFUSED); not posted again


@dataclass(frozen=True)
class SentLetter:
    """One letter we sent, as kept in the file."""

    letter_id: bytes
    recipient: str
    sealed: bytes
    created_at: int
    state: str
    stored_at: int | None
    expires_at: int | None
    reason: str | None


def open_private_database(path: str | None) -> sqlite3.Connection:
    """
    One of the client's SQLite files holding private keys (this one and
    L{securechat.client.groupstore}'s), in autocommit mode: C{path} is
    created 0600 (its directory 0700) before SQLite opens it, and written
    with C{synchronous=FULL}; C{None} is a database in memory.
    """
    if path is None:
        return sqlite3.connect(":memory:", isolation_level=None)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    # Created 0600 before SQLite opens it: no moment where another
    # user could read a private key.
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous=FULL")
    return db


def _raw(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


class LetterStore:
    """
    The client's mailbox file (see the module docstring).  Also the
    L{securechat.crypto.letters.PrekeySecrets} that opens letters.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.db = open_private_database(path)
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    # -- settings -------------------------------------------------------------

    def setting(self, name: str, default: str) -> str:
        row = self.db.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
        return default if row is None else str(row[0])

    def set_setting(self, name: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO settings (name, value) VALUES (?, ?)", (name, value))

    def next_prekey_ids(self, count: int) -> int:
        """
        The first of C{count} prekey ids never used before (ids are not
        reused while a letter might name the old key).
        """
        first = int(self.setting("next_prekey_id", "1"))
        self.set_setting("next_prekey_id", str(first + count))
        return first

    # -- prekeys (PrekeySecrets) ---------------------------------------------

    def signed_prekey(self, prekey_id: int) -> X25519PrivateKey | None:
        row = self.db.execute("SELECT private FROM signed_prekeys WHERE prekey_id = ?",
                              (prekey_id,)).fetchone()
        return None if row is None else X25519PrivateKey.from_private_bytes(row[0])

    def one_time_prekey(self, prekey_id: int) -> X25519PrivateKey | None:
        row = self.db.execute("SELECT private FROM one_time_prekeys WHERE prekey_id = ?",
                              (prekey_id,)).fetchone()
        return None if row is None else X25519PrivateKey.from_private_bytes(row[0])

    def forget_one_time(self, prekey_id: int) -> None:
        self.db.execute("DELETE FROM one_time_prekeys WHERE prekey_id = ?", (prekey_id,))

    def current_signed(self) -> tuple[int, int, bool, bytes] | None:
        """
        The current signed prekey: C{(prekey_id, created_at, uploaded,
        encoded)}.
        """
        row = self.db.execute(
            "SELECT prekey_id, created_at, uploaded, encoded FROM signed_prekeys WHERE replaced_at IS NULL "
            "ORDER BY prekey_id DESC LIMIT 1").fetchone()
        return None if row is None else (int(row[0]), int(row[1]), bool(row[2]), bytes(row[3]))

    def add_signed(self, prekey_id: int, private: X25519PrivateKey, encoded: bytes,
                   created_at: int) -> None:
        """
        Keep a new signed prekey as the current one; the one it replaces
        stays (for letters in flight) until L{drop_replaced}.
        """
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("UPDATE signed_prekeys SET replaced_at = ? WHERE replaced_at IS NULL",
                            (created_at,))
            self.db.execute("INSERT INTO signed_prekeys (prekey_id, private, encoded, created_at) "
                            "VALUES (?, ?, ?, ?)", (prekey_id, _raw(private), encoded, created_at))

    def mark_signed_uploaded(self, prekey_id: int) -> None:
        self.db.execute("UPDATE signed_prekeys SET uploaded = 1 WHERE prekey_id = ?", (prekey_id,))

    def drop_replaced(self, before: int) -> int:
        """
        Forget signed prekeys replaced before C{before} (their grace period
        is over); how many.
        """
        cursor = self.db.execute(
            "DELETE FROM signed_prekeys WHERE replaced_at IS NOT NULL AND replaced_at < ?", (before,))
        return cursor.rowcount

    def signed_ids(self) -> list[int]:
        return [int(r[0]) for r in self.db.execute("SELECT prekey_id FROM signed_prekeys ORDER BY prekey_id")]

    def add_one_time(self, keys: list[tuple[int, X25519PrivateKey]]) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT INTO one_time_prekeys (prekey_id, private) VALUES (?, ?)",
                                [(i, _raw(k)) for i, k in keys])

    def one_time_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM one_time_prekeys").fetchone()[0])

    # -- letters we sent ----------------------------------------------------------

    def add_sent(self, letter_id: bytes, recipient: str, sealed: bytes, created_at: int) -> None:
        self.db.execute("INSERT INTO sent (letter_id, recipient, sealed, created_at, state) "
                        "VALUES (?, ?, ?, ?, ?)", (letter_id, recipient, sealed, created_at, PENDING))

    def set_sent_state(self, letter_id: bytes, state: str, stored_at: int | None = None,
                       expires_at: int | None = None, reason: str | None = None) -> None:
        self.db.execute("UPDATE sent SET state = ?, stored_at = ?, expires_at = ?, reason = ? "
                        "WHERE letter_id = ?", (state, stored_at, expires_at, reason, letter_id))

    def sent(self, letter_id: bytes) -> SentLetter | None:
        row = self.db.execute("SELECT letter_id, recipient, sealed, created_at, state, stored_at, "
                              "expires_at, reason FROM sent WHERE letter_id = ?", (letter_id,)).fetchone()
        return None if row is None else SentLetter(*row)

    def sent_letters(self, state: str | None = None) -> list[SentLetter]:
        query = ("SELECT letter_id, recipient, sealed, created_at, state, stored_at, expires_at, "
                 "reason FROM sent")
        rows = (self.db.execute(query + " WHERE state = ? ORDER BY created_at, rowid", (state,))
                if state is not None else self.db.execute(query + " ORDER BY created_at DESC, rowid DESC"))
        return [SentLetter(*row) for row in rows]

    def add_receipt(self, letter_id: bytes, kind: int, receipt: bytes) -> None:
        self.db.execute("INSERT OR IGNORE INTO receipts (letter_id, kind, receipt) VALUES (?, ?, ?)",
                        (letter_id, kind, receipt))

    # -- letters we opened -----------------------------------------------------

    def add_received(self, sender: str, letter_id: bytes, sealed: bytes, text: str,
                     sent_at: int, stored_at: int, expires_at: int) -> None:
        self.db.execute("INSERT OR IGNORE INTO received VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (sender, letter_id, sealed, text, sent_at, stored_at, expires_at))

    def received(self, sender: str, letter_id: bytes) -> tuple[bytes, str, int] | None:
        """
        A letter we opened: C{(sealed, text, sent_at)}.
        """
        row = self.db.execute("SELECT sealed, text, sent_at FROM received WHERE sender = ? AND "
                              "letter_id = ?", (sender, letter_id)).fetchone()
        return None if row is None else (bytes(row[0]), str(row[1]), int(row[2]))

    def __contains__(self, key: object) -> bool:
        """
        Whether C{(sender, letter_id)} is a letter we opened (the C{opened}
        container of L{securechat.crypto.letters.open_letter}).
        """
        if not isinstance(key, tuple) or len(key) != 2:
            return False
        return self.received(key[0], key[1]) is not None
