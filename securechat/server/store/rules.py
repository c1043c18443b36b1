# -*- test-case-name: tests.test_store -*-
"""
The store's rules that do not depend on where things are kept: checking a
prekey upload, and deciding whether a letter fits its recipient's quota.
Both implementations call these, so they cannot drift apart.
"""

from __future__ import annotations

from typing import Sequence

from securechat.server.store.interface import (
    MAILBOX_FULL_BYTES, MAILBOX_FULL_LETTERS, PREKEY_SIZE, TOO_LARGE, MailboxLimits, NewLetter,
    OneTimePrekeyRecord, PrekeyRefused, Refused, SignedPrekeyRecord, StockFull)

MAX_PREKEY_ID = 2 ** 32 - 1
MAX_SIGNATURE_SIZE = 1024


def check_prekey_upload(user: str, signed: SignedPrekeyRecord | None,
                        one_time: Sequence[OneTimePrekeyRecord]) -> None:
    """
    Refuse a malformed upload before anything is stored.

    @raise PrekeyRefused: naming what is wrong.
    """
    records: list[SignedPrekeyRecord | OneTimePrekeyRecord] = list(one_time)
    if signed is not None:
        records.append(signed)
        if not 0 < len(signed.signature) <= MAX_SIGNATURE_SIZE:
            raise PrekeyRefused(f"signed prekey {signed.prekey_id}: a signature of "
                                f"{len(signed.signature)} bytes")
    for record in records:
        if record.user != user:
            raise PrekeyRefused(f"prekey {record.prekey_id} is for {record.user!r}, not {user!r}")
        if not 0 <= record.prekey_id <= MAX_PREKEY_ID:
            raise PrekeyRefused(f"prekey id {record.prekey_id} is not a 32-bit unsigned number")
        if len(record.public) != PREKEY_SIZE:
            raise PrekeyRefused(f"prekey {record.prekey_id}: a public key of {len(record.public)} "
                                f"bytes, not {PREKEY_SIZE}")
    if len({r.prekey_id for r in one_time}) != len(one_time):
        raise PrekeyRefused("the same one-time prekey id twice in one upload")


#: What an uploaded signed prekey does to the current one (L{signed_change}).
SAME, ROTATE, REPLACE = "same", "rotate", "replace"


def signed_change(current: SignedPrekeyRecord | None, new: SignedPrekeyRecord) -> str:
    """
    What uploading C{new} does (docs/protocol.rst 14.7): L{SAME}, the same
    upload again, changes nothing; L{ROTATE}, another id, makes C{new}
    current and C{current} the previous one; L{REPLACE}, the current id
    with other contents, puts C{new} in C{current}'s place (the id names
    the owner's latest key; the old one is not kept, the previous one
    stays).
    """
    if current is None or current.prekey_id != new.prekey_id:
        return ROTATE
    if (current.public, current.signature, current.created_at) != (
            new.public, new.signature, new.created_at):
        return REPLACE
    return SAME


def check_stock(in_stock: int, limits: MailboxLimits) -> None:
    """
    @raise StockFull: the stock would exceed its limit.
    """
    if in_stock > limits.max_one_time_prekeys:
        raise StockFull(f"more than {limits.max_one_time_prekeys} one-time prekeys in stock")


def refusal(letter: NewLetter, letters: int, size: int, limits: MailboxLimits) -> Refused | None:
    """
    Why C{letter} cannot join a mailbox holding C{letters} letters of
    C{size} bytes in all, or C{None} if it fits.
    """
    if len(letter.body) > limits.max_letter_size:
        return Refused(TOO_LARGE)
    if letters + 1 > limits.max_letters:
        return Refused(MAILBOX_FULL_LETTERS)
    if size + len(letter.body) > limits.max_bytes:
        return Refused(MAILBOX_FULL_BYTES)
    return None
