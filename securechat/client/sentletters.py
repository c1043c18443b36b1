# -*- test-case-name: tests.test_client_letters -*-
"""
The status of the letters we sent, and their receipts: the part of
L{securechat.client.letters.Mailbox} that checks each receipt against the
recipient's pinned key (docs/protocol.rst 14.5) before the view shows it
as verified, with its failure code otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from securechat.client.letterstore import STORED, LetterStore
from securechat.client.letterview import StatusRow
from securechat.crypto import keys
from securechat.crypto.keyhistory import PreviousKey, previous_signer
from securechat.crypto.letters import LetterError, parse_letter
from securechat.crypto.receipts import parse_receipt, verify_receipt
from securechat.wire.mailbox import ReceiptMessage, StatusEntry, StatusList

if TYPE_CHECKING:
    from securechat.client.core import ChatClient
    from securechat.client.listpages import ListFetch
    from securechat.client.previouskeys import HistoryWaiter
    from securechat.client.view import ChatView

#: Called with a user's key checked against the pins: (key, "", "") or
#: (None, code, detail).
KeyWaiter = Callable[[keys.PublicKey | None, str, str], None]


class SentLetters:
    """
    Receipts and the sent-status view (a base of the mailbox).
    """

    client: ChatClient
    store: LetterStore
    key_letters: set[bytes]

    @property
    def view(self) -> ChatView:
        return self.client.view

    def _with_key(self, user: str, waiter: KeyWaiter) -> None:
        raise NotImplementedError

    def _with_history(self, user: str, waiter: HistoryWaiter) -> None:
        raise NotImplementedError

    def pinned_before(self, user: str) -> Callable[[keys.PublicKey], bool]:
        raise NotImplementedError

    def _check_receipt(self, blob: bytes, letter_id: bytes, key: keys.PublicKey | None, code: str,
                       stored_at: int = 0, history: list[PreviousKey] | None = None) -> tuple[str, int]:
        """
        C{("ok", 0)} if C{blob} is a receipt for our letter that verifies
        with the recipient's current key; C{("ok", replaced_at)} if it
        verifies with a previous key of C{history} by the rules of
        L{securechat.crypto.keyhistory} (C{stored_at}: when the relay
        stored the receipt); else C{(code, 0)}.
        """
        if key is None:
            return code or "no-key", 0
        sent = self.store.sent(letter_id)
        if sent is None:
            return "no-local-copy", 0
        letter = parse_letter(sent.sealed)
        try:
            verify_receipt(blob, letter, key)
        except LetterError as e:
            if e.code != "bad-signature" or history is None:
                return e.code, 0
            recipient = letter.header.recipient

            def verifies(previous: keys.PublicKey) -> bool:
                try:
                    verify_receipt(blob, letter, previous)
                except LetterError:
                    return False
                return True
            try:
                found = previous_signer(verifies, history, stored_at, self.pinned_before(recipient),
                                        recipient)
            except LetterError as e:
                return e.code, 0
            return "ok", found.replaced_at
        return "ok", 0

    def _receipt(self, message: ReceiptMessage) -> None:
        """
        A receipt pushed as it was posted: stored now, so after any
        replacement of a key; only the current key can verify it.
        """
        try:
            kind = parse_receipt(message.receipt).kind
        except LetterError:
            kind = 0

        def verify(key: keys.PublicKey | None, code: str, detail: str) -> None:
            verification, _ = self._check_receipt(message.receipt, message.letter_id, key, code)
            if verification == "ok":
                self.store.add_receipt(message.letter_id, kind, message.receipt)
            if message.letter_id in self.key_letters:
                return  # a group key's receipt: the user did not write that letter
            self.view.receipt(message.recipient, message.letter_id, kind, verification)
        self._with_key(message.recipient, verify)

    def _page(self, answer: type, entries: Any, total: int) -> ListFetch | None:
        raise NotImplementedError

    def _status_list(self, message: StatusList) -> None:
        fetch = self._page(StatusList, message.letters, message.total)
        if fetch is None:
            return
        letters: list[StatusEntry] = fetch.entries
        recipients = {e.recipient for e in letters}
        found: dict[str, tuple[keys.PublicKey | None, str]] = {}
        histories: dict[str, list[PreviousKey]] = {}
        on_relay = {e.letter_id for e in letters}

        def rows() -> list[StatusRow]:
            out = []
            for e in letters:
                key, code = found[e.recipient]
                history = histories.get(e.recipient)
                delivery, delivery_replaced = (self._check_receipt(
                    e.delivery_receipt, e.letter_id, key, code, e.delivered_at, history)
                    if e.delivery_receipt else ("", 0))
                read, read_replaced = (self._check_receipt(
                    e.read_receipt, e.letter_id, key, code, e.read_at, history)
                    if e.read_receipt else ("", 0))
                out.append(StatusRow(e.recipient, e.letter_id, STORED, e.stored_at, e.expires_at,
                                     e.delivered_at, e.read_at, delivery, read,
                                     delivery_key_replaced=delivery_replaced,
                                     read_key_replaced=read_replaced))
            return out

        def show(shown: list[StatusRow]) -> None:
            local = 0
            if fetch.first == 0:  # letters the relay never stored: on the first page
                for sent in self.store.sent_letters():
                    if sent.state != STORED and sent.letter_id not in on_relay:
                        local += 1
                        shown.append(StatusRow(sent.recipient, sent.letter_id, sent.state, 0, 0, 0, 0,
                                               "", "", sent.reason or ""))
            self.view.sent_status(tuple(shown), (fetch.total or 0) + local, fetch.more())

        def with_keys() -> None:
            first = rows()
            # A receipt the current key does not verify may be signed with
            # a key the recipient had before (14.9): ask for those once.
            need = sorted({r.recipient for r in first if "bad-signature" in (r.delivery, r.read)})
            if not need:
                show(first)
                return
            for recipient in need:
                def got_history(history: list[PreviousKey], recipient: str = recipient) -> None:
                    histories[recipient] = history
                    if len(histories) == len(need):
                        show(rows())
                self._with_history(recipient, got_history)

        if not recipients:
            show([])
            return
        for recipient in sorted(recipients):
            def got(key: keys.PublicKey | None, code: str, detail: str, recipient: str = recipient) -> None:
                found[recipient] = (key, code)
                if len(found) == len(recipients):
                    with_keys()
            self._with_key(recipient, got)
