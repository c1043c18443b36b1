# -*- test-case-name: tests.test_client_paging -*-
"""
The client's lists, page by page (docs/protocol.rst 14.7): the part of
L{securechat.client.letters.Mailbox} that asks the relay for LIST_LETTERS,
SENT_STATUS and LIST_USERS with an offset, as many times as the page the
user asked for needs, and hands the whole page to the view.

What the user gets:

  - C{/letters [new|all] [PAGE]} and C{/sent [PAGE]} show L{PAGE_SIZE}
    entries a page, page 1 the newest.  Letters are numbered across pages
    (page 2 starts at 51, and C{/read 57} reads the 57th of the list last
    shown).  When there is a next page, the last line says the command that
    shows it (C{more: /letters all 2}).
  - C{/users} shows every registered user (at most L{MAX_USERS}; past that
    it says how many were left out).

Rules it keeps:

  - answers come in the order the requests went (14.7), so an answer is
    matched to the oldest request of its kind still unanswered; a list
    nobody asked for is dropped;
  - one page may take several answers (the relay cuts each to
    C{max_payload}): the next request's offset is the last one plus the
    entries that answer carried;
  - fetching a page stops when it is full, when the offset reaches the
    total, or at an empty answer (nothing at that offset: the list shrank
    meanwhile, or the relay has nothing more).  It never loops;
  - when the total changes between two answers of one page (a letter came,
    was read, deleted or expired meanwhile), the page is fetched again from
    its start, at most L{MAX_RESTARTS} times; after that it is shown as it
    is, with a notice.  An entry that comes twice (the list grew at its
    front) is shown once;
  - a request the relay refuses (COMMAND_FAILED) ends that page; the
    failure is shown once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Hashable, Sequence

from twisted.logger import Logger

from securechat.client.letterview import LetterSummary
from securechat.wire.mailbox import (
    LetterList, ListLetters, ListUsers, SentStatus, StatusList, UserList, Which)
from securechat.wire.messages import Message

if TYPE_CHECKING:
    from securechat.client.core import ChatClient
    from securechat.client.view import ChatView

#: Entries on one page of /letters and /sent.
PAGE_SIZE = 50
#: The most users /users fetches.
MAX_USERS = 10000
#: The most letters a list for the client itself (L{ListPages.list_quietly}) fetches.
MAX_QUIET = 1000
#: How many times a page is fetched again from its start when the list
#: changes while it is being fetched.
MAX_RESTARTS = 3

#: The list each request asks for, by the answer's type.
_ANSWERS: dict[type, type] = {ListLetters: LetterList, SentStatus: StatusList, ListUsers: UserList}


@dataclass
class ListFetch:
    """
    One page being fetched: up to C{want} entries of a list from position
    C{first} (0-based) of the relay's order.
    """

    #: The request's type: ListLetters, SentStatus or ListUsers.
    request: type
    first: int
    want: int
    #: For ListLetters: Which.NEW or Which.ALL.
    which: int = Which.ALL
    entries: list[Any] = field(default_factory=list)
    seen: set[Hashable] = field(default_factory=set)
    #: The total of this attempt's first answer.
    total: int | None = None
    restarts: int = 0
    #: The list kept changing: shown as it is, with a notice.
    unsettled: bool = False
    #: For a list fetched for the client itself (not shown): called with
    #: the entries' C{(sender, letter_id)}.
    quietly: Callable[[list[tuple[str, bytes]]], None] | None = None

    @property
    def page(self) -> int:
        return self.first // PAGE_SIZE + 1

    def message(self, offset: int) -> Message:
        if self.request is ListLetters:
            return ListLetters(self.which, offset)
        return self.request(offset)

    def command(self) -> str:
        """The command that shows this list, as the user types it."""
        if self.request is ListLetters:
            return "/letters " + ("new" if self.which == Which.NEW else "all")
        return "/sent" if self.request is SentStatus else "/users"

    def more(self) -> str:
        """The command that shows the next page, or "" if this is the last."""
        if self.request is ListUsers or self.total is None or self.total <= self.first + self.want:
            return ""
        return f"{self.command()} {self.page + 1}"


def page_arguments(words: Sequence[str], choices: tuple[str, ...] = ()) -> tuple[str, int] | None:
    """
    The arguments of C{/letters [new|all] [PAGE]} or C{/sent [PAGE]}: the
    choice (the first of C{choices} by default) and the page (1 by
    default); None when they are not that.
    """
    rest = list(words)
    choice = choices[0] if choices else ""
    if rest and rest[0].lower() in choices:
        choice = rest.pop(0).lower()
    if not rest:
        return choice, 1
    if len(rest) == 1 and rest[0].isdigit() and 1 <= int(rest[0]) <= 10**9:
        return choice, int(rest[0])
    return None


def _key(entry: Any) -> Hashable:
    """What identifies a list entry (the same one in two answers is shown once)."""
    for name in ("sender", "recipient"):
        if hasattr(entry, name):
            return (getattr(entry, name), entry.letter_id)
    return entry.user


class ListPages:
    """
    Lists fetched page by page (a base of the mailbox; see the module
    docstring).
    """

    log = Logger()

    client: ChatClient
    view: ChatView
    #: The last letters page shown, for /read N.
    listed: list[LetterSummary]
    #: The requests sent and not yet answered, by the answer's type, in order.
    _asked: dict[type, deque[tuple[ListFetch, int]]]

    def list_letters(self, new_only: bool, page: int = 1) -> None:
        """Show page C{page} of our letters (new only, or all)."""
        self._start(ListFetch(ListLetters, (page - 1) * PAGE_SIZE, PAGE_SIZE,
                              Which.NEW if new_only else Which.ALL))

    def list_quietly(self, which: int, answer: Callable[[list[tuple[str, bytes]]], None]) -> None:
        """
        Fetch the first L{MAX_QUIET} letters of our mailbox (C{which}) for
        the client itself: C{answer} gets their C{(sender, letter_id)};
        nothing is shown, and /read's numbers stay as they were.
        """
        self._start(ListFetch(ListLetters, 0, MAX_QUIET, which, quietly=answer))

    def sent_status(self, page: int = 1) -> None:
        """Show page C{page} of the letters we sent, with their receipts."""
        self._start(ListFetch(SentStatus, (page - 1) * PAGE_SIZE, PAGE_SIZE))

    def list_users(self) -> None:
        """Show every registered user (up to MAX_USERS)."""
        self._start(ListFetch(ListUsers, 0, MAX_USERS))

    def _start(self, fetch: ListFetch) -> None:
        if fetch.first < 0:
            self.view.notice("a page number is 1 or more")
            return
        self._ask(fetch, fetch.first)

    def _ask(self, fetch: ListFetch, offset: int) -> None:
        if self.client._send(fetch.message(offset)):
            self._asked.setdefault(_ANSWERS[fetch.request], deque()).append((fetch, offset))

    def _page(self, answer: type, entries: Sequence[Any], total: int) -> ListFetch | None:
        """
        Take one list answer: the page it completes, or None (more was
        asked for, or nobody asked for it).
        """
        asked = self._asked.get(answer)
        if not asked:
            self.log.info("a list nobody asked for was dropped")
            return None
        fetch, offset = asked.popleft()
        if fetch.total is None:
            fetch.total = total
        elif total != fetch.total:
            if fetch.restarts < MAX_RESTARTS:
                fetch.restarts += 1
                fetch.entries, fetch.seen, fetch.total = [], set(), None
                self._ask(fetch, fetch.first)
                return None
            fetch.unsettled = True
            fetch.total = total
        for entry in entries:
            key = _key(entry)
            if key not in fetch.seen and len(fetch.entries) < fetch.want:
                fetch.seen.add(key)
                fetch.entries.append(entry)
        after = offset + len(entries)
        if entries and not fetch.unsettled and len(fetch.entries) < fetch.want and after < total:
            self._ask(fetch, after)
            return None
        if fetch.unsettled and fetch.quietly is None:
            self.view.notice(f"the list changed while it was being fetched; {fetch.command()} "
                             "again shows it settled")
        return fetch

    def list_failed(self, request: type) -> None:
        """A list request was refused: that page is not fetched further."""
        asked = self._asked.get(_ANSWERS[request])
        if asked:
            asked.popleft()

    def _letter_list(self, message: LetterList) -> None:
        fetch = self._page(LetterList, message.letters, message.total)
        if fetch is None:
            return
        if fetch.quietly is not None:
            fetch.quietly([(e.sender, e.letter_id) for e in fetch.entries])
            return
        self.listed = [LetterSummary(fetch.first + n, e.sender, e.letter_id, e.stored_at, e.size, e.state)
                       for n, e in enumerate(fetch.entries, 1)]
        self.view.letter_list(tuple(self.listed), fetch.total or 0, fetch.more())

    def find(self, ref: str) -> LetterSummary | None:
        """
        The letter C{ref} names in the last list: its number, or the start
        of its id in hex (at least 4 digits); None (and a notice) if none.
        """
        ref = ref.strip().lower()
        if ref.isdigit():
            found = [e for e in self.listed if e.number == int(ref)]
        elif len(ref) >= 4 and all(c in "0123456789abcdef" for c in ref):
            found = [e for e in self.listed if e.letter_id.hex().startswith(ref)]
        else:
            found = []
        if len(found) != 1:
            self.view.notice(f"no letter {ref} in the last list (/letters all lists them)"
                             if not found else f"{ref} names several letters; give more of its id")
            return None
        return found[0]

    def _user_list(self, message: UserList) -> None:
        fetch = self._page(UserList, message.users, message.total)
        if fetch is not None:
            self.view.users(tuple((u.user, bool(u.online)) for u in fetch.entries), fetch.total or 0)
