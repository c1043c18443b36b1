# -*- test-case-name: tests.test_client_letters -*-
"""
Letters that came for us (docs/protocol.rst, 14.4): a base of
L{securechat.client.letters.Mailbox} that fetches, opens, shows and
deletes them, and signs the receipts for them.

A letter is shown as text only when its signature verified (with the
sender's current key, or a previous one as L{PreviousKeys} allows) and it
decrypted; otherwise its failure is shown (14.4 codes), never text.  A
letter of content type 2 (a group sender key, 16.2) is never shown: it
goes to the client's group layer (L{securechat.client.groupsession}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from twisted.logger import Logger

from securechat.client.letterstore import LetterStore
from securechat.client.signqueue import SigningQueue
from securechat.crypto import keys
from securechat.crypto.keyhistory import PreviousKey
from securechat.crypto.letters import CONTENT_GROUP_KEY, LetterError, SealedLetter, open_letter, parse_letter
from securechat.crypto.receipts import ReceiptKind, prepare_receipt
from securechat.crypto.signer import ISigner
from securechat.wire.mailbox import (
    DeleteLetter,
    FetchLetter,
    Letter,
    LetterArrived,
    LetterDeleted,
    NewLetters,
    PostReceipt,
    ReceiptStored,
)

if TYPE_CHECKING:
    from securechat.client.core import ChatClient
    from securechat.client.groupsession import GroupSession
    from securechat.client.letterview import LetterSummary
    from securechat.client.sentletters import KeyWaiter
    from securechat.client.view import ChatView

#: What the letters file keeps as the text of a group key letter it took
#: (such a letter is never shown; a NUL never starts a letter typed here).
GROUP_KEY_MARK = "\x00group sender key"

#: The codes of 14.4 found before the signature is checked: no delivery
#: receipt for those (the letter may not be the sender's).
_BEFORE_SIGNATURE = frozenset({"letter-too-large", "malformed", "unsupported-version", "unknown-suite",
                               "wrong-envelope", "wrong-recipient", "replayed", "bad-signature",
                               "key-changed", "no-sender-key", "unpinned-key", "key-replaced",
                               "key-compromised"})


class OpenLetters:
    """
    The receiving half of the mailbox (see the module docstring).
    """

    log = Logger()

    client: ChatClient
    store: LetterStore
    signer: ISigner
    signing: SigningQueue
    listed: list[LetterSummary]
    _reading: list[tuple[str, bytes]]
    #: The client's group layer, when it has one: group keys go to it,
    #: and it decides which arriving letters are fetched at once.
    groups: GroupSession | None

    view: ChatView
    # Provided by the mailbox's other bases (annotations only, so that they
    # shadow nothing in the method resolution order):
    find: Callable[[str], LetterSummary | None]
    _with_key: Callable[[str, KeyWaiter], None]
    _open_with_history: Callable[[Letter], None]
    _note_expiry: Callable[[int, int], None]
    _now: Callable[[], int]

    # -- receiving -------------------------------------------------------------------

    def _new_letters(self, message: NewLetters) -> None:
        self.view.new_letters(message.count)
        if self.groups is not None:
            self.groups.letters_waiting()

    def _letter_arrived(self, message: LetterArrived) -> None:
        if self.groups is not None and self.groups.shares_group(message.sender):
            # Most likely a group key: fetched now, shown if it is text.
            self.fetch(message.sender, message.letter_id)
            return
        self.view.letter_arrived(message.sender, message.stored_at, message.size)

    def fetch(self, sender: str, letter_id: bytes) -> None:
        """
        Fetch and open one letter without the user asking (the group
        layer's keys): once, however often it is asked for.
        """
        pair = (sender, letter_id)
        if pair not in self._reading and self.client._send(FetchLetter(sender, letter_id), quiet=True):
            self._reading.append(pair)

    def read(self, ref: str) -> None:
        entry = self.find(ref)
        if entry is not None and self.client._send(FetchLetter(entry.sender, entry.letter_id)):
            self._reading.append((entry.sender, entry.letter_id))

    def delete(self, ref: str) -> None:
        entry = self.find(ref)
        if entry is not None:
            self.client._send(DeleteLetter(entry.sender, entry.letter_id))

    def _letter_deleted(self, message: LetterDeleted) -> None:
        before = self.store.received(message.sender, message.letter_id)
        if before is not None and before[1] == GROUP_KEY_MARK:
            return  # a group key we took: the user never saw it
        self.listed = [e for e in self.listed
                       if (e.sender, e.letter_id) != (message.sender, message.letter_id)]
        self.view.letter_deleted(message.sender, message.letter_id)

    def _letter(self, message: Letter) -> None:
        pair = (message.sender, message.letter_id)
        if pair not in self._reading:
            self.log.info("a letter nobody asked for was dropped")
            return
        self._reading.remove(pair)
        self._note_expiry(message.stored_at, message.expires_at)
        before = self.store.received(*pair)
        if before is not None:
            sealed, text, sent_at = before
            if sealed == message.letter and text == GROUP_KEY_MARK:
                self.client._send(DeleteLetter(message.sender, message.letter_id), quiet=True)
            elif sealed == message.letter:
                self.view.letter_opened(message.sender, message.letter_id, sent_at, message.stored_at,
                                        text, True, 0)
            else:
                self.view.letter_failed(message.sender, message.letter_id, message.stored_at, "replayed",
                                        "a different letter under the id of one already opened")
            return

        def opened(key: keys.PublicKey | None, code: str, detail: str) -> None:
            self._open(message, key, code, detail)
        self._with_key(message.sender, opened)

    def _open(self, message: Letter, sender_key: keys.PublicKey | None, code: str, detail: str,
              previous: PreviousKey | None = None) -> None:
        """
        Open the letter with the sender's key: its current one, or
        C{previous} (a key it had before, that passed the rules of
        L{securechat.crypto.keyhistory}).
        """
        client = self.client
        try:
            if sender_key is None:
                raise LetterError(code or "no-sender-key", detail)
            letter = parse_letter(message.letter)
            opened = open_letter(letter, recipient=client.user,
                                 recipient_key=client.private_key.public_key(), sender_key=sender_key,
                                 prekeys=self.store, envelope=(message.sender, message.letter_id),
                                 opened=self.store)
        except LetterError as e:
            if e.code == "bad-signature" and sender_key is not None and previous is None:
                self._open_with_history(message)  # signed before a rekey?
                return
            self.view.letter_failed(message.sender, message.letter_id, message.stored_at, e.code, str(e))
            if e.code not in _BEFORE_SIGNATURE:
                self._post_receipt(parse_letter(message.letter), ReceiptKind.DELIVERY)
            return
        header = opened.header
        if opened.content_type == CONTENT_GROUP_KEY and self.groups is not None:
            self._group_key(message, letter, opened.content)
            return
        if opened.content_type != 1:
            self.view.letter_failed(message.sender, message.letter_id, message.stored_at, "unknown-content",
                                    f"content type {opened.content_type}, which this client cannot show")
            self._post_receipt(letter, ReceiptKind.DELIVERY)
            return
        text = opened.text
        self.store.add_received(message.sender, message.letter_id, message.letter, text, header.sent_at,
                                message.stored_at, message.expires_at)
        if header.one_time_prekey_id is not None:
            self.store.forget_one_time(header.one_time_prekey_id)
        self.view.letter_opened(message.sender, message.letter_id, header.sent_at, message.stored_at,
                                text, False, previous.replaced_at if previous else 0)
        self._post_receipt(letter, ReceiptKind.DELIVERY)
        if self.read_receipts:
            self._post_receipt(letter, ReceiptKind.READ)

    def _group_key(self, message: Letter, letter: SealedLetter, content: bytes) -> None:
        """
        A group sender key (16.2) that opened: kept as opened (a replay is
        refused), handed to the group layer, never shown as a letter, and
        deleted from the relay once the group layer has it.
        """
        assert self.groups is not None
        header = letter.header
        self.store.add_received(message.sender, message.letter_id, message.letter, GROUP_KEY_MARK,
                                header.sent_at, message.stored_at, message.expires_at)
        if header.one_time_prekey_id is not None:
            self.store.forget_one_time(header.one_time_prekey_id)
        self.groups.key_arrived(message.sender, content)
        self._post_receipt(letter, ReceiptKind.DELIVERY)
        self.client._send(DeleteLetter(message.sender, message.letter_id), quiet=True)

    def _post_receipt(self, letter: SealedLetter, kind: ReceiptKind) -> None:
        to_sign = prepare_receipt(letter, kind, self._now())
        header = letter.header

        def signed(signature: bytes) -> None:
            receipt = to_sign.signed(self.signer.scheme, signature)
            self.client._send(PostReceipt(header.sender, header.letter_id, receipt.encode()), quiet=True)

        def failed(line: str) -> None:
            self.view.notice(f"the {kind.name.lower()} receipt for {header.sender}'s letter "
                             f"[{header.letter_id[:4].hex()}] could not be signed and was not sent: {line}")
        self.signing.submit(to_sign.message, signed, failed)

    def _receipt_stored(self, message: ReceiptStored) -> None:
        pass  # the receipt is with the relay; nothing for the user to see

    @property
    def read_receipts(self) -> bool:
        return self.store.setting("read_receipts", "on") == "on"

    def set_read_receipts(self, on: bool) -> None:
        self.store.set_setting("read_receipts", "on" if on else "off")
        self.view.notice("read receipts are " + ("on" if on else "off (delivery receipts are still sent)"))

