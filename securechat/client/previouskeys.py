# -*- test-case-name: tests.test_key_history -*-
"""
Letters and receipts signed with a key their signer had before
(docs/protocol.rst 14.9): the part of L{securechat.client.letters.Mailbox}
that, when a signature does not verify with the signer's current key,
asks the relay for the signer's previous keys (GET_KEY_HISTORY) and lets
one of them verify it only as L{securechat.crypto.keyhistory} says: a key
pinned here for that user, now or before, and what it signed stored by the
relay before the key was replaced (and before it was compromised, if it
was).  A letter that verifies so is shown with the previous key's
replacement date; one that does not is refused with the rule's code.

A KEY_HISTORY nobody asked for is dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from securechat.crypto import keys
from securechat.crypto.keyhistory import PreviousKey, load_history, previous_signer
from securechat.crypto.letters import LetterError, SealedLetter, parse_letter, verify_letter
from securechat.wire.keyhistory import GetKeyHistory, KeyHistory
from securechat.wire.mailbox import Letter

if TYPE_CHECKING:
    from securechat.client.core import ChatClient
    from securechat.client.view import ChatView

#: Called with a user's previous keys (empty when the relay has none or
#: refused to say).
HistoryWaiter = Callable[[list[PreviousKey]], None]


def _letter_verifies(letter: SealedLetter) -> Callable[[keys.PublicKey], bool]:
    def verifies(key: keys.PublicKey) -> bool:
        try:
            verify_letter(letter, key)
        except LetterError:
            return False
        return True
    return verifies


class PreviousKeys:
    """
    Previous keys of the users we read letters and receipts from (a base of
    the mailbox).
    """

    client: ChatClient
    view: ChatView
    _history_waiters: dict[str, list[HistoryWaiter]]

    def _open(self, message: Letter, sender_key: keys.PublicKey | None, code: str, detail: str,
              previous: PreviousKey | None = None) -> None:
        raise NotImplementedError

    def _with_history(self, user: str, waiter: HistoryWaiter) -> None:
        waiters = self._history_waiters.setdefault(user, [])
        waiters.append(waiter)
        if len(waiters) == 1 and not self.client._send(GetKeyHistory(user), quiet=True):
            self._history_waiters.pop(user, None)
            waiter([])

    def _key_history(self, message: KeyHistory) -> None:
        waiters = self._history_waiters.pop(message.user, [])
        if not waiters:
            return  # not asked for
        history = load_history((e.user_key, e.added_at, e.replaced_at, e.compromised_at)
                               for e in message.keys)
        for waiter in waiters:
            waiter(history)

    def history_failed(self, user: str) -> None:
        """GET_KEY_HISTORY was refused: no previous key verifies anything."""
        for waiter in self._history_waiters.pop(user, []):
            waiter([])

    def pinned_before(self, user: str) -> Callable[[keys.PublicKey], bool]:
        """Whether a key is or was pinned here for C{user}."""
        return lambda key: self.client.pins.was_pinned(user, key)

    def _open_with_history(self, message: Letter) -> None:
        """
        The letter's signature does not verify with the sender's current
        key: try the keys the sender had before.
        """
        def retry(history: list[PreviousKey]) -> None:
            try:
                letter = parse_letter(message.letter)
                previous = previous_signer(_letter_verifies(letter), history, message.stored_at,
                                           self.pinned_before(message.sender), message.sender)
            except LetterError as e:
                self.view.letter_failed(message.sender, message.letter_id, message.stored_at, e.code, str(e))
                return
            self._open(message, previous.key, "", "", previous)
        self._with_history(message.sender, retry)
