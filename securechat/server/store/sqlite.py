# -*- test-case-name: tests.test_store.SQLiteStoreTests,tests.test_store_sqlite -*-
"""
The mailbox store on SQLite (L{securechat.server.store.engine}), the
embedded default: C{mailbox.sqlite3} in the data directory.

Every transaction is a plain function C{f(txn, ...)} at module level (the
C{_txn} functions below), run by L{Database.runInteraction}; they read no
clock (the time is an argument) and work on any DB-API cursor, so the
operator's tool runs the same ones (L{securechat.server.store.maintenance}).

B{Group commit.}  C{store_letters} does not start a transaction per call:
calls made in the same reactor turn, and all calls made while a commit is
in flight, are stored by ONE C{store-letters} transaction, and each call's
Deferred fires only after that transaction has committed (with
C{synchronous=FULL}: is on disk).  If the transaction fails, every call in
it fails and nothing of it is stored; the clients resend with the same ids.
"""

from __future__ import annotations

from typing import Any, Sequence

import sqlite3

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from securechat.server.store import rules
from securechat.server.store.engine import Database, UnusableDatabase, run_now
from securechat.server.store.prekeysql import (
    claim_bundle_txn, drop_prekeys_txn, holders_txn, login_state_txn, signed_prekeys_txn, stock_txn,
    upload_prekeys_txn)
from securechat.server.store.tally import CommitTally
from securechat.server.store.interface import (
    DELIVERY, NO_MAILBOX, RECEIPT_KINDS, Duplicate, IMailboxStore, LetterRecord, LetterSummary,
    LoginState, MailboxLimits, MailboxUsage, NewLetter, NoSuchLetter, OneTimePrekeyRecord,
    PrekeyBundle, SentLetterStatus, SignedPrekeyRecord, StoreError, StoreOutcome, Stored)

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
          " ON CONFLICT (recipient) DO UPDATE SET letters = letters + excluded.letters,"
          " bytes = bytes + excluded.bytes")


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


def store_letters_txn(txn: Any, letters: Sequence[NewLetter], now: int,
                      limits: MailboxLimits) -> list[StoreOutcome]:
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
    # (The bound method once, and the cursor sqlite3's execute returns for
    # rowcount and lastrowid: adbapi's Transaction finds every attribute
    # through a Python-level __getattr__.)
    execute = txn.execute
    # The bodies, inserted together at the end (nothing reads them before).
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
        cursor = execute("INSERT INTO letters (sender, letter_id, recipient, size, stored_at,"
                         " expires_at) VALUES (?, ?, ?, ?, ?, ?)"
                         " ON CONFLICT (sender, letter_id) DO NOTHING",
                         (new.sender, new.letter_id, new.recipient, len(new.body), now,
                          expires_at))
        if cursor.rowcount != 1:
            first = _earlier(txn, new)
            assert first is not None  # the conflict was with it
            outcomes.append(first)
            continue
        bodies.append((cursor.lastrowid, new.body))
        usage[new.recipient] = (count + 1, size + len(new.body))
        done = added.get(new.recipient, (0, 0))
        added[new.recipient] = (done[0] + 1, done[1] + len(new.body))
        outcomes.append(stored)
    if bodies:
        txn.executemany("INSERT INTO letter_bodies (letter, body) VALUES (?, ?)", bodies)
    _count_all(txn, [(recipient, count, size) for recipient, (count, size) in added.items()])
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
        _count(txn, recipient, -count, -size)
    txn.execute("DELETE FROM mailbox_usage WHERE letters = 0")
    # Bodies go with their rows (ON DELETE CASCADE).
    txn.execute("DELETE FROM letters WHERE expires_at <= ?", (now,))
    purged = int(txn.rowcount)
    if grace is not None:
        txn.execute("DELETE FROM signed_prekeys WHERE replaced_at IS NOT NULL"
                    " AND replaced_at + ? <= ?", (grace, now))
    return purged


@implementer(IMailboxStore)
class SQLiteMailboxStore:
    """
    L{IMailboxStore} on a L{Database}; C{clock} gives the time and
    schedules the group commit.

    B{Logins without a transaction.}  C{_holders} names every user the
    store may hold a letter or a prekey for: read from the file when the
    store is opened (synchronously, before anything is served), and a name
    is added when a letter to it or a prekey upload of it is I{asked for},
    before its transaction runs (never removed: a name too many costs one
    read at login, a name missing would lose a NEW_LETTERS).  A login of a
    user not named there is answered L{NO_MAILBOX} at once.  A letter
    stored while its recipient logs in is either asked for before the
    login's check (the check reads) or after it (the relay, which has
    registered the session before the check, sends LETTER_ARRIVED once it
    is committed).  This process is the file's only writer of letters and
    prekeys (the operator's tool only reads and purges).
    """

    log = Logger()

    def __init__(self, db: Database, clock: IReactorTime,
                 limits: MailboxLimits = MailboxLimits()) -> None:
        self.db = db
        self.clock = clock
        self.limits = limits
        #: Calls waiting for the next group commit: their letters and Deferreds.
        self._pending: list[tuple[list[NewLetter], Deferred[list[StoreOutcome]]]] = []
        self._flush_call: IDelayedCall | None = None
        self._in_flight = False
        self._idle_waiters: list[Deferred[None]] = []
        self._closed = False
        self._pool_closed = False
        self._close_waiters: list[Deferred[None]] = []
        #: Letters stored, logged once a minute (not once per commit).
        self._tally = CommitTally(clock, self._stored_lately)
        #: C{store-letters} transactions committed since start (the group
        #: commits: C{securechat_letter_commits} on /metrics).
        self.letter_commits = 0
        self._holders = self._read_holders()

    def _stored_lately(self, letters: int, commits: int, seconds: float) -> None:
        self.log.info("mailbox: {count} letters stored in {commits} in the last {seconds:.0f} s",
                      count=letters, commits=f"{commits} commit{'' if commits == 1 else 's'}",
                      seconds=seconds)

    def _read_holders(self) -> set[str]:
        try:
            conn = self.db.engine.connect(self.db.path)
            try:
                return run_now(conn, holders_txn)
            finally:
                conn.close()
        except (sqlite3.Error, OSError) as e:
            self.db.close()
            raise UnusableDatabase(
                f"{self.db.path} is not a usable mailbox database ({e})") from None

    def _now(self) -> int:
        return int(self.clock.seconds())

    def _run(self, description: str, f: Any, *args: Any) -> Deferred[Any]:
        if self._closed:
            return fail(StoreError("the mailbox store is closed"))
        return self.db.runInteraction(description, f, *args)

    # Prekeys

    def upload_prekeys(self, user: str, signed: SignedPrekeyRecord | None,
                       one_time: Sequence[OneTimePrekeyRecord]) -> Deferred[int]:
        try:
            rules.check_prekey_upload(user, signed, one_time)
        except StoreError as e:
            return fail(e)
        self._holders.add(user)
        return self._run("upload-prekeys", upload_prekeys_txn, user, signed, list(one_time),
                         self._now(), self.limits)

    def claim_bundle(self, user: str) -> Deferred[PrekeyBundle | None]:
        return self._run("claim-bundle", claim_bundle_txn, user)

    def signed_prekeys(self, user: str) -> Deferred[list[SignedPrekeyRecord]]:
        return self._run("signed-prekeys", signed_prekeys_txn, user, self._now(),
                         self.limits.signed_prekey_grace)

    def prekey_count(self, user: str) -> Deferred[int]:
        return self._run("prekey-count", stock_txn, user)

    def login_state(self, user: str) -> Deferred[LoginState]:
        if user not in self._holders and not self._closed:
            return succeed(NO_MAILBOX)
        return self._run("login-state", login_state_txn, user, self._now())

    # Letters: the group commit

    def store_letters(self, letters: Sequence[NewLetter]) -> Deferred[list[StoreOutcome]]:
        if self._closed:
            return fail(StoreError("the mailbox store is closed"))
        self._holders.update(letter.recipient for letter in letters)
        d: Deferred[list[StoreOutcome]] = Deferred()
        self._pending.append((list(letters), d))
        self._schedule()
        return d

    def _schedule(self) -> None:
        if self._pending and self._flush_call is None and not self._in_flight:
            # At the end of this reactor turn, so the whole turn's letters
            # share the transaction.
            self._flush_call = self.clock.callLater(0, self._flush)

    def _flush(self) -> None:
        self._flush_call = None
        batch, self._pending = self._pending, []
        if not batch:
            return
        self._in_flight = True
        letters = [letter for group, _ in batch for letter in group]
        d = self.db.runInteraction("store-letters", store_letters_txn, letters, self._now(),
                                   self.limits)
        d.addBoth(self._committed, batch)

    def _committed(self, result: list[StoreOutcome] | Failure,
                   batch: list[tuple[list[NewLetter], Deferred[list[StoreOutcome]]]]) -> None:
        self._in_flight = False
        # The letters that arrived meanwhile go to the pool thread now, in
        # this callback, not a reactor turn later: their commit runs while
        # this batch is answered (each answer still only after its commit).
        if self._pending and self._flush_call is None:
            self._flush()
        if isinstance(result, Failure):
            self.log.failure("storing {count} letters failed; none was acknowledged",
                             result, count=sum(len(group) for group, _ in batch))
        else:
            self.letter_commits += 1
            stored = sum(1 for o in result if type(o) is Stored)
            if stored:
                # Counted, and logged once a minute (refusals are logged
                # one by one by the mailbox).
                self._tally.add(stored)
        start = 0
        for group, d in batch:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result[start:start + len(group)])
            start += len(group)
        self._schedule()
        if not self._in_flight and self._flush_call is None:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    # Letters: the rest

    def list_letters(self, recipient: str, new_only: bool) -> Deferred[list[LetterSummary]]:
        return self._run("list-letters", list_letters_txn, recipient, new_only, self._now())

    def fetch_letter(self, recipient: str, sender: str, letter_id: bytes) -> Deferred[LetterRecord]:
        return self._run("fetch-letter", fetch_letter_txn, recipient, sender, letter_id,
                         self._now())

    def mark(self, recipient: str, sender: str, letter_id: bytes, kind: int,
             receipt: bytes | None) -> Deferred[int]:
        if kind not in RECEIPT_KINDS:
            return fail(StoreError(f"unknown receipt kind {kind}"))
        return self._run("mark-letter", mark_txn, recipient, sender, letter_id, kind, receipt,
                         self._now())

    def delete_letter(self, recipient: str, sender: str, letter_id: bytes) -> Deferred[bool]:
        return self._run("delete-letter", delete_letter_txn, recipient, sender, letter_id,
                         self._now())

    def sent_status(self, sender: str, letter_ids: Sequence[bytes] | None
                    ) -> Deferred[list[SentLetterStatus]]:
        return self._run("sent-status", sent_status_txn, sender,
                         None if letter_ids is None else list(letter_ids), self._now())

    def usage(self, user: str | None) -> Deferred[list[MailboxUsage]]:
        return self._run("mailbox-usage", usage_txn, user, self._now())

    def expire(self, now: int) -> Deferred[int]:
        return self._run("expire-letters", expire_txn, now, self.limits.signed_prekey_grace)

    def drop_prekeys(self, user: str, current: SignedPrekeyRecord | None = None
                     ) -> Deferred[bool]:
        return self._run("drop-prekeys", drop_prekeys_txn, user, current)

    def close(self) -> Deferred[None]:
        """
        Commit what is pending (its callers are answered), then close the
        pool; later calls fail with L{StoreError}.  Every call's Deferred
        fires once the pool is closed.
        """
        d: Deferred[None] = Deferred()
        if self._pool_closed:
            d.callback(None)
            return d
        self._close_waiters.append(d)
        if not self._closed:
            self._closed = True
            if self._flush_call is not None:
                self._flush_call.cancel()
                self._flush()
            idle: Deferred[None] = Deferred()
            idle.addCallback(self._close_pool)
            if self._in_flight:
                self._idle_waiters.append(idle)
            else:
                idle.callback(None)
        return d

    def _close_pool(self, _: None) -> None:
        self._tally.flush()
        self.db.close()
        self._pool_closed = True
        waiters, self._close_waiters = self._close_waiters, []
        for waiter in waiters:
            waiter.callback(None)
