# -*- test-case-name: tests.test_store.SQLiteStoreTests,tests.test_store_postgres -*-
"""
The mailbox store on a SQL database, either engine: L{SQLMailboxStore}
runs the shared transactions (L{securechat.server.store.lettersql},
L{securechat.server.store.prekeysql}) with C{runInteraction}.
L{securechat.server.store.sqlite.SQLiteMailboxStore} adds what only a
single writer may do.

B{Group commit.}  C{store_letters} does not start a transaction per call:
calls made in the same reactor turn, and all calls made while a commit is
in flight, are stored by ONE C{store-letters} transaction, and each call's
Deferred fires only after that transaction has committed (on disk:
SQLite's C{synchronous=FULL}, PostgreSQL's C{fsync} and
C{synchronous_commit}).  If the transaction fails, every call in it fails
and nothing of it is stored; the clients resend with the same ids.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from securechat.server.store import rules
from securechat.server.store.lettersql import (
    delete_letter_txn, expire_txn, fetch_letter_txn, list_letters_txn, mark_txn, sent_status_txn,
    store_letters_txn, usage_txn)
from securechat.server.store.prekeysql import (
    claim_bundle_txn, drop_prekeys_txn, login_state_txn, signed_prekeys_txn, stock_txn,
    upload_prekeys_txn)
from securechat.server.store.tally import CommitTally
from securechat.server.store.interface import (
    NO_MAILBOX, RECEIPT_KINDS, IMailboxStore, LetterRecord, LetterSummary, LoginState,
    MailboxLimits, MailboxUsage, NewLetter, OneTimePrekeyRecord, PrekeyBundle, SentLetterStatus,
    SignedPrekeyRecord, StoreError, StoreOutcome, StoreUnavailable, Stored)

T = TypeVar("T")


class SQLDatabase(Protocol):
    """What the stores need of a database: SQLite's or PostgreSQL's."""

    #: Whether other relay processes may write it at the same time
    #: (PostgreSQL).  Then no answer may come from what this process read
    #: or wrote before: a user's login reads the database, the relay's
    #: group state is read again for each command
    #: (L{securechat.server.groups.Groups}); on SQLite (False) this
    #: process is the only writer and may keep what it knows in memory.
    shared: bool

    def runInteraction(self, description: str, f: Callable[..., T], *args: Any,
                       **kwargs: Any) -> Deferred[T]:
        """Run C{f(txn, *args)} in a transaction; fire once committed."""

    def close(self) -> None:
        """Close the pool."""


@implementer(IMailboxStore)
class SQLMailboxStore:
    """
    L{IMailboxStore} on a database (SQLite's L{Database} or
    L{securechat.server.store.postgres.PostgresDatabase}: anything with
    C{runInteraction} and C{close}); C{clock} gives the time and schedules
    the group commit.

    A refusal because the database cannot be reached now is an errback
    with L{StoreUnavailable} (the PostgreSQL database raises it); the
    group commit then logs no traceback (the database logs one line when
    it goes and one when it is back).

    B{Logins without a transaction} (L{SQLiteMailboxStore} only, the
    single writer of its file): C{_holders}, the users it may hold
    anything for; None here, where every login reads the database.
    """

    log = Logger()

    def __init__(self, db: SQLDatabase, clock: IReactorTime,
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
        #: See above.
        self._holders: set[str] | None = None
        #: Each recipient's letters and bytes as the letter transactions
        #: last counted them, when this process is the database's only
        #: writer (not shared: SQLite); see L{store_letters_txn}.
        self._counts: dict[str, tuple[int, int]] | None = None if db.shared else {}

    def _stored_lately(self, letters: int, commits: int, seconds: float) -> None:
        self.log.info("mailbox: {count} letters stored in {commits} in the last {seconds:.0f} s",
                      count=letters, commits=f"{commits} commit{'' if commits == 1 else 's'}",
                      seconds=seconds)

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
        if self._holders is not None:
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
        if self._holders is not None and user not in self._holders and not self._closed:
            return succeed(NO_MAILBOX)
        return self._run("login-state", login_state_txn, user, self._now())

    # Letters: the group commit

    def store_letters(self, letters: Sequence[NewLetter]) -> Deferred[list[StoreOutcome]]:
        if self._closed:
            return fail(StoreError("the mailbox store is closed"))
        if self._holders is not None:
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
                                   self.limits, self._counts)
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
            if not result.check(StoreUnavailable):
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
