# -*- test-case-name: tests.test_store -*-
"""
The mailbox store's interface and its values (issue 14; the shared
vocabulary is in docs/protocol.rst, "Mailbox").

The store keeps, per user, prekeys (the current signed prekey, the previous
one for a grace period, and a stock of one-time prekeys) and letters (sealed,
opaque bodies) with their status and receipts.  Its rules, which every
implementation keeps and C{tests.test_store.StoreTestsMixin} checks:

  - B{Durable means acknowledged after commit.}  A letter's outcome is
    delivered (the Deferred fires) only once the transaction holding it has
    committed; letters arriving together share one transaction (group
    commit).
  - B{Idempotent by (sender, letter id).}  Storing a letter whose (sender,
    id) is already known stores nothing and answers L{Duplicate} with the
    original stored time, also after a restart and after the recipient
    deleted the letter (the status row outlives the body), until expiry.
  - B{Quotas per recipient}, in letters and in bytes, and a largest letter:
    a letter over one is L{Refused} with a reason from L{REFUSAL_REASONS};
    nothing is stored and other letters of the same batch are unaffected.
  - B{Expiry.}  Every letter expires C{expiry_seconds} after it was stored;
    an expired letter is no longer listed, fetched or counted, and
    C{expire(now)} deletes it with its status and receipts.
  - B{The sender's status survives deletion by the recipient}: the body goes,
    the row with stored/delivered/read times and receipts stays until expiry.
  - B{Prekeys.}  Claiming a bundle hands out the current signed prekey and
    atomically removes one one-time prekey (the oldest id first), or none
    when the stock is empty (the bundle says so), with how many remain.  The
    previous signed prekey is kept C{signed_prekey_grace} seconds after it
    was replaced.  A one-time prekey uploaded with an id already in stock
    replaces the one held (the owner's latest upload is the key it holds),
    and so does a signed prekey with the current one's id and other
    contents (it takes the current one's place; the previous one stays).  C{drop_prekeys} forgets all of a user's prekeys (its key
    changed: they were signed, or uploaded, under the old one).
  - B{Fetched is not delivered.}  A letter is I{fetched} once the
    recipient took it (C{mark} without a receipt); C{delivered_at} and
    C{read_at} are the times the first delivery and read I{receipts} were
    stored, C{None} while there is none (docs/protocol.rst 14.6).

Times are whole Unix seconds from the store's clock (the relay's).  Names
are checked by the relay (L{securechat.wire.names}); the store takes them
as given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

#: A letter id: 16 random bytes chosen by the sender.
LETTER_ID_SIZE = 16
#: An X25519 public key.
PREKEY_SIZE = 32

#: Receipt kinds (docs/protocol.rst, "Mailbox").
DELIVERY = 1
READ = 2
RECEIPT_KINDS = (DELIVERY, READ)

#: Why a letter was refused by the store.
MAILBOX_FULL_LETTERS = "mailbox-full-letters"
MAILBOX_FULL_BYTES = "mailbox-full-bytes"
TOO_LARGE = "too-large"
REFUSAL_REASONS = (MAILBOX_FULL_LETTERS, MAILBOX_FULL_BYTES, TOO_LARGE)

DAY = 24 * 60 * 60


class StoreError(Exception):
    """
    A request the store refuses; the message is one line for a log or a user.
    """


class StoreUnavailable(StoreError):
    """
    The database cannot be reached now (PostgreSQL stopped, restarting, or
    the network to it down): nothing of the request was done, or, if the
    connection went during the commit, it may have been (a resend of a
    letter is then a duplicate, answered as the first time).  The relay
    refuses with TRY_AGAIN (docs/protocol.rst 14.7); the client may try
    again later.  The message is one line.
    """


class NoSuchLetter(StoreError):
    """
    No letter with that (sender, id) for that recipient: it never existed,
    expired, is addressed to someone else, or (for fetching) was deleted.
    All are answered the same, so a user cannot probe other mailboxes.
    """


class PrekeyRefused(StoreError):
    """
    A prekey upload was refused (a malformed key, or more one-time prekeys
    than the stock holds); nothing of that upload was stored.
    """


class StockFull(PrekeyRefused):
    """
    A prekey upload that would leave more one-time prekeys in stock than
    L{MailboxLimits.max_one_time_prekeys} (the relay answers TOO_LARGE).
    """


@dataclass(frozen=True, slots=True)
class MailboxLimits:
    """
    The store's quotas and times, all per recipient.
    """

    #: Letters one recipient's mailbox may hold ...
    max_letters: int = 1000
    #: ... and their total size in bytes.
    max_bytes: int = 32 * 1024 * 1024
    #: The largest letter (a sealed letter must also fit in one frame).
    max_letter_size: int = 60 * 1024
    #: Seconds from storing a letter to its expiry.
    expiry_seconds: int = 30 * DAY
    #: Seconds the previous signed prekey is kept after it was replaced.
    signed_prekey_grace: int = 7 * DAY
    #: One-time prekeys a user may have in stock.
    max_one_time_prekeys: int = 200


@dataclass(frozen=True, slots=True)
class SignedPrekeyRecord:
    """
    A signed prekey as uploaded: opaque to the store but for its id.
    """

    user: str
    prekey_id: int
    public: bytes
    signature: bytes
    created_at: int


@dataclass(frozen=True, slots=True)
class OneTimePrekeyRecord:
    """
    A one-time prekey: handed out once, then deleted.
    """

    user: str
    prekey_id: int
    public: bytes


@dataclass(frozen=True, slots=True)
class PrekeyBundle:
    """
    What a sender gets to seal a letter to C{user}: the current signed
    prekey and one one-time prekey (C{None} when the stock was empty), and
    how many one-time prekeys remain after this claim.
    """

    user: str
    signed: SignedPrekeyRecord
    one_time: OneTimePrekeyRecord | None
    remaining: int


@dataclass(frozen=True, slots=True)
class NewLetter:
    """
    A letter to store, as the relay received it.
    """

    sender: str
    recipient: str
    letter_id: bytes
    body: bytes

    def __post_init__(self) -> None:
        if len(self.letter_id) != LETTER_ID_SIZE:
            raise ValueError(f"a letter id is {LETTER_ID_SIZE} bytes, not {len(self.letter_id)}")


@dataclass(frozen=True, slots=True)
class LetterRecord:
    """
    A stored letter, with its sealed body (opaque to the store).
    """

    sender: str
    recipient: str
    letter_id: bytes
    body: bytes
    size: int
    stored_at: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class LetterSummary:
    """
    One line of a recipient's letter list.
    """

    sender: str
    letter_id: bytes
    stored_at: int
    size: int
    #: The recipient fetched it (state 1 of 14.6).
    delivered: bool
    #: A read receipt came (state 2).
    read: bool


@dataclass(frozen=True, slots=True)
class SentLetterStatus:
    """
    What the sender may know of a letter it sent: when it was stored,
    delivered and read, and the recipient's receipts (opaque signed blobs,
    checked by the sender against the recipient's key).
    """

    recipient: str
    letter_id: bytes
    stored_at: int
    expires_at: int
    delivered_at: int | None
    read_at: int | None
    delivery_receipt: bytes | None
    read_receipt: bytes | None


@dataclass(frozen=True, slots=True)
class Stored:
    """
    The letter is committed.
    """

    stored_at: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class Duplicate:
    """
    A letter with this (sender, id) was stored before, at C{stored_at}, for
    C{recipient} (whatever the resend names); nothing new was stored (not
    an error: the same answer as the first time).
    """

    stored_at: int
    expires_at: int
    recipient: str


@dataclass(frozen=True, slots=True)
class Refused:
    """
    The letter was not stored, for C{reason} (one of L{REFUSAL_REASONS}).
    """

    reason: str


StoreOutcome = Union[Stored, Duplicate, Refused]


@dataclass(frozen=True, slots=True)
class LoginState:
    """
    What the relay needs to know of a user's mailbox at its login (14.7),
    read together: how many of its letters were never fetched (unexpired,
    not deleted), its current signed prekey (C{None}: it has none) and how
    many one-time prekeys it has in stock.
    """

    new_letters: int
    signed: SignedPrekeyRecord | None
    one_time: int


#: The login state of a user with no letters and no prekeys.
NO_MAILBOX = LoginState(0, None, 0)


@dataclass(frozen=True, slots=True)
class MailboxUsage:
    """
    How much of a recipient's quota its unexpired, undeleted letters use.
    """

    user: str
    letters: int
    bytes: int


class IMailboxStore(Interface):
    """
    Prekeys, letters, status and receipts, durably.  Every method returns a
    Deferred; a refusal is an errback with a L{StoreError}.
    """

    limits = Attribute("The L{MailboxLimits} this store enforces.")

    def upload_prekeys(user: str, signed: SignedPrekeyRecord | None,
                       one_time: Sequence[OneTimePrekeyRecord]) -> Deferred[int]:
        """
        Make C{signed} the current signed prekey (the one it replaces becomes
        the previous one, kept for the grace period; re-uploading the
        current one changes nothing) and add C{one_time} to the stock (one
        with an id already in stock replaces it).  Fires with the stock's size, or
        fails with L{PrekeyRefused} storing nothing.
        """

    def claim_bundle(user: str) -> Deferred[PrekeyBundle | None]:
        """
        The current signed prekey and one one-time prekey, removed from the
        stock in the same transaction; C{None} when C{user} has no signed
        prekey.
        """

    def signed_prekeys(user: str) -> Deferred[list[SignedPrekeyRecord]]:
        """
        The current signed prekey and, within its grace period, the
        previous one (current first); empty when there is none.
        """

    def prekey_count(user: str) -> Deferred[int]:
        """
        How many one-time prekeys C{user} has in stock.
        """

    def login_state(user: str) -> Deferred[LoginState]:
        """
        C{user}'s L{LoginState}, in one transaction.  A store may answer
        L{NO_MAILBOX} without one, from memory, for a user it knows has no
        letter and no prekey: one for which no letter was stored and no
        prekey uploaded (C{store_letters} naming it as recipient,
        C{upload_prekeys}), since the store was opened, and that held
        neither when it was opened.  (A store shared by several processes
        cannot know that, and reads.)
        """

    def store_letters(letters: Sequence[NewLetter]) -> Deferred[list[StoreOutcome]]:
        """
        Store a batch; fires, once committed, with one outcome per letter in
        order.
        """

    def list_letters(recipient: str, new_only: bool) -> Deferred[list[LetterSummary]]:
        """
        C{recipient}'s letters, oldest first: all of them, or only those
        never fetched.
        """

    def fetch_letter(recipient: str, sender: str, letter_id: bytes) -> Deferred[LetterRecord]:
        """
        One letter with its body, or L{NoSuchLetter}.
        """

    def mark(recipient: str, sender: str, letter_id: bytes, kind: int,
             receipt: bytes | None) -> Deferred[int]:
        """
        Record that C{recipient} fetched a letter and, when C{receipt} is
        given, its signed receipt of C{kind} (L{DELIVERY} or L{READ}): the
        first receipt of each kind is kept with the store's time, which
        is the sender's C{delivered_at} or C{read_at}.  Fires with that
        time (the current time for a mark without a receipt).
        L{NoSuchLetter} if the status row is gone.
        """

    def delete_letter(recipient: str, sender: str, letter_id: bytes) -> Deferred[bool]:
        """
        Delete the letter's body; the sender's status stays.  Fires with
        C{False} if it was already deleted; L{NoSuchLetter} if unknown.
        """

    def sent_status(sender: str, letter_ids: Sequence[bytes] | None
                    ) -> Deferred[list[SentLetterStatus]]:
        """
        The status of C{sender}'s unexpired letters (all, or those ids),
        oldest first.
        """

    def usage(user: str | None) -> Deferred[list[MailboxUsage]]:
        """
        Mailbox usage of C{user}, or of every user with letters (by name).
        """

    def drop_prekeys(user: str, current: SignedPrekeyRecord | None = None) -> Deferred[bool]:
        """
        Forget every prekey of C{user} (signed, previous and one-time); when
        C{current} is given, only if it is still the current signed prekey
        (so a check made before a new upload cannot drop that upload).
        Fires with whether anything was dropped.
        """

    def expire(now: int) -> Deferred[int]:
        """
        Delete every letter (body, status, receipts) that expired at or
        before C{now}, and previous signed prekeys past their grace period;
        fires with the number of letters purged.
        """

    def close() -> Deferred[None]:
        """
        Finish what is in flight and release the storage.
        """
