# -*- test-case-name: tests.test_client_letters -*-
"""
The client's side of the mailbox (docs/protocol.rst, section 14): the part
of L{securechat.client.core.ChatClient} that keeps our prekeys on the
relay, seals, posts and resends letters, opens the letters that came for
us, and sends and checks receipts.  What the user should see goes to the
client's L{ChatView}; the durable part is the L{LetterStore}.

Rules it keeps:

  - prekeys: a signed prekey is made (and kept on disk) before its public
    half is uploaded; it is replaced every L{ROTATE_AFTER} seconds, and a
    replaced one is kept for L{GRACE} more (or the relay's letter expiry
    and a day, if this client has seen a longer one), as letters sealed to
    it may still arrive; one-time prekeys are refilled to
    L{ONE_TIME_STOCK} when the relay says the stock is low (PREKEYS_LOW);
  - a recipient's key (from BUNDLE) and a sender's key (from USER_KEY) are
    checked against the pin store exactly as for chats: a new one is
    pinned, a changed one refuses the letter (nothing is sealed, nothing is
    shown) until the user runs C{trust};
  - a bundle whose signed prekey does not verify for the recipient (a relay
    substituted it) refuses the letter: nothing is sent;
  - prekeys, letters and receipts are signed with the user's key through
    one L{SigningQueue}, in order (a key on a token signs in a thread);
    nothing is sent before it is signed, and a signature that fails fails
    that prekey, letter or receipt in one line (the letter is not sent,
    and the user is told so);
  - a sealed letter is kept, with its id, before it is posted; one without
    an answer is posted again, the same bytes under the same id, after
    each login, until the relay answers;
  - a letter is shown as text only when its signature verified (with the
    sender's current key, or a previous one as L{PreviousKeys} allows) and
    it decrypted; otherwise its failure is shown (14.4 codes), never text.  A
    letter whose C{(sender, id)} we opened before is shown again from our
    copy when the relay serves the same bytes, and refused as C{replayed}
    when it serves different ones;
  - a delivery receipt is signed once the letter's signature verified, a
    read receipt once it is shown, unless read receipts are off;
  - a LETTER or USER_KEY the client did not ask for is dropped (nothing
    is opened, answered or pinned on the relay's word alone);
  - receipts for our letters are verified against the recipient's pinned
    key, and shown as verified or with their failure code.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger

from securechat.client.letterstore import PENDING, REFUSED, STORED, LetterStore
from securechat.client.letterview import LetterSummary
from securechat.client.listpages import ListPages
from securechat.client.openletters import OpenLetters
from securechat.client.previouskeys import PreviousKeys
from securechat.client.pins import PinStatus
from securechat.client.prekeyupload import DAY, ONE_TIME_STOCK, ROTATE_AFTER, PrekeyUploads
from securechat.client.sentletters import KeyWaiter, SentLetters
from securechat.client.signqueue import SigningQueue
from securechat.client.view import ChatView
from securechat.client.reasons import reason_name, reason_of
from securechat.crypto import keys
from securechat.crypto.letters import CONTENT_GROUP_KEY, CONTENT_TEXT, MAX_LETTER, LetterError, prepare_letter
from securechat.crypto.prekeys import PrekeyBundle
from securechat.crypto.signer import ExternalKey, SigningError, as_signer, check_signature
from securechat.wire.mailbox import (
    Bundle,
    DeleteLetter,
    FetchBundle,
    FetchLetter,
    GetUserKey,
    Letter,
    LetterArrived,
    LetterDeleted,
    LetterList,
    LetterRefused,
    LetterStored,
    ListLetters,
    ListUsers,
    NewLetters,
    PostLetter,
    PostReceipt,
    PrekeysLow,
    PrekeysStored,
    ReceiptMessage,
    ReceiptStored,
    SentStatus,
    StatusList,
    UploadPrekeys,
    UserKey,
    UserList,
)
from securechat.wire.keyhistory import GetKeyHistory, KeyHistory
from securechat.wire.messages import Message
from securechat.wire.relay import CommandFailed, Reason

if TYPE_CHECKING:
    from securechat.client.core import ChatClient
    from securechat.client.groupsession import GroupSession

__all__ = ["DAY", "GRACE", "ONE_TIME_STOCK", "ROTATE_AFTER", "Mailbox"]

#: A replaced signed prekey's private half is kept this long: the relay's
#: longest expiry (30 days by default) and a day's margin.
GRACE = 31 * DAY
#: What a LETTER_LIST / STATUS_LIST entry costs besides the payload.
_LETTER_OVERHEAD = 69


@dataclass(frozen=True)
class KeyLetter:
    """A group sender key to seal (content type 2), and what to call once it is kept."""

    content: bytes
    kept: Callable[[], None]
    #: Called when it could not be sealed (it stays owed).
    lost: Callable[[], None] = lambda: None


class Mailbox(OpenLetters, PrekeyUploads, ListPages, PreviousKeys, SentLetters):
    """
    One client's letters (see the module docstring).
    """

    log = Logger()

    def __init__(self, client: ChatClient, store: LetterStore) -> None:
        self.client = client
        self.store = store
        #: The user's key (in memory or on a token): prekeys, letters and
        #: receipts are signed with it, one at a time, in order.
        self.signer = as_signer(client.private_key)
        self.signing = SigningQueue(self._sign_later)
        #: Letters waiting for their bundle: (recipient, text or group
        #: key), in order.
        self._bundles: deque[tuple[str, str | KeyLetter]] = deque()
        #: The group layer (L{securechat.client.groupsession}), when the
        #: client has one.
        self.groups: GroupSession | None = None
        #: The ids of the group key letters sealed in this run: their
        #: "stored" and receipts are not shown (the user never wrote them).
        self.key_letters: set[bytes] = set()
        #: Callbacks waiting for a user's registered key (GET_USER_KEY).
        self._key_waiters: dict[str, list[KeyWaiter]] = {}
        #: The last list shown, for /read N.
        self.listed: list[LetterSummary] = []
        #: Letters the user asked to read, one entry per FETCH_LETTER sent: a
        #: LETTER nobody asked for is dropped, never opened or answered.
        self._reading: list[tuple[str, bytes]] = []
        #: For each upload not yet answered: whether it carried one-time prekeys.
        self._uploads = deque()
        #: The list requests not yet answered (ListPages).
        self._asked = {}
        #: Callbacks waiting for a user's previous keys (GET_KEY_HISTORY).
        self._history_waiters = {}
        self._handlers: dict[type, Callable[..., None]] = {
            PrekeysStored: self._prekeys_stored, PrekeysLow: self._prekeys_low,
            Bundle: self._bundle, UserKey: self._user_key, LetterStored: self._letter_stored,
            LetterRefused: self._letter_refused, NewLetters: self._new_letters,
            LetterArrived: self._letter_arrived, LetterList: self._letter_list, Letter: self._letter,
            LetterDeleted: self._letter_deleted, ReceiptStored: self._receipt_stored,
            ReceiptMessage: self._receipt, StatusList: self._status_list, UserList: self._user_list,
            KeyHistory: self._key_history,
        }

    def _sign_later(self, message: bytes) -> Deferred[bytes]:
        """
        Our key's signature of C{message}: at once for a key in memory (as
        before: no thread, no delay), from the token in a thread with a
        timeout otherwise (and checked against its public key before it
        is used).
        """
        key = self.client.private_key
        if not isinstance(key, ExternalKey):
            try:
                return succeed(self.signer.sign_blocking(message))
            except SigningError:
                return fail()

        def checked(signature: bytes) -> bytes:
            check_signature(key, message, signature)
            return signature
        return self.client._sign_later(message).addCallback(checked)

    def handle(self, message: Message) -> bool:
        """Handle a mailbox message from the relay; False if it is not one."""
        handler = self._handlers.get(type(message))
        if handler is None:
            return False
        handler(message)
        if self.client.logged_in:
            self._rotate_if_due()
        return True

    def connection_ended(self) -> None:
        """
        The relay connection ended: a letter still waiting for its bundle
        was never sealed, and the user is told (a sealed one is in the
        store and goes again after the next login).
        """
        while self._bundles:
            recipient, item = self._bundles.popleft()
            if isinstance(item, KeyLetter):
                item.lost()
                continue  # still owed by the group layer: handed out after the next login
            self.view.letter_not_sent(recipient, "disconnected", "the connection to the relay ended "
                                      "before the letter was sealed; send it again")
        self._key_waiters.clear()
        self._uploads.clear()
        self._asked.clear()
        self._history_waiters.clear()

    # -- login and prekeys -------------------------------------------------------

    def logged_in(self) -> None:
        """
        After WELCOME: keep our signed prekey current on the relay, and post
        again every letter that has no answer yet (same id, same bytes).
        """
        self.store.drop_replaced(self._now() - self.grace)
        first = self.store.current_signed() is None
        # A client with no prekeys on the relay is not told (14.7): the
        # first upload carries a stock of one-time prekeys too.
        self._send_prekeys(ONE_TIME_STOCK if first else 0)
        for letter in self.store.sent_letters(PENDING):
            self.client._send(PostLetter(letter.recipient, letter.letter_id, letter.sealed), quiet=True)

    # -- keys ----------------------------------------------------------------------

    def _pinned(self, user: str, der: bytes) -> tuple[keys.PublicKey | None, str, str]:
        """
        C{user}'s key from the relay, checked against the pin store as for
        chats: C{(key, "", "")}, or C{(None, code, detail)}.
        """
        try:
            key = keys.load_public_key_der(der)
        except keys.KeyFormatError as e:
            return None, "bad-key", f"the relay sent an unusable key for {user}: {e}"
        status = self.client.pins.check(user, key)
        if status is PinStatus.CHANGED:
            self.client.changed_keys[user] = key
            self.view.key_changed(user, self.client.pins.fingerprint(user) or "", keys.fingerprint(key),
                                  True)
            return None, "key-changed", (f"{user}'s key differs from the pinned one; compare "
                                         f"fingerprints, then /trust {user}")
        if status is PinStatus.NEW:
            self.client.pins.pin(user, key)
        return key, "", ""

    def _with_key(self, user: str, waiter: KeyWaiter) -> None:
        waiters = self._key_waiters.setdefault(user, [])
        waiters.append(waiter)
        if len(waiters) == 1:
            self.client._send(GetUserKey(user), quiet=True)

    def _user_key(self, message: UserKey) -> None:
        waiters = self._key_waiters.pop(message.user, [])
        if not waiters:
            return  # not asked for: nothing is pinned on the relay's word alone
        key, code, detail = self._pinned(message.user, message.user_key)
        if key is not None and message.revoked:
            self.view.notice(f"{message.user}'s access to the relay was revoked (what it signed "
                             f"before still verifies with its registered key)")
        for waiter in waiters:
            waiter(key, code, detail)

    # -- sending ---------------------------------------------------------------------

    def send_letter(self, recipient: str, text: str) -> None:
        """Seal C{text} to C{recipient} once its bundle comes, and post it."""
        if not text:
            self.view.notice("a letter needs some text")
            return
        if self.client._send(FetchBundle(recipient)):
            self._bundles.append((recipient, text))

    def send_group_key(self, recipient: str, content: bytes, kept: Callable[[], None],
                       lost: Callable[[], None] = lambda: None) -> None:
        """
        Seal a group sender key (16.2) to C{recipient} as a letter of
        content type 2 once its bundle comes, and post it; C{kept()} once
        the sealed letter is in the letters file (it is posted again from
        there until the relay answers).  A key that cannot be sealed is
        one notice and C{lost()}; the group layer keeps it owed and hands
        it out again (after the next login, or before the next message).
        """
        if self.client._send(FetchBundle(recipient), quiet=True):
            self._bundles.append((recipient, KeyLetter(content, kept, lost)))
        else:
            lost()

    def _not_sent(self, recipient: str, item: str | KeyLetter, code: str, detail: str) -> None:
        if isinstance(item, KeyLetter):
            item.lost()
            self.view.notice(f"your group key for {recipient} was not sent ({code}): {detail}; it is "
                             "sent again before your next group message, or after the next login")
        else:
            self.view.letter_not_sent(recipient, code, detail)

    def _take(self, queue: deque[tuple[str, str | KeyLetter]], user: str) -> str | KeyLetter | None:
        for item in queue:
            if item[0] == user:
                queue.remove(item)
                return item[1]
        return None

    def _bundle(self, message: Bundle) -> None:
        recipient = message.user
        item = self._take(self._bundles, recipient)
        if item is None:
            return  # not asked for (or the letter was dropped): nothing to seal
        key, code, detail = self._pinned(recipient, message.user_key)
        if key is None:
            self._not_sent(recipient, item, code, detail)
            return
        if isinstance(item, KeyLetter):
            content, content_type = item.content, CONTENT_GROUP_KEY
        else:
            content, content_type = item.encode("utf-8"), CONTENT_TEXT
        try:
            bundle = PrekeyBundle.parse(recipient, message.signed_prekey, message.one_time_prekey)
            to_sign = prepare_letter(sender=self.client.user, sender_key=self.signer.public_key(),
                                     recipient=recipient, recipient_key=key, bundle=bundle,
                                     content=content, content_type=content_type, sent_at=self._now())
        except LetterError as e:
            self._not_sent(recipient, item, e.code, str(e))
            return

        def signed(signature: bytes) -> None:
            try:
                letter = to_sign.signed(self.signer.scheme, signature)
            except LetterError as e:
                self._not_sent(recipient, item, e.code, str(e))
                return
            limit = min(MAX_LETTER, self.client.max_payload - _LETTER_OVERHEAD)
            if len(letter.raw) > limit:
                self._not_sent(recipient, item, "letter-too-large",
                               f"the sealed letter is {len(letter.raw)} bytes, the most is {limit}")
                return
            letter_id = letter.header.letter_id
            self.store.add_sent(letter_id, recipient, letter.raw, self._now())  # kept before it is posted
            if isinstance(item, KeyLetter):
                self.key_letters.add(letter_id)
                item.kept()
            self.client._send(PostLetter(recipient, letter_id, letter.raw), quiet=True)

        def failed(line: str) -> None:
            self._not_sent(recipient, item, "signing-failed",
                           f"the letter could not be signed and was not sent: {line}")
        self.signing.submit(to_sign.message, signed, failed)

    @property
    def grace(self) -> int:
        """How long a replaced signed prekey is kept (see the module docstring)."""
        return max(GRACE, int(self.store.setting("relay_expiry", "0")) + DAY)

    def _note_expiry(self, stored_at: int, expires_at: int) -> None:
        seen = expires_at - stored_at
        if seen > int(self.store.setting("relay_expiry", "0")):
            self.store.set_setting("relay_expiry", str(seen))

    def _letter_stored(self, message: LetterStored) -> None:
        if self.store.sent(message.letter_id) is None:
            return
        self._note_expiry(message.stored_at, message.expires_at)
        self.store.set_sent_state(message.letter_id, STORED, message.stored_at, message.expires_at)
        if message.letter_id in self.key_letters:
            return  # a group key: the user did not write it
        self.view.letter_sent(message.recipient, message.letter_id, message.stored_at, message.expires_at)

    def _letter_refused(self, message: LetterRefused) -> None:
        reason = reason_of(message.reason)
        # TRY_AGAIN: not stored, and kept unanswered: posted again after the
        # next login (14.7), as a letter that got no answer.
        if self.store.sent(message.letter_id) is not None and reason is not Reason.TRY_AGAIN:
            self.store.set_sent_state(message.letter_id, REFUSED, reason=reason_name(reason))
        self.view.letter_refused(message.recipient, message.letter_id, reason)

    # -- failures ----------------------------------------------------------------------

    def command_failed(self, message: CommandFailed) -> bool:
        """
        A COMMAND_FAILED for one of our mailbox messages; False if it is
        not one (the chat side handles it).
        """
        command, subject, reason = message.command, message.subject, reason_of(message.reason)
        if not UploadPrekeys.TYPE <= command <= GetKeyHistory.TYPE:
            return False
        if command == UploadPrekeys.TYPE:
            if self._uploads:
                self._uploads.popleft()
            self.view.notice(f"the relay refused our prekeys: {reason_name(reason)}")
        elif command == FetchBundle.TYPE:
            item = self._take(self._bundles, subject)
            if isinstance(item, KeyLetter):
                self._not_sent(subject, item, reason_name(reason), f"the relay refused {subject}'s prekeys")
            elif item is not None:
                self.view.letter_refused(subject, None, reason)
        elif command == GetKeyHistory.TYPE:
            self.history_failed(subject)
        elif command == GetUserKey.TYPE:
            for waiter in self._key_waiters.pop(subject, []):
                waiter(None, "no-sender-key", f"the relay has no key for {subject}: {reason_name(reason)}")
        elif command == PostReceipt.TYPE:
            self.log.info("a receipt was refused: {reason}", reason=reason_name(reason))
        else:
            for request in (ListLetters, SentStatus, ListUsers):
                if command == request.TYPE:
                    self.list_failed(request)
            names = {FetchLetter.TYPE: "read", DeleteLetter.TYPE: "delete", ListLetters.TYPE: "letters",
                     SentStatus.TYPE: "sent", ListUsers.TYPE: "users", PostLetter.TYPE: "letter"}
            if reason is Reason.NO_LETTER:
                self.view.notice(f"no such letter from {subject} (deleted, expired, or never stored)")
            else:
                self.view.command_failed(names.get(command, f"0x{command:02x}"), subject, reason)
        return True
