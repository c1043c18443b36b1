# -*- test-case-name: tests.test_store.MemoryStoreTests -*-
"""
An in-memory L{IMailboxStore} for protocol tests: the same rules as the
SQLite store (quotas, idempotence, expiry, prekey claims), nothing on disk.
Every Deferred it returns has already fired: "committed" is immediate.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from securechat.server.store import rules
from securechat.server.store.interface import (
    DELIVERY, RECEIPT_KINDS, Duplicate, IMailboxStore, LetterRecord, LetterSummary, LoginState,
    MailboxLimits, MailboxUsage, NewLetter, NoSuchLetter, OneTimePrekeyRecord, PrekeyBundle,
    SentLetterStatus, SignedPrekeyRecord, StoreError, StoreOutcome, Stored)


@dataclass
class _Letter:
    record: LetterRecord
    deleted: bool = False
    fetched: bool = False
    delivered_at: int | None = None
    read_at: int | None = None
    delivery_receipt: bytes | None = None
    read_receipt: bytes | None = None


@dataclass
class _Prekeys:
    current: SignedPrekeyRecord | None = None
    previous: SignedPrekeyRecord | None = None
    replaced_at: int = 0
    one_time: dict[int, OneTimePrekeyRecord] | None = None


@implementer(IMailboxStore)
class MemoryMailboxStore:
    """
    Everything in dictionaries, keyed as the SQLite tables are.
    """

    def __init__(self, clock: IReactorTime, limits: MailboxLimits = MailboxLimits()) -> None:
        self.clock = clock
        self.limits = limits
        self._letters: dict[tuple[str, bytes], _Letter] = {}
        self._prekeys: dict[str, _Prekeys] = {}

    def _now(self) -> int:
        return int(self.clock.seconds())

    def _live(self, letter: _Letter) -> bool:
        return letter.record.expires_at > self._now()

    # Prekeys

    def upload_prekeys(self, user: str, signed: SignedPrekeyRecord | None,
                       one_time: Sequence[OneTimePrekeyRecord]) -> Deferred[int]:
        try:
            rules.check_prekey_upload(user, signed, one_time)
            keys = self._prekeys.setdefault(user, _Prekeys(one_time={}))
            assert keys.one_time is not None
            stock = dict(keys.one_time)
            for record in one_time:
                # The owner's latest upload of an id is the key it holds.
                stock[record.prekey_id] = record
            rules.check_stock(len(stock), self.limits)
            change = None if signed is None else rules.signed_change(keys.current, signed)
            if change == rules.ROTATE:
                if keys.current is not None:
                    keys.previous, keys.replaced_at = keys.current, self._now()
                keys.current = signed
            elif change == rules.REPLACE:
                keys.current = signed
            keys.one_time = stock
        except StoreError as e:
            return fail(e)
        return succeed(len(stock))

    def claim_bundle(self, user: str) -> Deferred[PrekeyBundle | None]:
        keys = self._prekeys.get(user)
        if keys is None or keys.current is None:
            return succeed(None)
        assert keys.one_time is not None
        one_time = keys.one_time.pop(min(keys.one_time)) if keys.one_time else None
        return succeed(PrekeyBundle(user, keys.current, one_time, len(keys.one_time)))

    def signed_prekeys(self, user: str) -> Deferred[list[SignedPrekeyRecord]]:
        keys = self._prekeys.get(user)
        if keys is None or keys.current is None:
            return succeed([])
        found = [keys.current]
        if (keys.previous is not None
                and keys.replaced_at + self.limits.signed_prekey_grace > self._now()):
            found.append(keys.previous)
        return succeed(found)

    def prekey_count(self, user: str) -> Deferred[int]:
        keys = self._prekeys.get(user)
        return succeed(len(keys.one_time) if keys and keys.one_time else 0)

    def login_state(self, user: str) -> Deferred[LoginState]:
        keys = self._prekeys.get(user)
        new = sum(1 for letter in self._letters.values()
                  if letter.record.recipient == user and not letter.deleted and not letter.fetched
                  and self._live(letter))
        return succeed(LoginState(new, keys.current if keys else None,
                                  len(keys.one_time) if keys and keys.one_time else 0))

    # Letters

    def _usage(self, recipient: str) -> tuple[int, int]:
        held = [letter.record.size for letter in self._letters.values()
                if letter.record.recipient == recipient and not letter.deleted
                and self._live(letter)]
        return len(held), sum(held)

    def store_letters(self, letters: Sequence[NewLetter]) -> Deferred[list[StoreOutcome]]:
        now = self._now()
        outcomes: list[StoreOutcome] = []
        for new in letters:
            old = self._letters.get((new.sender, new.letter_id))
            if old is not None:
                outcomes.append(Duplicate(old.record.stored_at, old.record.expires_at,
                                          old.record.recipient))
                continue
            refused = rules.refusal(new, *self._usage(new.recipient), self.limits)
            if refused is not None:
                outcomes.append(refused)
                continue
            record = LetterRecord(new.sender, new.recipient, new.letter_id, new.body,
                                  len(new.body), now, now + self.limits.expiry_seconds)
            self._letters[(new.sender, new.letter_id)] = _Letter(record)
            outcomes.append(Stored(record.stored_at, record.expires_at))
        return succeed(outcomes)

    def list_letters(self, recipient: str, new_only: bool) -> Deferred[list[LetterSummary]]:
        found = [letter for letter in self._letters.values()
                 if letter.record.recipient == recipient and not letter.deleted
                 and self._live(letter) and not (new_only and letter.fetched)]
        # Insertion order is storage order, as the SQLite rowid is.
        return succeed([
            LetterSummary(letter.record.sender, letter.record.letter_id, letter.record.stored_at,
                          letter.record.size, letter.fetched, letter.read_at is not None)
            for letter in found])

    def _find(self, recipient: str, sender: str, letter_id: bytes, body: bool) -> _Letter:
        letter = self._letters.get((sender, letter_id))
        if (letter is None or letter.record.recipient != recipient or not self._live(letter)
                or (body and letter.deleted)):
            raise NoSuchLetter(f"no letter {letter_id.hex()} from {sender}")
        return letter

    def fetch_letter(self, recipient: str, sender: str, letter_id: bytes) -> Deferred[LetterRecord]:
        try:
            return succeed(self._find(recipient, sender, letter_id, body=True).record)
        except StoreError as e:
            return fail(e)

    def mark(self, recipient: str, sender: str, letter_id: bytes, kind: int,
             receipt: bytes | None) -> Deferred[int]:
        try:
            if kind not in RECEIPT_KINDS:
                raise StoreError(f"unknown receipt kind {kind}")
            letter = self._find(recipient, sender, letter_id, body=False)
        except StoreError as e:
            return fail(e)
        now = self._now()
        letter.fetched = True
        if receipt is None:
            # A fetch (or a read with read receipts off): no receipt, no time.
            return succeed(now)
        if kind == DELIVERY:
            if letter.delivered_at is None:
                letter.delivered_at, letter.delivery_receipt = now, receipt
            return succeed(letter.delivered_at)
        if letter.read_at is None:
            letter.read_at, letter.read_receipt = now, receipt
        return succeed(letter.read_at)

    def delete_letter(self, recipient: str, sender: str, letter_id: bytes) -> Deferred[bool]:
        try:
            letter = self._find(recipient, sender, letter_id, body=False)
        except StoreError as e:
            return fail(e)
        was = not letter.deleted
        letter.deleted = True
        letter.record = replace(letter.record, body=b"")
        return succeed(was)

    def sent_status(self, sender: str, letter_ids: Sequence[bytes] | None
                    ) -> Deferred[list[SentLetterStatus]]:
        wanted = None if letter_ids is None else set(letter_ids)
        return succeed([
            SentLetterStatus(letter.record.recipient, letter.record.letter_id,
                             letter.record.stored_at, letter.record.expires_at,
                             letter.delivered_at, letter.read_at, letter.delivery_receipt,
                             letter.read_receipt)
            for (who, letter_id), letter in self._letters.items()
            if who == sender and self._live(letter) and (wanted is None or letter_id in wanted)])

    def usage(self, user: str | None) -> Deferred[list[MailboxUsage]]:
        names = sorted({letter.record.recipient for letter in self._letters.values()}
                       if user is None else {user})
        found = [MailboxUsage(name, *self._usage(name)) for name in names]
        return succeed([u for u in found if user is not None or u.letters])

    def expire(self, now: int) -> Deferred[int]:
        gone = [key for key, letter in self._letters.items() if letter.record.expires_at <= now]
        for key in gone:
            del self._letters[key]
        for keys in self._prekeys.values():
            if (keys.previous is not None
                    and keys.replaced_at + self.limits.signed_prekey_grace <= now):
                keys.previous = None
        return succeed(len(gone))

    def drop_prekeys(self, user: str, current: SignedPrekeyRecord | None = None
                     ) -> Deferred[bool]:
        keys = self._prekeys.get(user)
        if keys is None or (current is not None and keys.current != current):
            return succeed(False)
        del self._prekeys[user]
        return succeed(True)

    def close(self) -> Deferred[None]:
        return succeed(None)
