# -*- test-case-name: tests.test_store_sqlite,tests.test_store_postgres -*-
"""
The store's schema, one list of steps for every engine
(L{securechat.server.store.engine}): written in SQLite's dialect; the
PostgreSQL engine translates each step's types once
(L{securechat.server.store.postgres.PostgresEngine.schema_statements}:
C{BLOB} is C{BYTEA}, C{INTEGER} is C{BIGINT}, the letters' C{id} an
identity column, the column C{user} quoted).  Write new steps so that the
translation is all they need (a test applies every step on both).
"""

from __future__ import annotations

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
