# -*- test-case-name: tests.test_store.SQLiteStoreTests,tests.test_store_sqlite,tests.test_store_postgres -*-
"""
The store's prekey and login transactions, shared by both engines
(L{securechat.server.store.sqlstore} runs them; the operator's tool may
too): plain functions C{f(txn, ...)} on any DB-API cursor that read no
clock (the time is an argument), in the SQL both engines run
(L{securechat.server.store.lettersql} says what that excludes).
"""

from __future__ import annotations

from typing import Any, Sequence

from securechat.server.store import rules

from securechat.server.store.interface import (
    LoginState, MailboxLimits, OneTimePrekeyRecord, PrekeyBundle, SignedPrekeyRecord)

_SIGNED = "SELECT user, prekey_id, public, signature, created_at FROM signed_prekeys "


def _signed(row: Any) -> SignedPrekeyRecord:
    return SignedPrekeyRecord(row[0], row[1], bytes(row[2]), bytes(row[3]), row[4])


def _current_signed(txn: Any, user: str) -> SignedPrekeyRecord | None:
    txn.execute(_SIGNED + "WHERE user = ? AND replaced_at IS NULL", (user,))
    row = txn.fetchone()
    return None if row is None else _signed(row)


def stock_txn(txn: Any, user: str) -> int:
    txn.execute("SELECT COUNT(*) FROM one_time_prekeys WHERE user = ?", (user,))
    return int(txn.fetchone()[0])


def upload_prekeys_txn(txn: Any, user: str, signed: SignedPrekeyRecord | None,
                       one_time: Sequence[OneTimePrekeyRecord], now: int,
                       limits: MailboxLimits) -> int:
    change = None if signed is None else rules.signed_change(_current_signed(txn, user), signed)
    if signed is not None and change == rules.REPLACE:
        # The id now names the owner's latest key; the previous one stays.
        txn.execute("UPDATE signed_prekeys SET public = ?, signature = ?, created_at = ?"
                    " WHERE user = ? AND replaced_at IS NULL",
                    (signed.public, signed.signature, signed.created_at, user))
    elif signed is not None and change == rules.ROTATE:
        # The previous one goes, the current one becomes the previous one.
        txn.execute("DELETE FROM signed_prekeys WHERE user = ? AND replaced_at IS NOT NULL",
                    (user,))
        txn.execute("UPDATE signed_prekeys SET replaced_at = ? WHERE user = ?", (now, user))
        txn.execute("DELETE FROM signed_prekeys WHERE user = ? AND prekey_id = ?",
                    (user, signed.prekey_id))
        txn.execute("INSERT INTO signed_prekeys (user, prekey_id, public, signature, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (user, signed.prekey_id, signed.public, signed.signature, signed.created_at))
    for record in one_time:
        # The owner's latest upload of an id is the key it holds.
        txn.execute("INSERT INTO one_time_prekeys (user, prekey_id, public) VALUES (?, ?, ?)"
                    " ON CONFLICT (user, prekey_id) DO UPDATE SET public = excluded.public",
                    (user, record.prekey_id, record.public))
    stock = stock_txn(txn, user)
    # Raising rolls the whole upload back.
    rules.check_stock(stock, limits)
    return stock


def claim_bundle_txn(txn: Any, user: str) -> PrekeyBundle | None:
    signed = _current_signed(txn, user)
    if signed is None:
        return None
    txn.execute("SELECT prekey_id, public FROM one_time_prekeys WHERE user = ?"
                " ORDER BY prekey_id LIMIT 1", (user,))
    row = txn.fetchone()
    one_time = None
    if row is not None:
        one_time = OneTimePrekeyRecord(user, row[0], bytes(row[1]))
        txn.execute("DELETE FROM one_time_prekeys WHERE user = ? AND prekey_id = ?",
                    (user, row[0]))
    return PrekeyBundle(user, signed, one_time, stock_txn(txn, user))


def signed_prekeys_txn(txn: Any, user: str, now: int, grace: int) -> list[SignedPrekeyRecord]:
    txn.execute(_SIGNED + "WHERE user = ? AND (replaced_at IS NULL OR replaced_at + ? > ?)"
                " ORDER BY replaced_at IS NOT NULL", (user, grace, now))
    return [_signed(row) for row in txn.fetchall()]


def login_state_txn(txn: Any, user: str, now: int) -> LoginState:
    txn.execute("SELECT COUNT(*) FROM letters WHERE recipient = ? AND deleted = 0"
                " AND expires_at > ? AND fetched = 0", (user, now))
    new = int(txn.fetchone()[0])
    return LoginState(new, _current_signed(txn, user), stock_txn(txn, user))


def holders_txn(txn: Any) -> set[str]:
    """
    Every user the store may hold something for at login: a letter not
    deleted (expired ones not yet purged too), a signed or one-time prekey.
    """
    txn.execute("SELECT recipient FROM letters WHERE deleted = 0"
                " UNION SELECT user FROM signed_prekeys UNION SELECT user FROM one_time_prekeys")
    return {row[0] for row in txn.fetchall()}


def drop_prekeys_txn(txn: Any, user: str, current: SignedPrekeyRecord | None) -> bool:
    if current is not None and _current_signed(txn, user) != current:
        return False
    txn.execute("DELETE FROM signed_prekeys WHERE user = ?", (user,))
    dropped = txn.rowcount > 0
    txn.execute("DELETE FROM one_time_prekeys WHERE user = ?", (user,))
    return dropped or txn.rowcount > 0
