# -*- test-case-name: tests.test_store.SQLiteStoreTests,tests.test_store_postgres -*-
"""
The mailbox store's letter transactions, shared by both engines: plain
functions C{f(txn, ...)} on a DB-API cursor (SQLite's, or the PostgreSQL
engine's L{securechat.server.store.postgres.PgCursor}), in SQLite's
dialect with C{?} parameters, reading no clock (the time is an argument).
L{securechat.server.store.sqlstore.SQLMailboxStore} runs them; the
operator's tool runs some on a plain connection
(L{securechat.server.store.maintenance}).

SQL written here must run on both engines: C{ON CONFLICT} upserts with the
table's columns qualified (PostgreSQL finds a bare name ambiguous), no
SQLite-only functions (two-argument C{MAX}/C{MIN}, C{INSERT OR REPLACE}),
and C{lastrowid} only after an insert into C{letters}.
"""

from __future__ import annotations

from typing import Any, Sequence

from securechat.server.store import rules
from securechat.server.store.interface import (
    DELIVERY, Duplicate, LetterRecord, LetterSummary, MailboxLimits, MailboxUsage, NewLetter,
    NoSuchLetter, SentLetterStatus, StoreOutcome, Stored)


def _usage(txn: Any, recipient: str, now: int) -> tuple[int, int]:
    txn.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM letters"
                " WHERE recipient = ? AND deleted = 0 AND expires_at > ?", (recipient, now))
    letters, size = txn.fetchone()
    return int(letters), int(size)


def _counted(txn: Any, recipient: str) -> tuple[int, int]:
    """
    The recipient's letters not deleted and their bytes, from its
    C{mailbox_usage} row: expired letters not yet purged included, so
    never less than L{_usage}.
    """
    txn.execute("SELECT letters, bytes FROM mailbox_usage WHERE recipient = ?", (recipient,))
    row = txn.fetchone()
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


_COUNT = ("INSERT INTO mailbox_usage (recipient, letters, bytes) VALUES (?, ?, ?)"
          " ON CONFLICT (recipient) DO UPDATE"
          " SET letters = mailbox_usage.letters + excluded.letters,"
          " bytes = mailbox_usage.bytes + excluded.bytes")


def _count(txn: Any, recipient: str, letters: int, size: int) -> None:
    """Add C{letters} letters of C{size} bytes (negative: remove) to the count."""
    txn.execute(_COUNT, (recipient, letters, size))


def _count_all(txn: Any, counts: list[tuple[str, int, int]]) -> None:
    """L{_count} for each (recipient, letters, size), in one C{executemany}."""
    if counts:
        txn.executemany(_COUNT, counts)


def _earlier(txn: Any, new: NewLetter) -> Duplicate | None:
    """The letter already stored with C{new}'s (sender, letter_id), if any."""
    txn.execute("SELECT stored_at, expires_at, recipient FROM letters"
                " WHERE sender = ? AND letter_id = ?", (new.sender, new.letter_id))
    row = txn.fetchone()
    return None if row is None else Duplicate(row[0], row[1], row[2])


#: A new letter's row; nothing when (sender, letter_id) is taken.
INSERT_LETTER = ("INSERT INTO letters (sender, letter_id, recipient, size, stored_at, expires_at)"
                 " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (sender, letter_id) DO NOTHING")


#: A new letter's row with its id chosen (L{_store_all}).
_INSERT_NUMBERED = ("INSERT INTO letters (id, sender, letter_id, recipient, size, stored_at,"
                    " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (sender, letter_id) DO NOTHING")
_INSERT_BODY = "INSERT INTO letter_bodies (letter, body) VALUES (?, ?)"


def store_letters_txn(txn: Any, letters: Sequence[NewLetter], now: int,
                      limits: MailboxLimits,
                      counts: dict[str, tuple[int, int]] | None = None) -> list[StoreOutcome]:
    """
    Store C{letters} (one group commit): an outcome for each, in order.

    C{counts}, given only by the only writer of the database (SQLite: one
    relay process), is each recipient's letters and bytes as this process
    last counted them, never less than the exact usage (only this
    process adds letters; a delete or purge only makes it too high, which
    the exact scan below corrects when it would refuse): read instead of
    the C{mailbox_usage} row, and kept by this transaction.  (A
    transaction that fails after keeping it leaves it too high: safe.)
    """
    if getattr(txn, "insert_letter", None) is None:
        outcomes = _store_all(txn, letters, now, limits, counts)
        if outcomes is not None:
            return outcomes
    return _store_each(txn, letters, now, limits, counts)


def _store_all(txn: Any, letters: Sequence[NewLetter], now: int, limits: MailboxLimits,
               counts: dict[str, tuple[int, int]] | None) -> list[StoreOutcome] | None:
    """
    When no letter of the group could be refused (each within the size
    limit; each recipient's count plus ALL its letters here within its
    quota, as if none were a resend), store them all at once: their rows
    by one C{executemany} with ids chosen after the largest (this
    transaction holds the write lock), then their bodies.  A resend (the
    same sender and id as a stored letter, or as one before it here)
    inserts nothing (C{ON CONFLICT DO NOTHING}); only then are the ids
    read back to find which, and each is answered as the first time.
    The outcomes are those of L{_store_each}.  C{None}: some letter might
    be refused; nothing was written (L{_store_each} decides each).
    """
    max_size = limits.max_letter_size
    totals: dict[str, list[int]] = {}
    for new in letters:
        size = len(new.body)
        if size > max_size:
            return None
        total = totals.get(new.recipient)
        if total is None:
            totals[new.recipient] = [1, size]
        else:
            total[0] += 1
            total[1] += size
    held: dict[str, tuple[int, int]] = {}
    for recipient, (count, size) in totals.items():
        usage = counts.get(recipient) if counts is not None else None
        if usage is None:
            usage = _counted(txn, recipient)
        if usage[0] + count > limits.max_letters or usage[1] + size > limits.max_bytes:
            return None
        held[recipient] = usage
    txn.execute("SELECT COALESCE(MAX(id), 0) FROM letters")
    first = int(txn.fetchone()[0]) + 1
    expires_at = now + limits.expiry_seconds
    txn.executemany(_INSERT_NUMBERED, [
        (first + i, new.sender, new.letter_id, new.recipient, len(new.body), now, expires_at)
        for i, new in enumerate(letters)])
    stored = Stored(now, expires_at)
    outcomes: list[StoreOutcome]
    if txn.rowcount == len(letters):
        txn.executemany(_INSERT_BODY, [(first + i, new.body) for i, new in enumerate(letters)])
        outcomes = [stored] * len(letters)
    else:
        txn.execute("SELECT id FROM letters WHERE id >= ?", (first,))
        present = {row[0] for row in txn.fetchall()}
        outcomes, bodies = [], []
        totals = {}
        for i, new in enumerate(letters):
            if first + i in present:
                bodies.append((first + i, new.body))
                outcomes.append(stored)
                total = totals.setdefault(new.recipient, [0, 0])
                total[0] += 1
                total[1] += len(new.body)
            else:
                earlier = _earlier(txn, new)
                assert earlier is not None  # the conflict was with it
                outcomes.append(earlier)
        if bodies:
            txn.executemany(_INSERT_BODY, bodies)
    _count_all(txn, [(recipient, count, size) for recipient, (count, size) in totals.items()])
    if counts is not None:
        for recipient, usage in held.items():
            count, size = totals.get(recipient, (0, 0))
            counts[recipient] = (usage[0] + count, usage[1] + size)
    return outcomes


def _store_each(txn: Any, letters: Sequence[NewLetter], now: int, limits: MailboxLimits,
                counts: dict[str, tuple[int, int]] | None) -> list[StoreOutcome]:
    """The letters one by one, each checked against the quota as it stands."""
    # The quota is checked against the counted usage, which is never less
    # than the exact one; only when that refuses is the mailbox scanned
    # (expired letters not yet purged do not count), so the answer is the
    # exact one's.
    #
    # Idempotence without a SELECT per letter: the INSERT itself finds a
    # letter already stored (UNIQUE (sender, letter_id), ON CONFLICT DO
    # NOTHING, no row changed), and only then is the first one read for
    # its answer.  A letter the quota or size would refuse is looked up
    # first, so that a resend of a stored letter is still answered as the
    # first time whatever the later checks say (14.7, step 2).
    usage: dict[str, tuple[int, int]] = {}
    exact: set[str] = set()
    added: dict[str, tuple[int, int]] = {}
    outcomes: list[StoreOutcome] = []
    expires_at = now + limits.expiry_seconds
    # Every letter this transaction stores has the same outcome (immutable).
    stored = Stored(now, expires_at)
    # (The bound method once, and the cursor execute returns for rowcount
    # and lastrowid: adbapi's Transaction finds every attribute through a
    # Python-level __getattr__; PostgreSQL's cursor answers both as
    # sqlite3's does, L{securechat.server.store.postgres.PgCursor}.)
    execute = txn.execute
    # An engine may store a letter and its body in one statement (one
    # round trip to a server: PostgreSQL's PgCursor.insert_letter).
    insert_letter = getattr(txn, "insert_letter", None)
    # Otherwise the bodies are inserted together at the end, by one
    # executemany (nothing reads them before).
    bodies: list[tuple[int, bytes]] = []
    for new in letters:
        if new.recipient not in usage:
            usage[new.recipient] = _counted(txn, new.recipient)
        count, size = usage[new.recipient]
        refused = rules.refusal(new, count, size, limits)
        if refused is not None and new.recipient not in exact:
            exact.add(new.recipient)
            # (This transaction's own inserts are seen by the scan.)
            usage[new.recipient] = count, size = _usage(txn, new.recipient, now)
            refused = rules.refusal(new, count, size, limits)
        if refused is not None:
            outcomes.append(_earlier(txn, new) or refused)
            continue
        row = (new.sender, new.letter_id, new.recipient, len(new.body), now, expires_at)
        if insert_letter is not None:
            inserted = insert_letter(row, new.body)
        else:
            cursor = execute(INSERT_LETTER, row)
            inserted = cursor.rowcount == 1
            if inserted:
                bodies.append((cursor.lastrowid, new.body))
        if not inserted:
            first = _earlier(txn, new)
            assert first is not None  # the conflict was with it
            outcomes.append(first)
            continue
        usage[new.recipient] = (count + 1, size + len(new.body))
        done = added.get(new.recipient, (0, 0))
        added[new.recipient] = (done[0] + 1, done[1] + len(new.body))
        outcomes.append(stored)
    if bodies:
        txn.executemany(_INSERT_BODY, bodies)
    _count_all(txn, [(recipient, count, size) for recipient, (count, size) in added.items()])
    if counts is not None:
        # What this transaction read (the row, or the exact scan) and added.
        counts.update(usage)
    return outcomes


def list_letters_txn(txn: Any, recipient: str, new_only: bool, now: int) -> list[LetterSummary]:
    txn.execute("SELECT sender, letter_id, stored_at, size, fetched, read_at FROM letters"
                " WHERE recipient = ? AND deleted = 0 AND expires_at > ?"
                + (" AND fetched = 0" if new_only else "") + " ORDER BY id", (recipient, now))
    return [LetterSummary(row[0], bytes(row[1]), row[2], row[3], bool(row[4]),
                          row[5] is not None) for row in txn.fetchall()]


def _find(txn: Any, recipient: str, sender: str, letter_id: bytes, now: int) -> Any:
    txn.execute("SELECT id, recipient, size, stored_at, expires_at, deleted FROM letters"
                " WHERE sender = ? AND letter_id = ?", (sender, letter_id))
    row = txn.fetchone()
    if row is None or row[1] != recipient or row[4] <= now:
        raise NoSuchLetter(f"no letter {letter_id.hex()} from {sender}")
    return row


def fetch_letter_txn(txn: Any, recipient: str, sender: str, letter_id: bytes,
                     now: int) -> LetterRecord:
    row = _find(txn, recipient, sender, letter_id, now)
    if row[5]:
        raise NoSuchLetter(f"no letter {letter_id.hex()} from {sender}")
    txn.execute("SELECT body FROM letter_bodies WHERE letter = ?", (row[0],))
    body = bytes(txn.fetchone()[0])
    return LetterRecord(sender, recipient, letter_id, body, row[2], row[3], row[4])


def mark_txn(txn: Any, recipient: str, sender: str, letter_id: bytes, kind: int,
             receipt: bytes | None, now: int) -> int:
    row = _find(txn, recipient, sender, letter_id, now)
    txn.execute("UPDATE letters SET fetched = 1 WHERE id = ?", (row[0],))
    if receipt is None:
        # A fetch (or a read with read receipts off): no receipt, no time.
        return now
    # The first receipt of each kind stays, with the time it was stored.
    at, held = ("delivered_at", "delivery_receipt") if kind == DELIVERY else ("read_at", "read_receipt")
    txn.execute(f"UPDATE letters SET {at} = ?, {held} = ? WHERE id = ? AND {at} IS NULL",
                (now, receipt, row[0]))
    txn.execute(f"SELECT {at} FROM letters WHERE id = ?", (row[0],))
    return int(txn.fetchone()[0])


def delete_letter_txn(txn: Any, recipient: str, sender: str, letter_id: bytes, now: int) -> bool:
    row = _find(txn, recipient, sender, letter_id, now)
    if row[5]:
        return False
    txn.execute("UPDATE letters SET deleted = 1 WHERE id = ?", (row[0],))
    txn.execute("DELETE FROM letter_bodies WHERE letter = ?", (row[0],))
    _count(txn, recipient, -1, -row[2])
    return True


def sent_status_txn(txn: Any, sender: str, letter_ids: Sequence[bytes] | None,
                    now: int) -> list[SentLetterStatus]:
    query = ("SELECT id, recipient, letter_id, stored_at, expires_at, delivered_at, read_at,"
             " delivery_receipt, read_receipt FROM letters WHERE sender = ? AND expires_at > ?")
    rows = []
    if letter_ids is None:
        txn.execute(query, (sender, now))
        rows = txn.fetchall()
    else:
        wanted = sorted(set(letter_ids))
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start:start + _CHUNK]
            txn.execute(query + f" AND letter_id IN ({', '.join('?' * len(chunk))})",
                        (sender, now, *chunk))
            rows.extend(txn.fetchall())
    # Oldest first, in the order they were stored.
    rows.sort(key=lambda row: row[0])
    return [SentLetterStatus(row[1], bytes(row[2]), row[3], row[4], row[5], row[6],
                             None if row[7] is None else bytes(row[7]),
                             None if row[8] is None else bytes(row[8])) for row in rows]


#: Ids per query in C{sent_status_txn} (well under SQLite's variable limit).
_CHUNK = 500


def usage_txn(txn: Any, user: str | None, now: int) -> list[MailboxUsage]:
    if user is not None:
        return [MailboxUsage(user, *_usage(txn, user, now))]
    txn.execute("SELECT recipient, COUNT(*), SUM(size) FROM letters"
                " WHERE deleted = 0 AND expires_at > ? GROUP BY recipient ORDER BY recipient",
                (now,))
    return [MailboxUsage(row[0], int(row[1]), int(row[2])) for row in txn.fetchall()]


def expire_txn(txn: Any, now: int, grace: int | None) -> int:
    """
    Purge expired letters and, unless C{grace} is C{None}, previous signed
    prekeys past it; return the number of letters.
    """
    txn.execute("SELECT recipient, COUNT(*), SUM(size) FROM letters"
                " WHERE expires_at <= ? AND deleted = 0 GROUP BY recipient", (now,))
    for recipient, count, size in txn.fetchall():
        _count(txn, recipient, -int(count), -int(size))
    txn.execute("DELETE FROM mailbox_usage WHERE letters = 0")
    # Bodies go with their rows (ON DELETE CASCADE).
    txn.execute("DELETE FROM letters WHERE expires_at <= ?", (now,))
    purged = int(txn.rowcount)
    if grace is not None:
        txn.execute("DELETE FROM signed_prekeys WHERE replaced_at IS NOT NULL"
                    " AND replaced_at + ? <= ?", (grace, now))
    return purged
