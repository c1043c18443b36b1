# -*- test-case-name: tests.test_client_groups -*-
"""
The client's group key file: a SQLite database (mode 0600, created so
before SQLite opens it, by L{securechat.client.letterstore.open_private_database}) holding,
per group,

  - the membership history the group layer checks messages against
    (L{securechat.client.groupmembers.Membership});
  - our own sending chain (its current chain key and signing key only),
    and the distributions we owe other members until the letter carrying
    each is in the letters file (the mailbox posts it from there, also
    after a restart);
  - each other member's chains as we know them, with skipped keys and held
    messages (L{securechat.crypto.senderstate.SenderKeyState});
  - distributions and messages waiting for the group's log to reach their
    epoch.

Records are JSON (bytes in hex).  Every write commits before the call
returns: our chain is on disk at its next counter I{before} the message
sealed with the previous one is handed out to be posted, so a crash never
makes us use one message key twice.  C{secure_delete} is on, so a replaced
chain key is overwritten in the file, not left in a free page.  With
C{path} None the file is in memory (tests).
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from securechat.client.letterstore import open_private_database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS groups (group_id BLOB PRIMARY KEY, membership TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS changes (
    group_id BLOB NOT NULL, epoch INTEGER NOT NULL, change BLOB NOT NULL, PRIMARY KEY (group_id, epoch));
CREATE TABLE IF NOT EXISTS own_chains (group_id BLOB PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sender_states (
    group_id BLOB NOT NULL, sender TEXT NOT NULL, record TEXT NOT NULL, PRIMARY KEY (group_id, sender));
CREATE TABLE IF NOT EXISTS owed_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT, group_id BLOB NOT NULL, recipient TEXT NOT NULL,
    content BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS pending (
    id INTEGER PRIMARY KEY AUTOINCREMENT, group_id BLOB NOT NULL, sender TEXT NOT NULL,
    kind TEXT NOT NULL, seq INTEGER NOT NULL, stored_at INTEGER NOT NULL, data BLOB NOT NULL);
"""


class GroupKeyStore:
    """The client's group key file (see the module docstring)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.db = open_private_database(path)
        self.db.execute("PRAGMA secure_delete=ON")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    # -- membership -----------------------------------------------------------

    def membership(self, group_id: bytes) -> dict[str, Any] | None:
        row = self.db.execute("SELECT membership FROM groups WHERE group_id = ?", (group_id,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def save_membership(self, group_id: bytes, record: dict[str, Any]) -> None:
        self.db.execute("INSERT OR REPLACE INTO groups (group_id, membership) VALUES (?, ?)",
                        (group_id, json.dumps(record)))

    def group_ids(self) -> list[bytes]:
        return [bytes(r[0]) for r in self.db.execute("SELECT group_id FROM groups ORDER BY group_id")]

    def forget_group(self, group_id: bytes) -> None:
        """Everything of a group: membership, chains, states, pending."""
        with self.db:
            self.db.execute("BEGIN")
            for table in ("groups", "own_chains", "sender_states", "pending", "owed_keys"):
                self.db.execute(f"DELETE FROM {table} WHERE group_id = ?", (group_id,))

    # -- the verified change log (securechat.client.groupsession) -------------

    def add_change(self, group_id: bytes, epoch: int, change: bytes) -> None:
        """Keep a change this client verified and applied."""
        self.db.execute("INSERT OR REPLACE INTO changes VALUES (?, ?, ?)", (group_id, epoch, change))

    def forget_log(self, group_id: bytes) -> None:
        """A group's kept changes (the group is gone for us)."""
        self.db.execute("DELETE FROM changes WHERE group_id = ?", (group_id,))

    def changes(self) -> list[tuple[bytes, bytes]]:
        """Every kept change, as C{(group_id, change)}, by group and epoch."""
        return [(bytes(g), bytes(c)) for g, c in
                self.db.execute("SELECT group_id, change FROM changes ORDER BY group_id, epoch")]

    # -- our chain ------------------------------------------------------------

    def own_chain(self, group_id: bytes) -> dict[str, Any] | None:
        """Our chain's record, or None."""
        row = self.db.execute("SELECT record FROM own_chains WHERE group_id = ?", (group_id,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def save_own_chain(self, group_id: bytes, record: dict[str, Any],
                       owed: Sequence[tuple[str, bytes]] = ()) -> list[int]:
        """
        Keep our chain and, in the same transaction, the distributions
        C{owed} (recipient, content); their ids, in order.
        """
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("INSERT OR REPLACE INTO own_chains (group_id, record) VALUES (?, ?)",
                            (group_id, json.dumps(record)))
            return [int(self.db.execute("INSERT INTO owed_keys (group_id, recipient, content) VALUES (?, ?, ?)",
                                        (group_id, recipient, content)).lastrowid or 0)
                    for recipient, content in owed]

    def add_owed(self, group_id: bytes, recipient: str, content: bytes) -> int:
        cursor = self.db.execute("INSERT INTO owed_keys (group_id, recipient, content) VALUES (?, ?, ?)",
                                 (group_id, recipient, content))
        return int(cursor.lastrowid or 0)

    def owed(self) -> list[tuple[int, bytes, str, bytes]]:
        """The distributions still owed: C{(id, group_id, recipient, content)}, oldest first."""
        return [(int(r[0]), bytes(r[1]), str(r[2]), bytes(r[3])) for r in self.db.execute(
            "SELECT id, group_id, recipient, content FROM owed_keys ORDER BY id")]

    def drop_owed(self, owed_id: int) -> None:
        self.db.execute("DELETE FROM owed_keys WHERE id = ?", (owed_id,))

    # -- the others' chains -----------------------------------------------------

    def sender_state(self, group_id: bytes, sender: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT record FROM sender_states WHERE group_id = ? AND sender = ?",
                              (group_id, sender)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def save_sender_state(self, group_id: bytes, sender: str, record: dict[str, Any]) -> None:
        self.db.execute("INSERT OR REPLACE INTO sender_states (group_id, sender, record) VALUES (?, ?, ?)",
                        (group_id, sender, json.dumps(record)))

    # -- waiting for the log --------------------------------------------------

    def add_pending(self, group_id: bytes, sender: str, kind: str, seq: int, stored_at: int,
                    data: bytes) -> None:
        self.db.execute("INSERT INTO pending (group_id, sender, kind, seq, stored_at, data) "
                        "VALUES (?, ?, ?, ?, ?, ?)", (group_id, sender, kind, seq, stored_at, data))

    def pending(self, group_id: bytes | None = None) -> list[tuple[int, bytes, str, str, int, int, bytes]]:
        """C{(id, group_id, sender, kind, seq, stored_at, data)}, oldest first."""
        query = "SELECT id, group_id, sender, kind, seq, stored_at, data FROM pending"
        rows = (self.db.execute(query + " ORDER BY id") if group_id is None
                else self.db.execute(query + " WHERE group_id = ? ORDER BY id", (group_id,)))
        return [(int(r[0]), bytes(r[1]), str(r[2]), str(r[3]), int(r[4]), int(r[5]), bytes(r[6])) for r in rows]

    def pending_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM pending").fetchone()[0])

    def drop_pending(self, pending_id: int) -> None:
        self.db.execute("DELETE FROM pending WHERE id = ?", (pending_id,))
