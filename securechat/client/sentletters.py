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
from securechat.crypto.letters import LetterError, parse_letter
from securechat.crypto.receipts import parse_receipt, verify_receipt
from securechat.wire.mailbox import ReceiptMessage, StatusEntry, StatusList

if TYPE_CHECKING:
    from securechat.client.core import ChatClient
    from securechat.client.listpages import ListFetch
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

    @property
    def view(self) -> ChatView:
        return self.client.view

    def _with_key(self, user: str, waiter: KeyWaiter) -> None:
        raise NotImplementedError

    def _check_receipt(self, blob: bytes, letter_id: bytes, key: keys.PublicKey | None, code: str) -> str:
        """C{"ok"} if C{blob} is a receipt for our letter that verifies, else a code."""
        if key is None:
            return code or "no-key"
        sent = self.store.sent(letter_id)
        if sent is None:
            return "no-local-copy"
        try:
            verify_receipt(blob, parse_letter(sent.sealed), key)
        except LetterError as e:
            return e.code
        return "ok"

    def _receipt(self, message: ReceiptMessage) -> None:
        try:
            kind = parse_receipt(message.receipt).kind
        except LetterError:
            kind = 0

        def verify(key: keys.PublicKey | None, code: str, detail: str) -> None:
            verification = self._check_receipt(message.receipt, message.letter_id, key, code)
            if verification == "ok":
                self.store.add_receipt(message.letter_id, kind, message.receipt)
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
        on_relay = {e.letter_id for e in letters}

        def show() -> None:
            rows = []
            for e in letters:
                key, code = found[e.recipient]
                rows.append(StatusRow(
                    e.recipient, e.letter_id, STORED, e.stored_at, e.expires_at, e.delivered_at, e.read_at,
                    self._check_receipt(e.delivery_receipt, e.letter_id, key, code) if e.delivery_receipt else "",
                    self._check_receipt(e.read_receipt, e.letter_id, key, code) if e.read_receipt else ""))
            local = 0
            if fetch.first == 0:  # letters the relay never stored: on the first page
                for sent in self.store.sent_letters():
                    if sent.state != STORED and sent.letter_id not in on_relay:
                        local += 1
                        rows.append(StatusRow(sent.recipient, sent.letter_id, sent.state, 0, 0, 0, 0, "", "",
                                              sent.reason or ""))
            self.view.sent_status(tuple(rows), (fetch.total or 0) + local, fetch.more())

        if not recipients:
            show()
            return
        for recipient in sorted(recipients):
            def got(key: keys.PublicKey | None, code: str, detail: str, recipient: str = recipient) -> None:
                found[recipient] = (key, code)
                if len(found) == len(recipients):
                    show()
            self._with_key(recipient, got)
