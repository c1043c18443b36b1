# -*- test-case-name: tests.test_irc_mapping -*-
"""
Letters on IRC: the letter events of the L{securechat.client.view.ChatView}
for the gateway (L{securechat.client.irc.gateway.IrcGateway} inherits
L{IrcLetters}).

  - a letter for the user is opened as soon as the relay says it is there
    (NEW_LETTERS at login, LETTER_ARRIVED later), or when an IRC client
    registers, never while none is connected: opening a letter shows it
    (and a read receipt may say so), so letters wait on the relay, new,
    until someone can see them;
  - it is shown as PRIVMSGs from its sender, one per line of its text,
    each marked C{[letter ID, written TIME]} (the sender's clock, UTC), so
    a letter is never taken for a chat line;
  - everything else (stored, refused, receipts, lists) is a NOTICE from
    the service nick, in L{LetterLines}' words.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from securechat.client.irc.text import SERVICE, mask_of
from securechat.client.letterview import LetterLines, LetterSummary, short_id, verified, when

if TYPE_CHECKING:
    from securechat.client.core import ChatClient
    from securechat.client.irc.connection import IrcConnection

#: One line out: (source mask, command, text, action).
Line = tuple[str, str, str, bool]


class IrcLetters(LetterLines):
    """
    The letter events on IRC (see the module docstring).  The gateway
    provides C{client}, C{irc}, L{service_notice} and L{_out}.
    """

    client: ChatClient | None
    irc: IrcConnection | None
    #: One entry per letter list asked for, in order: True when the
    #: gateway asked (to open new letters), False for the user's.
    lists: deque[bool]
    #: Letters asked for in this relay session (opened or not): each is
    #: opened once.
    fetching: set[bytes]

    def service_notice(self, text: str) -> None:
        raise NotImplementedError

    def _out(self, line: Line) -> None:
        raise NotImplementedError

    def letter_line(self, text: str, alert: bool = False) -> None:
        self.service_notice(("! " if alert else "") + text.replace(
            "/letters new", f"/msg {SERVICE} inbox"))

    def fetch_new(self) -> None:
        """
        Ask for the list of new letters, to open each, when an IRC client
        is there to see them: a letter opened is shown (and a read receipt
        may say so), so letters wait on the relay, new, while none is.
        """
        client = self.client
        if self.irc is None or not self.irc.registered:
            return
        if client is not None and client.mailbox is not None and client.logged_in:
            self.lists.append(True)
            client.mailbox.list_letters(True)

    def list_letters(self, new_only: bool) -> None:
        """The user's C{inbox}: the list is shown, nothing is opened."""
        client = self.client
        if client is not None and client.mailbox is not None:
            self.lists.append(False)
            client.mailbox.list_letters(new_only)

    def new_letters(self, count: int) -> None:
        self.fetch_new()

    def letter_arrived(self, sender: str, stored_at: int, size: int) -> None:
        self.fetch_new()

    def letter_list(self, letters: tuple[LetterSummary, ...], total: int, more: str) -> None:
        mine = self.lists.popleft() if self.lists else False
        client = self.client
        if not mine or client is None or client.mailbox is None:
            super().letter_list(letters, total, more)
            return
        asked = False
        for entry in letters:
            if entry.state == 0 and entry.letter_id not in self.fetching:
                self.fetching.add(entry.letter_id)
                client.mailbox.read(entry.letter_id.hex())
                asked = True
        if asked and total > len(letters):
            self.fetch_new()  # the next page: answered after these are fetched

    def letter_opened(self, sender: str, letter_id: bytes, sent_at: int, stored_at: int,
                      text: str, again: bool, key_replaced: int) -> None:
        # Kept in fetching: the relay may list it as new until our delivery
        # receipt is in, and it is not opened twice.
        previous = f", {verified(sender, key_replaced)}" if key_replaced else ""
        mark = (f"[letter {short_id(letter_id)}, written {when(sent_at)}"
                f"{', again' if again else ''}{previous}]")
        for line in text.splitlines() or [""]:
            self._out((mask_of(sender), "PRIVMSG", f"{mark} {line}", False))


