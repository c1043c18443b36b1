# -*- test-case-name: tests.test_client_letters -*-
"""
The letter events of the L{ChatView} in words: L{LetterLines} turns each
into lines, and a view (the line terminal, the full screen) only says
where a line goes (L{LetterLines.letter_line}).  Every field a peer or the
relay chose (names, letter text, codes) goes into a line as a value, and
each view passes every line through
L{securechat.client.display.untrusted} on its way to the screen.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from securechat.client.reasons import reason_name
from securechat.wire.relay import Reason

#: LETTER_REFUSED and the failures of FETCH_BUNDLE, in words.
_NOT_SENT: dict[int, str] = {
    Reason.UNKNOWN_USER: "there is no user {peer}",
    Reason.REVOKED: "{peer}'s access was revoked",
    Reason.MAILBOX_FULL: "{peer}'s mailbox is full",
    Reason.TOO_LARGE: "the letter is larger than the relay accepts",
    Reason.RATE_LIMITED: "you sent too many letters too fast; try again later",
    Reason.NO_PREKEYS: "{peer} has no prekeys on the relay yet (they must log in once with a "
                       "client that takes letters)",
    Reason.TRY_AGAIN: "the relay cannot store letters just now; it is posted again when you "
                      "next log in",
}

_KINDS = {1: "delivery", 2: "read"}


@dataclass(frozen=True)
class StatusRow:
    """
    One letter we sent, as the status view shows it.  C{delivery} and
    C{read} are C{"ok"} for a receipt whose signature verified against the
    recipient's pinned key, the failure's code otherwise, C{""} while
    there is none.  C{delivery_key_replaced} and C{read_key_replaced} are
    0 for a receipt verified with the recipient's current key, and when
    the previous key it verified with was replaced otherwise.
    """

    recipient: str
    letter_id: bytes
    state: str
    stored_at: int
    expires_at: int
    delivered_at: int
    read_at: int
    delivery: str
    read: str
    reason: str = ""
    delivery_key_replaced: int = 0
    read_key_replaced: int = 0


@dataclass(frozen=True)
class LetterSummary:
    """One entry of a list of our letters, numbered for /read N."""

    number: int
    sender: str
    letter_id: bytes
    stored_at: int
    size: int
    state: int


def key_changed_words(peer: str, letter: bool) -> tuple[str, str]:
    """
    The warning's words that differ between a chat and a letter: what was
    refused, and what to do after trusting the new key (the views put the
    rest of the line around them).
    """
    if letter:
        return (f"Letters to and from {peer} are refused until you trust the new key.",
                ", then send or read the letter again.")
    return "The chat was refused.", " and chat again."


def verified(signer: str, key_replaced: int) -> str:
    """
    How a good signature is shown: C{ok}, or, for one by a key the signer
    had before (replaced at C{key_replaced}), which.
    """
    if not key_replaced:
        return "ok"
    return f"ok (signed with {signer}'s previous key, replaced {when(key_replaced)})"


def short_id(letter_id: bytes) -> str:
    """The first 8 hex digits of a letter id (what /read and /delete take)."""
    return letter_id.hex()[:8]


def when(at: int) -> str:
    """A time for a user: C{2026-12-02 05:30 UTC}."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at))


def _shown(first: int, last: int, total: int, what: str, more: str) -> str:
    """The line after a page of a list: which entries it showed, and how to see more."""
    line = f"({what} {first}-{last} of {total}"
    return line + (f"; more: {more})" if more else ")")


class LetterLines:
    """
    The letter events of L{securechat.client.view.ChatView} as lines.  A
    view that inherits it provides L{letter_line}.
    """

    def letter_line(self, text: str, alert: bool = False) -> None:
        raise NotImplementedError

    def letter_sent(self, recipient: str, letter_id: bytes, stored_at: int, expires_at: int) -> None:
        self.letter_line(f"letter {short_id(letter_id)} to {recipient} stored by the relay at "
                         f"{when(stored_at)}, kept until {when(expires_at)}")

    def letter_refused(self, recipient: str, letter_id: bytes | None, reason: Reason | int) -> None:
        why = _NOT_SENT.get(reason, "refused: {why}").format(peer=recipient, why=reason_name(reason))
        ident = f" {short_id(letter_id)}" if letter_id else ""
        self.letter_line(f"letter{ident} to {recipient} NOT stored: {why}", alert=True)

    def letter_not_sent(self, recipient: str, code: str, detail: str) -> None:
        self.letter_line(f"letter to {recipient} NOT sent ({code}): {detail}", alert=True)

    def new_letters(self, count: int) -> None:
        self.letter_line(f"you have {count} new letter{'s' if count != 1 else ''}: /letters new")

    def letter_arrived(self, sender: str, stored_at: int, size: int) -> None:
        self.letter_line(f"new letter from {sender} ({size} bytes, {when(stored_at)}): /letters new")

    def letter_list(self, letters: tuple[LetterSummary, ...], total: int, more: str) -> None:
        if not letters:
            self.letter_line("no letters" if total == 0 else f"no letters on that page ({total} in all)")
            return
        states = {0: "new", 1: "fetched", 2: "read"}
        for e in letters:
            self.letter_line(f"{e.number}. [{short_id(e.letter_id)}] from {e.sender}, "
                             f"{when(e.stored_at)}, {e.size} bytes, {states.get(e.state, '?')}")
        if more or letters[0].number != 1 or len(letters) != total:
            self.letter_line(_shown(letters[0].number, letters[-1].number, total, "letters", more))

    def letter_opened(self, sender: str, letter_id: bytes, sent_at: int, stored_at: int,
                      text: str, again: bool, key_replaced: int) -> None:
        note = " (read before)" if again else ""
        self.letter_line(f"letter [{short_id(letter_id)}] from {sender}{note}, written "
                         f"{when(sent_at)} (sender's clock), stored {when(stored_at)}; "
                         f"Verification: {verified(sender, key_replaced)}")
        for line in text.splitlines() or [""]:
            self.letter_line(f"  | {line}")

    def letter_failed(self, sender: str, letter_id: bytes, stored_at: int, code: str,
                      detail: str) -> None:
        self.letter_line(f"letter [{short_id(letter_id)}] from {sender} ({when(stored_at)}) "
                         f"REFUSED, not shown: {code}: {detail}", alert=True)

    def letter_deleted(self, sender: str, letter_id: bytes) -> None:
        self.letter_line(f"letter [{short_id(letter_id)}] from {sender} deleted")

    def receipt(self, recipient: str, letter_id: bytes, kind: int, verification: str) -> None:
        what = _KINDS.get(kind, f"kind {kind}")
        if verification == "ok":
            self.letter_line(f"{what} receipt from {recipient} for letter {short_id(letter_id)}; "
                             "Verification: ok")
        else:
            self.letter_line(f"a {what} receipt for letter {short_id(letter_id)} from {recipient} "
                             f"does NOT verify ({verification}); not counted", alert=True)

    def sent_status(self, rows: tuple[StatusRow, ...], total: int, more: str) -> None:
        if not rows:
            self.letter_line("no letters sent (or all expired)" if total == 0
                             else f"no letters sent on that page ({total} in all)")
            return
        for row in rows:
            head = f"[{short_id(row.letter_id)}] to {row.recipient}: "
            if row.state != "stored":
                self.letter_line(head + (f"refused ({row.reason})" if row.state == "refused"
                                         else "not yet acknowledged (sent again when connected)"))
                continue
            self.letter_line(head + f"stored {when(row.stored_at)}, expires {when(row.expires_at)}")
            for kind, at, check, replaced in (
                    ("delivered", row.delivered_at, row.delivery, row.delivery_key_replaced),
                    ("read", row.read_at, row.read, row.read_key_replaced)):
                if not at:
                    self.letter_line(f"    {kind}: not yet")
                elif check == "ok":
                    self.letter_line(f"    {kind}: Time received {when(at)}; Verification: "
                                     f"{verified(row.recipient, replaced)}")
                else:
                    self.letter_line(f"    {kind}: Time received {when(at)}; Verification: "
                                     f"FAILED ({check})", alert=True)
        if more or total > len(rows):
            self.letter_line(f"({len(rows)} of {total} letters shown" + (f"; more: {more})" if more else ")"))

    def users(self, users: tuple[tuple[str, bool], ...], total: int) -> None:
        names = ", ".join(f"{name}{' (online)' if online else ''}" for name, online in users)
        more = f" (and {total - len(users)} more)" if total > len(users) else ""
        self.letter_line(f"users: {names}{more}")
